"""UCF101: the `ucfTrainTestlist` split files to an avssl manifest.

`classInd.txt` numbers the classes ("1 ApplyEyeMakeup"); `trainlist0N.txt` lists
"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1" (path and 1-based class number) and
`testlist0N.txt` only the path, whose folder is the class. Three folds (N = 1, 2, 3)
split the 101 classes' videos by group, so clips of one group never straddle train and
test. Videos are the .avi files of `UCF101.rar` (`<Class>/v_<Class>_gXX_cYY.avi`), found
by file stem, so a flat or re-encoded copy works too.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath

from avssl.data.corpora.annotations import Annotation, PathLike, check_choice
from avssl.data.corpora.convert import corpus_converter

SPLITS = ("train", "test")
FOLDS = (1, 2, 3)


def _lines(path: Path) -> list[str]:
    """Non-empty stripped lines (the official files have Windows line ends)."""
    if not path.is_file():
        raise FileNotFoundError(f"UCF101 split file not found: {path} (pass the ucfTrainTestlist folder)")
    return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


def read_class_index(path: PathLike) -> dict[int, str]:
    """Class number -> name from `classInd.txt`."""
    classes = {}
    for line in _lines(Path(path)):
        number, _, name = line.partition(" ")
        if not number.isdigit() or not name.strip():
            raise ValueError(f"{path}: expected '<number> <class>' lines, got {line!r}")
        classes[int(number)] = name.strip()
    return classes


def _annotation(entry: str, split: str, label: str | None = None) -> Annotation:
    """A listed video; its label is the class folder unless given."""
    path = PurePosixPath(entry.replace("\\", "/"))
    folder = path.parent.name
    return Annotation(name=str(path), split=split, label=label or folder, stems=(path.stem,), folders=(folder,))


def read_annotations(annotations: PathLike, *, fold: int = 1, split: str | None = None) -> list[Annotation]:
    """The videos of `fold`'s train and/or test list; `annotations` is the split folder (or a file in it)."""
    check_choice(fold, FOLDS, "UCF101 fold")
    if split is not None:
        check_choice(split, SPLITS, "UCF101 split")
    folder = Path(annotations)
    folder = folder if folder.is_dir() else folder.parent
    classes = read_class_index(folder / "classInd.txt")
    items = []
    if split in (None, "train"):
        list_path = folder / f"trainlist0{fold}.txt"
        for line in _lines(list_path):
            entry, _, number = line.rpartition(" ")
            if not number.isdigit() or int(number) not in classes:
                raise ValueError(f"{list_path}: expected '<path> <class number from classInd.txt>', got {line!r}")
            items.append(_annotation(entry, "train", classes[int(number)]))
    if split in (None, "test"):
        # the test lists carry no number: the folder names the class, spelled as in classInd.txt
        spelling = {name.lower(): name for name in classes.values()}
        for line in _lines(folder / f"testlist0{fold}.txt"):
            item = _annotation(line, "test")
            items.append(replace(item, label=spelling.get(item.label.lower(), item.label)))
    return items


convert = corpus_converter(
    "ucf101", read_annotations,
    "UCF101 split lists plus the videos -> manifest entries and a missing/unreadable report.",
)
