"""HMDB51: the `testTrainMulti_7030_splits` files to an avssl manifest.

One file per class and fold, `<class>_test_split<N>.txt` (N = 1, 2, 3), lists every
video of the class as `<video>.avi <mark>`: 1 = train, 2 = test, 0 = not used in this
fold (left out of the manifest and of the counts). Videos are the .avi files of the
per-class archives (`<class>/<video>.avi`), found by file stem.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from avssl.data.corpora.annotations import Annotation, PathLike, check_choice, select_split
from avssl.data.corpora.convert import corpus_converter

SPLITS = ("train", "test")
FOLDS = (1, 2, 3)
_MARKS = {"1": "train", "2": "test", "0": None}


def _read_split_file(path: Path, fold: int) -> list[Annotation]:
    """The train and test videos of one class's split file."""
    label = path.name[: -len(f"_test_split{fold}.txt")]
    items = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        video, _, mark = line.strip().rpartition(" ")
        if mark not in _MARKS or not video:
            raise ValueError(f"{path}:{line_no}: expected '<video>.avi <0|1|2>', got {line.strip()!r}")
        split = _MARKS[mark]
        if split is not None:
            stem = PurePosixPath(video.strip()).stem
            items.append(
                Annotation(name=f"{label}/{video.strip()}", split=split, label=label, stems=(stem,), folders=(label,))
            )
    return items


def read_annotations(annotations: PathLike, *, fold: int = 1, split: str | None = None) -> list[Annotation]:
    """The videos fold `fold` uses for `split` (train and test when None).

    `annotations` is the folder of split files (or one file inside it).
    """
    check_choice(fold, FOLDS, "HMDB51 fold")
    if split is not None:
        check_choice(split, SPLITS, "HMDB51 split")
    folder = Path(annotations)
    folder = folder if folder.is_dir() else folder.parent
    files = sorted(folder.glob(f"*_test_split{fold}.txt"))
    if not files:
        raise FileNotFoundError(
            f"no HMDB51 split files '<class>_test_split{fold}.txt' in {folder} "
            "(pass the testTrainMulti_7030_splits folder)"
        )
    items = [a for path in files for a in _read_split_file(path, fold)]
    return select_split(items, split, f"{folder} (fold {fold})")


convert = corpus_converter(
    "hmdb51", read_annotations,
    "HMDB51 split files plus the videos -> manifest entries and a missing/unreadable report.",
)
