"""Kinetics-400/600/700: DeepMind's CSVs to an avssl manifest.

The annotation CSVs (`train.csv`, `validate.csv`, `test.csv` of each release) have the
header `label,youtube_id,time_start,time_end,split`; some releases add columns (e.g.
`is_cc`) and the test CSVs of some releases have no `label`. Downloaded clips are already
trimmed and named `<youtube_id>_<start:06d>_<end:06d>.mp4`, flat or under
`<split>/<label>/`; a file named just `<youtube_id>` is taken to be the full-length video,
so the clip's window goes into the manifest as start/end (see `avssl.data.corpora.index.VideoIndex`).
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from avssl.data.corpora.annotations import (Annotation, PathLike, annotation_files, check_choice, clip_name,
                                            parse_seconds, select_split)
from avssl.data.corpora.convert import corpus_converter

SPLITS = ("train", "val", "test")
# The releases call the validation split "validate" in file names and "val" or
# "validate" in the split column; avssl calls it "val".
_SPLIT_ALIASES = {"validate": "val", "validation": "val", "valid": "val"}
_REQUIRED = ("youtube_id", "time_start", "time_end")


def _split_name(text: str) -> str:
    text = text.strip().lower()
    return _SPLIT_ALIASES.get(text, text)


def _read_csv(path: Path) -> list[Annotation]:
    """The annotations of one Kinetics CSV; the split comes from its column or the file name."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # tolerate a byte-order mark
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        absent = [c for c in _REQUIRED if c not in columns]
        if absent:
            raise ValueError(
                f"{path}: not a Kinetics CSV: missing column(s) {', '.join(absent)} "
                f"(header is {','.join(columns)}; expected label,youtube_id,time_start,time_end,split)"
            )
        file_split = _split_name(path.stem.split("_")[-1])
        annotations = []
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            ytid = row["youtube_id"].strip()
            start = parse_seconds(row["time_start"], where)
            end = parse_seconds(row["time_end"], where)
            label = (row.get("label") or "").strip() or None
            annotations.append(
                Annotation(
                    name=clip_name(ytid, start, end),
                    split=_split_name(row.get("split") or file_split),
                    label=label,
                    youtube_id=ytid,
                    segment=(start, end),
                    folders=(label, label.replace(" ", "_")) if label else (),
                )
            )
    return annotations


def read_annotations(annotations: PathLike | Sequence[PathLike], *, split: str | None = None) -> list[Annotation]:
    """The clips listed in Kinetics CSVs (files, or folders holding them), of `split` or all.

    `split` is "train", "val" or "test" ("validate" is accepted for "val").
    """
    if split is not None:
        split = _split_name(split)
        check_choice(split, SPLITS, "Kinetics split")
    files = annotation_files(annotations, "*.csv")
    items = [a for path in files for a in _read_csv(path)]
    return select_split(items, split, ", ".join(map(str, files)))


convert = corpus_converter(
    "kinetics", read_annotations,
    "Kinetics annotations plus downloaded clips -> manifest entries and a missing/unreadable report.",
)
