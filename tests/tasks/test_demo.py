"""`avssl demo` end to end at a toy size (a few optimizer steps), and its config file."""
from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import pytest

from avssl.cli import main
from avssl.config import config_to_dict, load_config
from avssl.data.augment import AugmentConfig
from avssl.recipes.demo import DemoConfig, few_labels
from html_checks import browser_problems, referenced_files

ROOT = Path(__file__).resolve().parents[2]

# 2 classes x 4 videos of 2 s; one epoch of each training run with batches of 4
TOY = [
    "corpus.num_classes=2", "corpus.videos_per_class=4", "corpus.duration=2.0", "corpus.val_fraction=0.25",
    "labels_per_class=2", "examples=2", "top_k=2",
    "pretrain.data.batch_size=3", "pretrain.data.num_workers=0", "pretrain.train.epochs=1",
    "finetune.data.batch_size=2", "finetune.data.num_workers=0", "finetune.train.epochs=1",
    "finetune.data.eval_clips=1",
]


def test_config_file_matches_built_in_defaults() -> None:
    from_file = load_config(DemoConfig, ROOT / "avssl" / "configs" / "demo.yaml")
    assert config_to_dict(from_file) == config_to_dict(DemoConfig())


def test_few_labels_keeps_the_first_videos_of_each_class(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "train.csv").write_text("path,label\na/0.mp4,a\na/1.mp4,a\nb/0.mp4,b\na/2.mp4,a\nb/1.mp4,b\n")
    rows = few_labels(tmp_path / "c" / "train.csv", tmp_path / "few.csv", 2).read_text().splitlines()
    assert rows[0] == "path,label" and len(rows) == 5
    assert [r.split(",")[1] for r in rows[1:]] == ["a", "a", "b", "b"]
    assert rows[1].split(",")[0] == str((tmp_path / "c" / "a" / "0.mp4").resolve())


def test_demo_runs_and_writes_its_report(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing from the checkout is needed
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TOY]) == 0
    printed = capsys.readouterr().out
    report = out / "report.html"
    assert f"report: {report.resolve()}" in printed
    retrieval_line = re.search(r"R@1 video->audio (\S+) vs (\S+) %, audio->video (\S+) vs (\S+) % "
                               r"\(chance (\S+) %\); top match of the query's class (\S+) vs (\S+) %", printed)
    finetune_line = re.search(r"fine-tuned from pretrained (\S+) %, from scratch (\S+) %; "
                              r"linear probe on frozen features (\S+) % vs (\S+) %", printed)
    assert retrieval_line and finetune_line, printed

    results = json.loads((out / "results.json").read_text())
    assert set(results["retrieval"]) == {"pretrained", "random init"}
    assert results["retrieval"]["pretrained"]["num_clips"] == 2  # one held-out video per class
    pre, rnd = results["retrieval"]["pretrained"], results["retrieval"]["random init"]
    ft, scratch = results["finetune"]["pretrained"], results["finetune"]["scratch"]
    # the printed headline is the measured numbers
    assert retrieval_line.groups()[:5] == tuple(f"{v:.1f}" for v in (
        pre["v2a_R@1"], rnd["v2a_R@1"], pre["a2v_R@1"], rnd["a2v_R@1"], pre["chance_R@1"]))
    assert finetune_line.groups() == tuple(f"{v:.1f}" for v in (
        ft["top1"], scratch["top1"], ft["probe_top1"], scratch["probe_top1"]))
    assert pre["chance_R@1"] == 50.0 and all(0 <= v <= 100 for v in (ft["top1"], scratch["top1"]))
    assert set(results["timings"]) == {"synthetic corpus", "pretraining", "retrieval evaluation", "fine-tuning from "
                                       "pretrained", "fine-tuning from scratch", "linear probes", "report"}
    assert results["wall_time"] >= sum(results["timings"].values()) - 1

    html = report.read_text()
    assert "Cross-modal retrieval" in html and "random init" in html and "confusion matrix" in html
    assert html.count("<h3>Query") == 2 and html.count("<svg") >= 3
    assert html.count(f"Training augmentations: {escape(AugmentConfig().describe())}.") == 2  # both trainings
    files = referenced_files(report)
    assert files and all(f.is_file() for f in files)
    assert any(f.suffix == ".wav" for f in files) and any(f.suffix == ".png" for f in files)
    assert browser_problems(report, tmp_path) == []
