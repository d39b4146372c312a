"""avssl: audio-visual self-supervised learning from raw video.

The public Python API is re-exported here lazily, so `import avssl` stays cheap
(the CLI and DataLoader workers import it often).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "avssl.models.factory",
    "load_model": "avssl.models.factory",
    "list_models": "avssl.models.factory",
    "load_classifier": "avssl.models.factory",
    "Preprocessor": "avssl.data.pipeline",
    "ClipDataset": "avssl.data.datasets",
    "open_dataset": "avssl.data.datasets",
    "build_loader": "avssl.data.loader",
    "decode_clip": "avssl.data.decode",
    "probe": "avssl.data.probe",
    "RetrievalIndex": "avssl.tasks.retrieval",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'avssl' has no attribute {name!r}")
