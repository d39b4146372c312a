"""What every corpus converter shares: matching annotations to files, checking, reporting.

A converter reads a corpus's official annotation files into `Annotation`s (one per
annotated clip), then `convert_annotations` finds each one under the videos folder
(`VideoIndex`: by file stem, or by YouTube id and the times in the file name, whatever the
folder layout and video extension), optionally probes the files it found, and returns a
`ConversionReport`: the manifest entries plus what is missing and what is unreadable.
Nothing here fails because a video is absent or broken; those are counted and listed,
since public corpora are never complete.
"""
from __future__ import annotations

import inspect
import logging
import os
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avssl.data.manifest import ManifestEntry, scan_folder, write_manifest
from avssl.data.scan import scan_entries

log = logging.getLogger(__name__)

PathLike = str | Path
# Times in file names are printed with at most millisecond precision.
_TIME_TOLERANCE = 1e-3


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


@dataclass(frozen=True)
class Match:
    """An annotation and the manifest entry (absolute path) of the file found for it."""

    annotation: Annotation
    entry: ManifestEntry


@dataclass(frozen=True)
class Rejected:
    """A file that was found but cannot be used, with the reason."""

    match: Match
    reason: str


@dataclass
class ConversionReport:
    """The result of converting one corpus: what goes into the manifest and what does not."""

    corpus: str
    matched: list[Match] = field(default_factory=list)
    missing: list[Annotation] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    checked: bool = False

    @property
    def entries(self) -> list[ManifestEntry]:
        """Manifest entries of the usable videos (absolute paths)."""
        return [m.entry for m in self.matched]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per split (and "all"): annotated, found, missing, unreadable, written."""
        splits: dict[str, Counter] = {}

        def bump(split: str, key: str) -> None:
            for name in (split, "all"):
                splits.setdefault(name, Counter())[key] += 1

        for m in self.matched:
            bump(m.annotation.split, "written")
        for r in self.rejected:
            bump(r.match.annotation.split, "unreadable")
        for a in self.missing:
            bump(a.split, "missing")
        keys = ("annotated", "found", "missing", "unreadable", "written")
        table = {}
        for name in sorted(splits, key=lambda s: (s == "all", s)):
            c = splits[name]
            c["found"] = c["written"] + c["unreadable"]
            c["annotated"] = c["found"] + c["missing"]
            table[name] = {k: c[k] for k in keys}
        return table

    def summary(self) -> str:
        """A small table of the counts, one row per split and a total row."""
        table = self.counts()
        columns = ("annotated", "found", "missing", "unreadable", "written")
        width = max([len("split")] + [len(s) for s in table])
        lines = [f"{'split':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)]
        for split, row in table.items():
            cells = [str(row[c]) if (c != "unreadable" or self.checked) else "-" for c in columns]
            lines.append(f"{split:<{width}}  " + "  ".join(f"{v:>10}" for v in cells))
        if not self.checked:
            lines.append("(files not opened: pass --check to find unreadable ones)")
        return "\n".join(lines)


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


def convert_annotations(
    corpus: str,
    annotations: Sequence[Annotation],
    videos_dir: PathLike,
    *,
    check: bool = False,
    probe_cache: PathLike | None = None,
) -> ConversionReport:
    """Match `annotations` to the videos under `videos_dir`; with `check`, open each file found.

    Files that cannot be read (or whose annotated segment starts after their end) move from
    `matched` to `rejected` with the reason, judged as every dataset judges them
    (`avssl.data.scan`); `probe_cache` is the probe's cache (None: its default).
    """
    index = VideoIndex(videos_dir, {a.youtube_id for a in annotations if a.youtube_id})
    report = ConversionReport(corpus=corpus, checked=check)
    for annotation in annotations:
        entry = index.find(annotation)
        if entry is None:
            report.missing.append(annotation)
        else:
            report.matched.append(Match(annotation, entry))
    if check and report.matched:
        scan = scan_entries([m.entry for m in report.matched], name=corpus, probe_cache=probe_cache,
                            show_progress=True)
        usable = []
        for match, scanned in zip(report.matched, scan.entries):
            if scanned.ok:
                usable.append(match)
            else:
                report.rejected.append(Rejected(match, scanned.info.reason))
        report.matched = usable
    log.info("%s: %d annotated, %d found, %d missing, %d unreadable", corpus, len(annotations),
             len(report.matched) + len(report.rejected), len(report.missing), len(report.rejected))
    return report



def corpus_converter(corpus: str, read_annotations: Callable[..., list[Annotation]],
                     doc: str) -> Callable[..., ConversionReport]:
    """A corpus module's `convert(annotations, videos_dir, *, <read_annotations's options>, check=False,
    probe_cache=None) -> ConversionReport`: `read_annotations(annotations, **options)`, then
    `convert_annotations`. Its signature lists the corpus's own options (`avssl prepare` reads them
    to refuse an option the corpus does not take)."""

    def convert(*args: Any, **kwargs: Any) -> ConversionReport:
        given = signature.bind(*args, **kwargs)
        given.apply_defaults()
        options = dict(given.arguments)
        videos_dir, check, probe_cache = options.pop("videos_dir"), options.pop("check"), options.pop("probe_cache")
        items = read_annotations(**options)
        return convert_annotations(corpus, items, videos_dir, check=check, probe_cache=probe_cache)

    first, *options = inspect.signature(read_annotations).parameters.values()
    keyword = inspect.Parameter.KEYWORD_ONLY
    signature = inspect.Signature(
        [first, inspect.Parameter("videos_dir", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="PathLike"),
         *options, inspect.Parameter("check", keyword, default=False, annotation="bool"),
         inspect.Parameter("probe_cache", keyword, default=None, annotation="PathLike | None")],
        return_annotation="ConversionReport",
    )
    convert.__signature__ = signature  # type: ignore[attr-defined]
    convert.__doc__ = doc
    convert.__module__ = read_annotations.__module__
    convert.__qualname__ = "convert"
    return convert

@dataclass(frozen=True)
class Outputs:
    """The files `write_outputs` wrote (None: not written)."""

    manifest: Path | None
    missing: Path
    rejected: Path | None


def write_outputs(report: ConversionReport, out_csv: PathLike) -> Outputs:
    """Write the manifest, `<out>.missing.txt` and (when checked) `<out>.rejected.txt`.

    `<out>` is `out_csv` without its suffix. Manifest paths are relative to the manifest's
    folder when the videos lie under it, absolute otherwise (`write_manifest`'s rule).
    When no video is usable no manifest is written (one must list a video) and a previous
    one at `out_csv` is removed, as is a rejected list left by an earlier run with --check
    when this run does not check: neither would describe this conversion. The lists are
    tab-separated with a header, one line per clip, to filter or feed to a downloader.
    """
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    missing_txt, rejected_txt = out_csv.with_suffix(".missing.txt"), out_csv.with_suffix(".rejected.txt")
    if report.matched:
        write_manifest(report.entries, out_csv)
    else:
        out_csv.unlink(missing_ok=True)
    lines = ["split\tname\tlabel\texpected"]
    lines += [
        f"{a.split}\t{a.name}\t{';'.join(a.labels) if a.labels else (a.label or '')}\t{a.expected}"
        for a in report.missing
    ]
    missing_txt.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if report.checked:
        lines = ["split\tpath\treason"]
        lines += [f"{r.match.annotation.split}\t{r.match.entry.path}\t{r.reason}" for r in report.rejected]
        rejected_txt.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        rejected_txt.unlink(missing_ok=True)
    return Outputs(
        manifest=out_csv if report.matched else None,
        missing=missing_txt,
        rejected=rejected_txt if report.checked else None,
    )
