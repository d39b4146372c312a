"""Static HTML pages: the `avssl retrieve --html` results page and the demo's report.html.

Pages are self-contained folders: thumbnails (JPEG) and sound clips (16-bit WAV, written
with the standard library's `wave`) go into `<page>_files/` beside the HTML and are
referenced by relative paths; charts are inline SVG. No scripts, no network, so a page
opens from disk in any browser. Pages are built with `avssl.tasks.markup`: every value (paths,
labels, metric names) is escaped, only markup this module builds goes in as it is.
"""
from __future__ import annotations

import logging
import os
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image

from avssl.data.decode import DecodeError, decode_clip
from avssl.tasks.charts import line_chart
from avssl.tasks.markup import Markup, join, markup, tag
from avssl.tasks.retrieval import is_image, media_info
from avssl.train.collapse import (
    CHANCE_TOLERANCE,
    COLLAPSED_COS,
    MODALITIES,
    WARNINGS_FILE,
    read_warnings,
    summarize_warnings,
)
from avssl.train.observe import read_metrics

log = logging.getLogger(__name__)

THUMB_SIZE = 160  # longest side of a thumbnail, pixels

COLLAPSE_CHARTS = {  # chart title -> validation metrics (avssl.train.collapse) it plots per epoch
    "held-out contrastive loss vs chance (ln B)": ["val_loss_contrastive", "val_contrastive_chance"],
    **{title: [f"{m}_{stage}_{stat}" for m in MODALITIES for stage in ("emb", "feat")] for title, stat in (
        ("mean pairwise cosine (collapse: 1)", "cos"),
        ("std per dim of normalised vectors (collapse: 0)", "std"),
        ("effective rank", "rank"),
    )},
    "alignment (pairs: lower is closer), uniformity (lower: more spread)":
        ["alignment"] + [f"{m}_uniformity" for m in MODALITIES],
}

CSS = Markup("""
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.thumb { width: 112px; height: auto; image-rendering: pixelated; display: block; }
audio { width: 220px; } .media { display: flex; align-items: center; gap: 0.6em; }
.hit { background: #e6f4e6; } .muted { color: #777; font-size: 0.9em; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; }
""")


def save_thumbnail(frame: torch.Tensor, path: str | Path, size: int = THUMB_SIZE) -> Path:
    """One (H, W, 3) uint8 frame as a JPEG whose longest side is at most `size` pixels."""
    image = Image.fromarray(frame.contiguous().numpy())
    image.thumbnail((size, size))
    path = Path(path)
    image.save(path, format="JPEG", quality=90)
    return path


def save_wav(audio: torch.Tensor, sample_rate: int, path: str | Path) -> Path:
    """A mono float waveform (N,) in [-1, 1] as a 16-bit PCM WAV file."""
    pcm = (audio.float().clamp(-1.0, 1.0) * 32767).round().to(torch.int16)
    path = Path(path)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.numpy().tobytes())
    return path


