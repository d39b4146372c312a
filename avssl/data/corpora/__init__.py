"""Converters from public corpora's official annotation files to avssl manifests.

One module per corpus family (`kinetics`, `vggsound`, `audioset`, `ucf101`, `hmdb51`),
each with `read_annotations(...)` (the official lists, parsed) and `convert(annotations,
videos_dir, ...) -> ConversionReport` (matched to the downloaded files, with the missing
and unreadable ones reported); `write_outputs(report, out_csv)` writes the manifest and
the lists. `avssl prepare NAME ...` is the command-line face of the same functions.

What the corpus modules share: `annotations` (the annotated clips and the readers' helpers), `index`
(finding each clip among the downloaded files), `convert` (matching, checking, the `convert` every
corpus module offers), `report` (what a conversion found, and the files written from it).
"""
from __future__ import annotations

from importlib import import_module
from types import ModuleType

from avssl.data.corpora.annotations import Annotation
from avssl.data.corpora.report import ConversionReport, Outputs, write_outputs

CORPORA: tuple[str, ...] = ("kinetics", "vggsound", "audioset", "ucf101", "hmdb51")

__all__ = ["CORPORA", "Annotation", "ConversionReport", "Outputs", "converter", "write_outputs"]


def converter(name: str) -> ModuleType:
    """The converter module of corpus `name` (one of CORPORA)."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    return import_module(f"avssl.data.corpora.{name}")
