"""What a conversion gives: the clips matched to files, those missing and those unreadable
(`ConversionReport`, with per-split counts), and the files written from it (`write_outputs`)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from avssl.data.corpora.annotations import Annotation, PathLike
from avssl.data.manifest import ManifestEntry, write_manifest


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