class PageAssets:
    """Thumbnails and sound clips written into `<page>_files/` beside an HTML page."""

    def __init__(self, html_path: str | Path, audio_rate: int = 16000) -> None:
        self.html_path = Path(html_path)
        self.dir = self.html_path.parent / f"{self.html_path.stem}_files"
        self.audio_rate = audio_rate
        self._count = 0

    def _name(self, suffix: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._count += 1
        return self.dir / f"{self._count:03d}{suffix}"

    def src(self, path: Path) -> str:
        """`path` relative to the page, URL-quoted (page names may hold spaces, '#' or '?'); pages
        escape it like any value."""
        return quote(Path(os.path.relpath(path, self.html_path.parent)).as_posix())

    def clip(self, path: str, start: float, end: float, *, frame: bool = True,
             sound: bool = True) -> tuple[str | None, str | None]:
        """Middle frame (JPEG) and sound (WAV) of a clip, as page-relative sources; None for
        what the file does not have or cannot give (logged)."""
        try:
            clip = decode_clip(path, start, end, 1, audio_rate=self.audio_rate, with_video=frame, with_audio=sound)
        except (DecodeError, OSError) as err:
            log.warning("no preview for %s [%.2f, %.2f]: %s", path, start, end, err)
            return None, None
        image = self.src(save_thumbnail(clip.frames[0], self._name(".jpg"))) if frame and len(clip.frames) else None
        audio = None
        if sound and clip.has_audio:
            audio = self.src(save_wav(clip.audio, self.audio_rate, self._name(".wav")))
        return image, audio

    def image(self, path: str | Path) -> str:
        """A thumbnail of an image file."""
        with Image.open(path) as image:
            frame = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
        return self.src(save_thumbnail(frame, self._name(".jpg")))

    def copy(self, path: str | Path) -> str:
        """A copy of an existing file (e.g. a confusion-matrix PNG) in the assets folder."""
        target = self._name(Path(path).suffix)
        shutil.copyfile(path, target)
        return self.src(target)


def media_html(image: str | None, audio: str | None) -> Markup:
    """An <img> and/or <audio controls> for page-relative sources (either may be missing)."""
    parts = [markup('<img class="thumb" src="{}" alt="frame">', image) if image else "",
             markup('<audio controls preload="metadata" src="{}"></audio>', audio) if audio else ""]
    if not any(parts):
        return tag("span", "(no preview)", class_="muted")
    return markup('<div class="media">{}</div>', join(parts))


def _cell(value: object) -> Markup:
    """A table cell: numbers right-aligned (floats with 2 decimals), Markup as it is, the rest escaped."""
    if isinstance(value, float):
        return markup('<td class="num">{:.2f}</td>', value)
    if isinstance(value, int):
        return markup('<td class="num">{}</td>', value)
    return tag("td", value)


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]], row_classes: Sequence[str] = ()) -> Markup:
    """A table of values (see `_cell`: only `Markup` cells, such as `media_html`'s, go in unescaped)."""
    head = join(tag("th", h) for h in header)
    classes = list(row_classes) + [""] * (len(rows) - len(row_classes))
    body = join(tag("tr", join(map(_cell, row)), **({"class_": css} if css else {})) for css, row in zip(classes, rows))
    return markup("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def write_page(path: str | Path, title: str, body: Markup) -> Path:
    """A complete HTML5 document with the shared style."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = markup('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
                  "<style>{css}</style></head>\n<body>\n<h1>{title}</h1>\n{body}\n</body></html>\n",
                  title=title, css=CSS, body=body)
    path.write_text(page, encoding="utf-8")
    log.info("wrote %s", path)
    return path


def query_media(assets: PageAssets, query: str | Path, modality: str, start: float, end: float) -> Markup:
    """Preview of a query file: the image itself, a video's frame, or an audio file's sound."""
    if is_image(query):
        return media_html(assets.image(query), None)
    info = media_info(query)
    image, audio = assets.clip(str(query), start, end, frame=info.has_video, sound=modality == "audio")
    return media_html(image, audio)


def shown_path(path: str, root: str | Path | None) -> str:
    """`path` relative to `root` when it lies inside it (shorter tables), else as given."""
    if root is not None:
        relative = os.path.relpath(path, root)
        if not relative.startswith(".."):
            return relative
    return path


def match_rows(assets: PageAssets, matches: Sequence, true_path: str | None = None,
               root: str | Path | None = None) -> tuple[list, list]:
    """Table rows (rank, score, clip, preview: frame and sound) for search results; the true clip
    is highlighted."""
    rows, classes = [], []
    for rank, match in enumerate(matches, 1):
        image, audio = assets.clip(match.path, match.start, match.end)
        where = f"{shown_path(match.path, root)} [{match.start:.2f}–{match.end:.2f} s]"
        rows.append([rank, float(match.score), where, media_html(image, audio)])
        classes.append("hit" if true_path is not None and match.path == true_path else "")
    return rows, classes


def retrieval_page(out: str | Path, query: str | Path, modality: str, window: tuple[float, float],
                   matches: Sequence, *, checkpoint: str = "", gallery: str = "", audio_rate: int = 16000) -> Path:
    """The `avssl retrieve --html` page: the query's preview (its image or frame, and its sound
    for an audio query), then each match with its thumbnail and an audio player."""
    assets = PageAssets(out, audio_rate)
    target = "audio" if modality == "video" else "video"
    rows, classes = match_rows(assets, matches)
    body = join([
        markup("<p>Query <code>{}</code> ({}), nearest {} clips in <code>{}</code> by <code>{}</code>.</p>",
               query, modality, target, gallery, checkpoint),
        tag("h2", "Query"), query_media(assets, query, modality, *window),
        tag("h2", f"Top {len(matches)} {target} matches"),
        table_html(["rank", "score", "clip", "preview"], rows, classes),
    ])
    return write_page(out, "avssl retrieval", body)


def curves_html(series_by_chart: dict[str, dict[str, list[tuple[float, float]]]], xlabel: str = "step") -> Markup:
    """Several inline SVG line charts side by side, one per title."""
    charts = [tag("figure", line_chart(series, title=title, xlabel=xlabel))
              for title, series in series_by_chart.items() if any(series.values())]
    return tag("div", join(charts), class_="charts") if charts else tag("p", "(no metrics recorded)", class_="muted")


@dataclass
class RetrievalExample:
    """A query clip, its true class and the clips retrieved for it (with their classes)."""

    path: str
    start: float
    end: float
    label: str
    matches: list  # list[Match]
    match_labels: list[str]


def metric_curves(records: Sequence[dict], keys: Sequence[str],
                  x: str = "step") -> dict[str, list[tuple[float, float]]]:
    """(x, value) points of each of `keys` in metrics.jsonl records (keys absent are skipped); x is
    the record's "step" or, for per-epoch records, "epoch"."""
    return {key: [(float(r[x]), float(r[key])) for r in records if key in r] for key in keys}


