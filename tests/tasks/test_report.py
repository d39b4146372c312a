"""HTML pages: the retrieval results page and the demo report, their assets, and a real browser."""
from __future__ import annotations

import re
import wave
from html import escape as html_escape
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avssl.data.synthetic import write_video
from avssl.tasks.charts import line_chart, nice_ticks, save_confusion_png
from avssl.tasks.report import RetrievalExample, collapse_html, demo_page, retrieval_page, save_thumbnail, save_wav
from avssl.tasks.retrieval import Match
from avssl.train.collapse import CollapseMonitor
from avssl.train.observe import MetricsLogger
from html_checks import HOSTILE, active_markup, browser_problems, referenced_files


def test_wav_round_trip(tmp_path: Path) -> None:
    audio = torch.sin(torch.linspace(0, 200, 8000)) * 0.5
    audio[0], audio[1] = 2.0, -2.0  # clipped, not wrapped
    with wave.open(str(save_wav(audio, 16000, tmp_path / "a.wav"))) as handle:
        assert (handle.getnchannels(), handle.getsampwidth(), handle.getframerate()) == (1, 2, 16000)
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), np.int16)
    assert len(pcm) == 8000 and pcm[0] == 32767 and pcm[1] == -32767
    assert np.allclose(pcm[2:] / 32767, audio[2:].numpy(), atol=1e-4)


def test_thumbnail_keeps_aspect(tmp_path: Path) -> None:
    frame = torch.zeros(90, 320, 3, dtype=torch.uint8)
    with Image.open(save_thumbnail(frame, tmp_path / "t.jpg", size=160)) as image:
        assert (image.format, image.size) == ("JPEG", (160, 45))


def test_ticks_and_chart() -> None:
    assert nice_ticks(0.0, 9.3) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert nice_ticks(1.0, 1.0)[0] <= 1.0 <= nice_ticks(1.0, 1.0)[-1]
    # two floats one ulp apart (a constant series): a few ticks around them, not an endless loop
    ticks = nice_ticks(2.189775228500366, 2.1897752285003662)
    assert 3 <= len(ticks) <= 8 and ticks[0] < 2.18 and ticks[-1] > 2.19
    svg = line_chart({"loss": [(1, 2.0), (2, 1.5), (3, float("nan")), (4, 1.0)], "other": [(1, 0.5)], "none": []},
                     title="t < 1")
    root = ET.fromstring(svg)  # well-formed XML, text escaped
    polylines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(polylines) == 2 and len(polylines[0].get("points").split()) == 3  # NaN point dropped


def media_folder(tmp_path: Path) -> dict[str, Path]:
    """Two short videos with sound, one without, an audio-only WAV and an image."""
    rng = np.random.default_rng(0)
    files = {}
    for name, sound in (("a", True), ("b", True), ("silent", False)):
        frames = rng.integers(0, 255, (24, 48, 64, 3), dtype=np.uint8)
        audio = (0.3 * np.sin(np.linspace(0, 900, 24000))[None]).astype(np.float32) if sound else None
        files[name] = write_video(tmp_path / "media" / f"{name}.mp4", frames, 16, audio)
    files["wav"] = save_wav(torch.sin(torch.linspace(0, 500, 16000)) * 0.3, 16000, tmp_path / "media" / "q.wav")
    files["image"] = tmp_path / "media" / "q.png"
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(files["image"])
    return files


def test_retrieval_page_with_image_query(tmp_path: Path) -> None:
    media = media_folder(tmp_path)
    matches = [Match(0.9, str(media["a"]), 0.0, 1.0), Match(0.5, str(media["b"]), 0.25, 1.25)]
    page = retrieval_page(tmp_path / "out" / "page.html", media["image"], "video", (0.0, 0.0), matches,
                          checkpoint="ckpt", gallery="gallery.pt")
    html = page.read_text()
    files = referenced_files(page)
    assert len(files) == 1 + 2 * 2 and all(f.is_file() for f in files)  # query image + (frame, sound) per match
    assert all(f.parent == page.parent / "page_files" for f in files)
    assert html.count("<audio controls") == 2 and "0.90" in html and "gallery.pt" in html
    assert browser_problems(page, tmp_path) == []


def test_retrieval_page_with_sound_query(tmp_path: Path) -> None:
    media = media_folder(tmp_path)
    matches = [Match(0.7, str(media["silent"]), 0.0, 1.0), Match(0.2, str(media["a"]), 0.0, 1.0)]
    page = retrieval_page(tmp_path / "odd #1 name?.html", media["wav"], "audio", (0.0, 1.0), matches)
    html = page.read_text()
    # the query is a sound (player, no frame); every result shows its frame, and its sound when it has one
    assert html.count("<audio controls") == 2 and html.count('<img class="thumb"') == 2
    assert all(f.is_file() for f in referenced_files(page))
    assert browser_problems(page, tmp_path) == []


def fake_run(folder: Path, steps: int, with_val: bool) -> Path:
    folder.mkdir(parents=True)
    logger = MetricsLogger(folder, loggers=())
    for step in range(1, steps + 1):
        logger.log("train", step, {"loss": 3.0 / step, "loss_mae_video": 1.0 / step, "loss_contrastive": 2.0 / step})
        if with_val and step % 2 == 0:
            logger.log("val", step, {"val_loss": 2.5 / step, "v2a_R@1": 10.0 * step, "a2v_R@1": 8.0 * step,
                                     "chance_R@1": 12.5})
    return folder


