"""Convert a corpus: match its annotations to files, check them, report.

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
from collections.abc import Callable, Sequence
from typing import Any

from avssl.data.corpora.annotations import Annotation, PathLike
from avssl.data.corpora.index import VideoIndex
from avssl.data.corpora.report import ConversionReport, Match, Rejected
from avssl.data.scan import scan_entries

log = logging.getLogger(__name__)


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