def examples_html(assets: PageAssets, examples: Sequence[RetrievalExample]) -> Markup:
    """One table per example: the query clip's frame, then its nearest sounds (true clip highlighted)."""
    blocks = []
    for example in examples:
        image, _ = assets.clip(example.path, example.start, example.end, frame=True, sound=False)
        rows, classes = match_rows(assets, example.matches, true_path=example.path,
                                   root=assets.html_path.parent)
        for row, label in zip(rows, example.match_labels):
            row.insert(3, label)
        blocks += [
            markup("<h3>Query: <code>{}</code> ({})</h3>", shown_path(example.path, assets.html_path.parent),
                   example.label),
            media_html(image, None),
            table_html(["rank", "score", "clip", "class", "frame and sound"], rows, classes),
        ]
    return join(blocks)


def augment_html(description: str) -> Markup:
    """A run's training augmentations as a line of the page (nothing when not given), so a reader
    can tell, e.g., whether clips were mirrored."""
    return tag("p", f"Training augmentations: {description}.", class_="muted") if description else Markup()


def collapse_html(run_dir: str | Path) -> Markup:
    """A pretraining run's collapse diagnostics: per-epoch charts of the validation's spread metrics
    and the run's collapse warnings (collapse_warnings.txt), so a collapsed tower shows on the page."""
    val = read_metrics(run_dir, "val")
    charts = curves_html({title: metric_curves(val, keys, x="epoch") for title, keys in COLLAPSE_CHARTS.items()},
                         xlabel="epoch")
    warnings = read_warnings(run_dir)
    summary = tag("strong", summarize_warnings(warnings, val[-1].get("epoch") if val else None))
    if warnings:  # folded: a run that starts collapsed can warn every epoch
        table = table_html(["epoch", "warning"], [[epoch, message] for epoch, message in warnings])
        summary = tag("details", join([tag("summary", summary), table]))
    note = (f"Checked after the warm-up: a held-out contrastive loss within {CHANCE_TOLERANCE * 100:g} % of ln B "
            f"(chance), or a tower whose embeddings have a mean pairwise cosine above {COLLAPSED_COS}; the "
            f"warnings are in the run's {WARNINGS_FILE}.")
    return join([charts, summary, tag("p", note, class_="muted")])