def demo_report(tmp_path: Path, match_label: str = "square") -> Path:
    media = media_folder(tmp_path)
    confusion = save_confusion_png(torch.tensor([[3, 1], [0, 4]]), ["circle", "square"], tmp_path / "conf.png")
    metrics = {f"{d}_{m}": v for d in ("v2a", "a2v") for m, v in
               (("R@1", 25.0), ("R@5", 75.0), ("R@10", 100.0), ("median_rank", 2.0))}
    example = RetrievalExample(str(media["a"]), 0.0, 1.0, "circle",
                               [Match(0.8, str(media["a"]), 0.0, 1.0), Match(0.4, str(media["b"]), 0.0, 1.0)],
                               ["circle", match_label])
    return demo_page(
        tmp_path / "demo" / "report.html", summary=["headline <numbers>"],
        pretrain_run=fake_run(tmp_path / "pre", 8, True),
        retrieval={"pretrained": {**metrics, "chance_R@1": 12.5}, "random init": {**metrics, "v2a_R@1": 12.5}},
        examples=[example], finetune={"pretrained": {"top1": 87.5, "top5": 100.0}, "scratch": {"top1": 50.0}},
        finetune_runs={"pretrained": fake_run(tmp_path / "ft1", 6, False),
                       "scratch": fake_run(tmp_path / "ft2", 6, False)},
        confusion_png=confusion, timings={"pretraining": 123.4},
        pretrain_augment="horizontal flip", finetune_augment="none",
    )


def test_demo_report_content_and_files(tmp_path: Path) -> None:
    page = demo_report(tmp_path)
    html = page.read_text()
    assert "headline &lt;numbers&gt;" in html and "87.50" in html and "123.40" in html
    pretraining, finetuning = html.split("<h2>Pretraining</h2>")[1], html.split("<h2>Action recognition")[1]
    assert pretraining.index("Training augmentations: horizontal flip.") < pretraining.index("<h2>")
    assert finetuning.index("Training augmentations: none.") < finetuning.index("<h2>")
    assert html.count("<svg") == 4  # 3 pretraining charts + fine-tuning losses
    assert "<h2>Collapse diagnostics" in html and "no collapse warnings" in html  # a run without diagnostics
    assert html.count('class="hit"') == 1  # the query's own soundtrack is highlighted
    files = referenced_files(page)
    assert len(files) == 1 + 2 * 2 + 1 and all(f.is_file() for f in files)  # query, 2 matches, confusion PNG
    assert browser_problems(page, tmp_path) == []


def test_values_are_escaped_whatever_they_start_with(tmp_path: Path) -> None:
    media = media_folder(tmp_path)
    matches = [Match(0.9, HOSTILE, 0.0, 1.0), Match(0.5, str(media["a"]), 0.0, 1.0)]  # a gallery's stored path
    retrieval = retrieval_page(tmp_path / "r.html", media["image"], "video", (0.0, 0.0), matches,
                               checkpoint=HOSTILE, gallery=HOSTILE).read_text()
    demo = demo_report(tmp_path, match_label=HOSTILE).read_text()  # a class name among the matches
    for page, count in ((retrieval, 3), (demo, 1)):
        assert active_markup(page) == [] and page.count(html_escape(HOSTILE)) == count


def test_browser_check_catches_broken_media(tmp_path: Path) -> None:
    page = demo_report(tmp_path)
    broken = next(f for f in referenced_files(page) if f.suffix == ".jpg")
    broken.write_bytes(b"not a jpeg")
    problems = browser_problems(page, tmp_path)
    assert len(problems) == 1 and broken.name in problems[0]
    page.write_text(page.read_text().replace("</body>", "<script>console.error('boom')</script></body>"))
    assert any("boom" in p for p in browser_problems(page, tmp_path))


def test_collapse_section_charts_the_diagnostics_per_epoch_and_lists_the_warnings(tmp_path: Path) -> None:
    run = tmp_path / "pre"
    run.mkdir()
    logger, monitor = MetricsLogger(run, loggers=()), CollapseMonitor(warmup_epochs=1, run_dir=run)
    healthy = {f"{m}_{stage}_{stat}": 0.3 for m in ("video", "audio") for stage in ("emb", "feat")
               for stat in ("cos", "std", "rank")}
    healthy.update(val_loss_contrastive=1.5, val_contrastive_chance=2.08, alignment=1.2, video_uniformity=-0.4,
                   audio_uniformity=-0.5)
    for epoch, video_cos in ((1, 0.99), (2, 0.99), (3, 0.5)):  # a collapsed video tower that recovers
        values = {**healthy, "video_emb_cos": video_cos}
        values.update(monitor.after_validation(epoch, values))
        logger.log("val", 10 * epoch, values, epoch=epoch)
    section = collapse_html(run)
    charts = [ET.fromstring(svg + "</svg>") for svg in re.findall(r"<svg.*?(?=</svg>)", section)]
    assert len(charts) == 5
    axis_labels = [t.text for chart in charts for t in chart.iter("{http://www.w3.org/2000/svg}text")]
    assert axis_labels.count("epoch") == 5 and "10" not in axis_labels  # plotted per epoch, not per step
    assert "1 collapse warning(s) in epochs 2; none at the last validation (epoch 3)" in section
    assert section.count("<tr><td") == 1 and "the video embeddings have collapsed" in section
