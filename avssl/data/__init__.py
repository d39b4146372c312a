"""Video data: manifests, probing, decoding, clip sampling, transforms, datasets, loaders.

The main names are re-exported lazily (resolved on first use), so importing
``avssl.data`` costs nothing until a name is needed. The ``probe`` function is
not among them: once imported, the ``avssl.data.probe`` submodule takes that
attribute name; use ``avssl.data.probe.probe`` or ``avssl.probe``.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ClipDataset": "avssl.data.datasets",
    "open_dataset": "avssl.data.datasets",
    "build_loader": "avssl.data.loader",
    "collate_clips": "avssl.data.loader",
    "ShardedSampler": "avssl.data.loader",
    "ClipInfo": "avssl.data.sampling",
    "make_sampler": "avssl.data.sampling",
    "VideoTransform": "avssl.data.video",
    "AudioTransform": "avssl.data.audio",
    "AugmentConfig": "avssl.data.augment",
    "log_mel": "avssl.data.audio",
    "target_frames": "avssl.data.audio",
    "ManifestEntry": "avssl.data.manifest",
    "read_source": "avssl.data.manifest",
    "write_manifest": "avssl.data.manifest",
    "VIDEO_EXTENSIONS": "avssl.data.manifest",
    "VideoInfo": "avssl.data.probe",
    "probe_file": "avssl.data.probe",
    "decode_clip": "avssl.data.decode",
    "decode_clips": "avssl.data.decode",
    "DecodeError": "avssl.data.decode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'avssl.data' has no attribute {name!r}")