def demo_page(
    out: str | Path,
    *,
    summary: Sequence[str],
    pretrain_run: str | Path,
    retrieval: dict[str, dict[str, float]],
    examples: Sequence[RetrievalExample],
    finetune: dict[str, dict[str, float]],
    finetune_runs: dict[str, str | Path],
    confusion_png: str | Path | None,
    timings: dict[str, float],
    audio_rate: int = 16000,
    pretrain_augment: str = "",
    finetune_augment: str = "",
) -> Path:
    """The demo's report.html: headline, loss curves, collapse diagnostics, retrieval table and
    examples, fine-tune comparison with its curves and confusion matrix, and where the time went.
    `pretrain_augment` and `finetune_augment` name the training augmentations of those runs (shown
    under their headings)."""
    assets = PageAssets(out, audio_rate)
    train = read_metrics(pretrain_run, "train")
    val = read_metrics(pretrain_run, "val")
    loss_keys = sorted({k for r in train for k in r if k.startswith("loss")})
    pre_curves = {
        "pretraining loss terms (train)": metric_curves(train, loss_keys),
        "held-out loss": metric_curves(val, ["val_loss"]),
        "held-out retrieval R@1 (%)": metric_curves(val, ["v2a_R@1", "a2v_R@1", "chance_R@1"]),
    }
    ft_curves = {
        "fine-tuning loss (train)": {name: metric_curves(read_metrics(run, "train"), ["loss"])["loss"]
                                     for name, run in finetune_runs.items()},
    }
    columns = [f"{d}_{m}" for d in ("v2a", "a2v") for m in ("R@1", "R@5", "R@10", "median_rank", "class_P@1")]
    retrieval_rows = [[name] + [float(m.get(c, float("nan"))) for c in columns] for name, m in retrieval.items()]
    chance = next(iter(retrieval.values()), {}).get("chance_R@1", float("nan"))
    finetune_rows = [[name] + [float(m.get(key, float("nan"))) for key in ("top1", "top5", "probe_top1")]
                     for name, m in finetune.items()]
    confusion = markup('<figure><img src="{}" alt="confusion matrix">'
                       "<figcaption>rows: true class, columns: predicted</figcaption></figure>",
                       assets.copy(confusion_png)) if confusion_png else Markup()
    timing_rows = [[stage, float(seconds)] for stage, seconds in timings.items()]
    body = join([
        tag("ul", join(tag("li", line) for line in summary)),
        tag("h2", "Pretraining"), augment_html(pretrain_augment), curves_html(pre_curves),
        tag("h2", "Collapse diagnostics (pretraining, held-out clips)"), collapse_html(pretrain_run),
        tag("h2", "Cross-modal retrieval on held-out clips"),
        table_html(["model"] + [c.replace("_", " ") for c in columns], retrieval_rows),
        tag("p", "v2a: the frames of each clip query the sounds of all clips; a2v: the other way. R@k: percent of "
            f"queries whose own clip is among the top k (chance R@1 {chance:.1f} %); median rank: lower is better; "
            "class P@1: percent whose top match has the query's class.", class_="muted"),
        tag("h2", "Retrieval examples: nearest sounds for a clip's frames"),
        tag("p", "Green: the query's own soundtrack.", class_="muted"), examples_html(assets, examples),
        tag("h2", "Action recognition fine-tuning (same labels)"), augment_html(finetune_augment),
        table_html(["initialisation", "fine-tuned top-1 (%)", "fine-tuned top-5 (%)", "linear probe top-1 (%)"],
                   finetune_rows),
        tag("p", "Linear probe: a logistic regression on the frozen encoder's features (pretrained, or the random "
            "initialisation the scratch run starts from).", class_="muted"),
        curves_html(ft_curves), confusion,
        tag("h2", "Time"), table_html(["stage", "seconds"], timing_rows),
    ])
    return write_page(out, "avssl demo report", body)
