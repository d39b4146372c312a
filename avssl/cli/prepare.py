"""`avssl prepare NAME`: a public corpus's official annotations plus its videos -> an avssl manifest.

A thin layer over `avssl.data.corpora`: parse the options, convert, write the manifest
with `<out>.missing.txt` (and `<out>.rejected.txt` with --check), print the counts.
"""
from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from avssl.data.corpora import CORPORA, ConversionReport, Outputs, converter, write_outputs

_ONE_FOLDER = ("ucf101", "hmdb51")  # these take the folder of split files, not a list of files
_EXAMPLES = 3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `prepare` and its options."""
    parser = subparsers.add_parser(
        "prepare",
        help="official annotations + downloaded videos -> avssl CSV manifest",
        description="Match a corpus's official annotation files to the downloaded videos (by file name, any "
        "video extension, any folder layout) and write an avssl CSV manifest. Videos that are missing "
        "are counted and listed in <out>.missing.txt; with --check, unreadable ones in <out>.rejected.txt.",
    )
    parser.add_argument("corpus", choices=CORPORA, help="which corpus the annotations belong to")
    parser.add_argument(
        "--annotations", nargs="+", required=True, type=Path, metavar="PATH",
        help="kinetics: train/validate/test CSVs or their folder; vggsound: vggsound.csv; audioset: "
        "*_segments.csv file(s) (they decide the split); ucf101: the ucfTrainTestlist folder; hmdb51: the "
        "testTrainMulti_7030_splits folder",
    )
    parser.add_argument("--videos", required=True, type=Path, metavar="DIR", help="folder holding the videos")
    parser.add_argument("--out", required=True, type=Path, metavar="CSV", help="manifest to write")
    parser.add_argument(
        "--split", help="kinetics: train, val or test; vggsound, ucf101, hmdb51: train or test (default: all)"
    )
    parser.add_argument("--fold", type=int, help="ucf101, hmdb51: official split 1, 2 or 3 (default 1)")
    parser.add_argument(
        "--class-index", type=Path, metavar="CSV",
        help="audioset: class_labels_indices.csv, to write display names instead of label ids",
    )
    parser.add_argument(
        "--check", action="store_true",
        help="open every video found (cached probe); unreadable ones are left out and listed with the reason",
    )
    parser.set_defaults(func=run)


def _options(args: argparse.Namespace, convert) -> dict:
    """The corpus-specific options given, refusing those this corpus does not take."""
    given = {"split": args.split, "fold": args.fold, "class_index": args.class_index}
    options = {name: value for name, value in given.items() if value is not None}
    accepted = inspect.signature(convert).parameters
    for name in options:
        if name not in accepted:
            hint = " (the segments CSV passed decides the split)" if args.corpus == "audioset" else ""
            raise ValueError(f"--{name.replace('_', '-')} does not apply to {args.corpus}{hint}")
    return options


def _print_report(report: ConversionReport, outputs: Outputs) -> None:
    print(f"{report.corpus}: {len(report.matched)} videos written to {outputs.manifest}")
    print(report.summary())
    if report.missing:
        examples = ", ".join(a.name for a in report.missing[:_EXAMPLES])
        print(f"missing: {len(report.missing)} (e.g. {examples}); full list in {outputs.missing}")
    if report.rejected:
        examples = "; ".join(f"{r.match.entry.path}: {r.reason}" for r in report.rejected[:_EXAMPLES])
        print(f"unreadable: {len(report.rejected)} (e.g. {examples}); full list in {outputs.rejected}")


def run(args: argparse.Namespace) -> int:
    """Convert, write the manifest and the lists, print the summary."""
    module = converter(args.corpus)
    options = _options(args, module.convert)
    if args.corpus in _ONE_FOLDER:
        if len(args.annotations) > 1:
            raise ValueError(f"{args.corpus} takes one --annotations folder, got {len(args.annotations)} paths")
        annotations = args.annotations[0]
    else:
        annotations = args.annotations
    report = module.convert(annotations, args.videos, check=args.check, **options)
    if not report.matched and not report.rejected:
        expected = report.missing[0].expected if report.missing else "?"
        raise FileNotFoundError(
            f"none of the {len(report.missing)} annotated videos is under {args.videos} "
            f"(looked for names like {expected}, in any sub-folder); is --videos the right folder?"
        )
    outputs = write_outputs(report, args.out)
    if not report.matched:
        raise ValueError(f"none of the {len(report.rejected)} videos found is readable; reasons in {outputs.rejected}")
    _print_report(report, outputs)
    return 0
