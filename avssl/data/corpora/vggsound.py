"""VGGSound: the `vggsound.csv` of the VGG group to an avssl manifest.

The CSV has no header; each row is `youtube_id,start_seconds,label,split` with split
"train" or "test", and names a 10 s clip. Downloads are commonly saved as
`<id>_<start:06d>.mp4` or `<id>_<start>_<end>.mp4` (already trimmed; seconds or
milliseconds) or as the full-length `<id>.mp4`, for which the clip's window goes into the
manifest as start/end (see `avssl.data.corpora.index.VideoIndex`).
"""
from __future__ import annotations

import csv
from collections.abc import Sequence

from avssl.data.corpora.annotations import (Annotation, PathLike, annotation_files, check_choice, clip_name,
                                            parse_seconds, select_split)
from avssl.data.corpora.convert import corpus_converter

SPLITS = ("train", "test")
CLIP_SECONDS = 10.0


def _looks_like_header(row: list[str]) -> bool:
    """A first row whose start field is not a number is a header a user added."""
    try:
        float(row[1])
    except (IndexError, ValueError):
        return True
    return False


def read_annotations(annotations: PathLike | Sequence[PathLike], *, split: str | None = None) -> list[Annotation]:
    """The clips listed in `vggsound.csv` (or several such files), of `split` or all."""
    if split is not None:
        check_choice(split, SPLITS, "VGGSound split")
    files = annotation_files(annotations, "*.csv")
    items = []
    for path in files:
        with open(path, newline="", encoding="utf-8-sig") as f:  # tolerate a byte-order mark
            for line, row in enumerate(csv.reader(f), start=1):
                if not row or (line == 1 and _looks_like_header(row)):
                    continue
                where = f"{path}:{line}"
                if len(row) != 4:
                    raise ValueError(f"{where}: expected 4 fields (youtube_id,start,label,split), got {len(row)}")
                ytid, start_text, label, row_split = (field.strip() for field in row)
                start = parse_seconds(start_text, where)
                items.append(
                    Annotation(
                        name=clip_name(ytid, start),
                        split=row_split,
                        label=label,
                        youtube_id=ytid,
                        segment=(start, start + CLIP_SECONDS),
                        folders=(label, label.replace(" ", "_")),
                    )
                )
    return select_split(items, split, ", ".join(map(str, files)))


convert = corpus_converter(
    "vggsound", read_annotations,
    "VGGSound annotations plus downloaded videos -> manifest entries and a missing/unreadable report.",
)
