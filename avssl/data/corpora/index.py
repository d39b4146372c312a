"""Find each annotated clip among the downloaded video files: `VideoIndex` looks files up by stem, or by
YouTube id and the times in the file name, whatever the folder layout and video extension."""
from __future__ import annotations

import logging
import os
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path

from avssl.data.corpora.annotations import Annotation, PathLike
from avssl.data.manifest import ManifestEntry, scan_folder

log = logging.getLogger(__name__)

# Times in file names are printed with at most millisecond precision.
_TIME_TOLERANCE = 1e-3


def _scan(root: Path) -> list[str]:
    """Absolute paths of the video files under `root` (`scan_folder`: each once, links to folders
    followed without loops, what was skipped logged).

    Hidden files (e.g. macOS `._name.mp4` companions) and non-video suffixes (e.g. `.part`
    leftovers of interrupted downloads) are not videos and are left out.
    """
    base = os.path.abspath(root)
    return [os.path.join(base, rel) for rel in scan_folder(base).files]


def _readings(stem: str, youtube_ids: Container[str]) -> Iterator[tuple[str, str, bool]]:
    """Every (youtube id, rest, Y-prefixed) reading of `stem` as `[Y]<id>[_<rest>]` with a known id.

    The id is not assumed to have a fixed length or no underscores: each split point at an
    underscore is tried against the ids the annotations name.
    """
    bodies = [(stem, False)] + ([(stem[1:], True)] if stem.startswith("Y") else [])
    for body, prefixed in bodies:
        if body in youtube_ids:
            yield body, "", prefixed
        cut = body.find("_")
        while cut != -1:
            if body[:cut] in youtube_ids:
                yield body[:cut], body[cut + 1:], prefixed
            cut = body.find("_", cut + 1)


def _times(rest: str) -> tuple[float, ...] | None:
    """The times a file name gives after the id: () for none, (start,) or (start, end); None if not times."""
    if not rest:
        return ()
    parts = rest.split("_")
    if len(parts) > 2:
        return None
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        return None


def _same_window(times: tuple[float, ...], segment: tuple[float, float]) -> bool:
    """Whether file-name times name `segment`, in seconds or in milliseconds."""
    for scale in (1.0, 1000.0):
        if all(abs(t / scale - s) < _TIME_TOLERANCE for t, s in zip(times, segment)):
            return True
    return False


def _pick(paths: list[str], folders: tuple[str, ...]) -> str:
    """The file among `paths` whose parent folder is one of `folders`, else the first."""
    for p in paths:
        if os.path.basename(os.path.dirname(p)) in folders:
            return p
    return paths[0]


@dataclass(frozen=True, slots=True)
class _YouTubeFile:
    path: str
    times: tuple[float, ...]  # from the name: () when it gives none
    prefixed: bool            # named Y<id>...: a trimmed clip even without times


class VideoIndex:
    """The video files under a folder, looked up by file stem or by YouTube id and times.

    A YouTube clip is found, in this order of preference, as a file named `<id>_<start>_<end>`
    or `<id>_<start>` (seconds, zero-padded or not, decimals, or milliseconds: the names of
    the Kinetics, VGGSound and AudioSet downloaders), as `Y<id>` (a trimmed AudioSet clip),
    each also with a leading `Y`; or else as the full-length video `<id>`, in which case the
    manifest entry gets the clip's window as start/end.
    """

    def __init__(self, root: PathLike, youtube_ids: Container[str] = frozenset()):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"videos folder not found: {root}")
        self.by_stem: dict[str, list[str]] = {}
        self.by_youtube_id: dict[str, list[_YouTubeFile]] = {}
        files = _scan(root)
        for path in files:
            stem = os.path.splitext(os.path.basename(path))[0]
            self.by_stem.setdefault(stem, []).append(path)
            for youtube_id, rest, prefixed in _readings(stem, youtube_ids):
                times = _times(rest)
                if times is not None:
                    self.by_youtube_id.setdefault(youtube_id, []).append(_YouTubeFile(path, times, prefixed))
        log.info("found %d video files under %s", len(files), root)

    def find(self, annotation: Annotation) -> ManifestEntry | None:
        """The manifest entry (absolute path) for `annotation`, or None when no file fits."""
        fields = {"label": annotation.label, "labels": annotation.labels}
        for stem in annotation.stems:
            if stem in self.by_stem:
                return ManifestEntry(path=_pick(self.by_stem[stem], annotation.folders), **fields)
        files = self.by_youtube_id.get(annotation.youtube_id, []) if annotation.youtube_id else []
        segment = annotation.segment
        clips = [f.path for f in files if f.times and segment and _same_window(f.times, segment)]
        clips = clips or [f.path for f in files if not f.times and f.prefixed]
        if clips:
            return ManifestEntry(path=_pick(clips, annotation.folders), **fields)
        full = [f.path for f in files if not f.times and not f.prefixed]
        if full:
            start, end = segment if segment else (None, None)
            return ManifestEntry(path=_pick(full, annotation.folders), start=start, end=end, **fields)
        return None
