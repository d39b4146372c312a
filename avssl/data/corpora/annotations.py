"""A corpus's annotated clips, as its converter reads them from the official annotation files
(`Annotation`), and the helpers every converter's reader shares: finding the files, choosing a split,
checking an option, reading times, naming a YouTube clip."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PathLike = str | Path


@dataclass(frozen=True, slots=True)
class Annotation:
    """One clip named by an official annotation file, before it is matched to a video file.

    Clips of a curated archive (UCF101, HMDB51) are found by their file `stems`. Clips cut
    from YouTube videos (Kinetics, VGGSound, AudioSet) are found by `youtube_id` and the
    times in the file name (see `VideoIndex`); `segment` is the clip's (start, end) in
    seconds inside the full video. `name` identifies the clip in reports (for YouTube clips
    the name the corpus's own downloads use); `folders` are parent folder names that pick
    the right file when several fit.
    """

    name: str
    split: str
    label: str | None = None
    labels: tuple[str, ...] = ()
    stems: tuple[str, ...] = ()
    youtube_id: str | None = None
    segment: tuple[float, float] | None = None
    folders: tuple[str, ...] = ()

    @property
    def expected(self) -> str:
        """The file a user should look for, for reports."""
        if self.youtube_id is None:
            return f"{self.stems[0]}.<video extension>"
        return f"{self.name}.<video extension> (or the full video {self.youtube_id}.<video extension>)"


def annotation_files(paths: PathLike | Sequence[PathLike], pattern: str) -> list[Path]:
    """The annotation files named by `paths`: files as given, folders expanded with `pattern`."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob(pattern))
            if not found:
                raise FileNotFoundError(f"no annotation files matching {pattern!r} in {p}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"annotation file not found: {p}")
    return files


def select_split(annotations: list[Annotation], split: str | None, source: str) -> list[Annotation]:
    """The annotations of `split` (all of them when None); an error names the splits present."""
    if split is None:
        return annotations
    chosen = [a for a in annotations if a.split == split]
    if not chosen:
        present = ", ".join(sorted({a.split for a in annotations})) or "none"
        raise ValueError(f"no annotations of split {split!r} in {source} (splits present: {present})")
    return chosen


def check_choice(value: object, allowed: Iterable[object], what: str) -> None:
    """Raise ValueError naming the allowed values when `value` is not one of them."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(str, allowed))}, not {value!r}")


def parse_seconds(text: str, where: str) -> float:
    """A time in seconds from an annotation field; the error names the file and line."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: expected a time in seconds, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{where}: negative time {text!r}")
    return value


def clip_name(youtube_id: str, start: float, end: float | None = None) -> str:
    """`<id>_<start:06d>[_<end:06d>]`, how Kinetics and VGGSound downloads name a clip (decimals kept)."""
    times = (start,) if end is None else (start, end)
    return "_".join([youtube_id] + [f"{int(t):06d}" if float(t).is_integer() else f"{t:g}" for t in times])
