"""AudioSet: Google's segment CSVs (balanced, unbalanced, eval) to a multi-label manifest.

A segments CSV opens with three `#` lines, then one row per 10 s segment:
`YTID, start_seconds, end_seconds, "mid1,mid2,..."` (a space after each comma, the
label list quoted). Which segments CSV is passed decides the split, named after the
file (`balanced_train_segments.csv` -> "balanced_train"). `class_labels_indices.csv`
(`index,mid,display_name`, names quoted since some contain commas) turns the machine
ids into display names; without it the labels are the mids.

Downloads are commonly saved as `<id>_<start>_<end>` or `<id>_<start>` (seconds, or
milliseconds), with a `Y` in front (`Y<id>` trimmed clips of PANNs, DCASE's
`Y<id>_<start>_<end>`), or as the full-length `<id>`, which gets start/end (see
`avssl.data.corpora.index.VideoIndex`).
"""
from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from avssl.data.corpora.annotations import Annotation, PathLike, annotation_files, clip_name, parse_seconds
from avssl.data.corpora.convert import corpus_converter

log = logging.getLogger(__name__)


def read_class_index(path: PathLike) -> dict[str, str]:
    """Machine id -> display name from `class_labels_indices.csv`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AudioSet class index not found: {path}")
    names = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"mid", "display_name"} <= set(reader.fieldnames or []):
            raise ValueError(f"{path}: not a class index: header must be index,mid,display_name")
        for row in reader:
            name = row["display_name"].strip()
            if ";" in name:
                raise ValueError(f"{path}: display name {name!r} contains ';', which separates labels in a manifest")
            names[row["mid"].strip()] = name
    return names


def _split_of(path: Path) -> str:
    stem = path.stem
    return stem[: -len("_segments")] if stem.endswith("_segments") else stem


def _read_segments(path: Path, names: dict[str, str], unknown: Counter) -> list[Annotation]:
    """The segments of one AudioSet CSV, labels mapped through `names` when given."""
    split = _split_of(path)
    items = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for line, row in enumerate(csv.reader(f, skipinitialspace=True), start=1):
            if not row or row[0].startswith("#"):
                continue
            where = f"{path}:{line}"
            if len(row) != 4:
                raise ValueError(f'{where}: expected YTID, start_seconds, end_seconds, "mid,...", got {row}')
            ytid = row[0].strip()
            start, end = parse_seconds(row[1], where), parse_seconds(row[2], where)
            mids = [m.strip() for m in row[3].split(",") if m.strip()]
            if names:
                unknown.update(m for m in mids if m not in names)
            items.append(
                Annotation(
                    name=clip_name(ytid, start, end),
                    split=split,
                    labels=tuple(names.get(m, m) for m in mids),
                    youtube_id=ytid,
                    segment=(start, end),
                )
            )
    return items


def read_annotations(
    segments: PathLike | Sequence[PathLike], *, class_index: PathLike | None = None
) -> list[Annotation]:
    """The segments listed in AudioSet segment CSVs (files, or folders of `*_segments.csv`)."""
    names = read_class_index(class_index) if class_index is not None else {}
    unknown: Counter = Counter()
    items = [a for path in annotation_files(segments, "*_segments.csv") for a in _read_segments(path, names, unknown)]
    if unknown:
        log.warning("%d label ids are not in the class index and stay as ids (e.g. %s)",
                    len(unknown), ", ".join(list(unknown)[:3]))
    return items


convert = corpus_converter(
    "audioset", read_annotations,
    "AudioSet segment CSVs plus downloaded videos -> multi-label entries and a missing/unreadable report.",
)
