"""Fine-tuning and the linear probe end to end on the synthetic corpus with the tiny model (CPU)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from avssl.cli import main
from avssl.config import load_config
from avssl.data.synthetic import make_corpus
from avssl.models.factory import load_classifier
from avssl.models.factory import create_model
from avssl.recipes.finetune import FinetuneConfig, mixup, run_finetune, soft_targets
from avssl.tasks.linear_probe import linear_probe
from avssl.train.checkpoint import Position, save_checkpoint
from avssl.train.observe import read_metrics

TINY_YAML = Path(__file__).resolve().parents[2] / "avssl" / "configs" / "finetune" / "tiny.yaml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """4 classes x 8 videos: 24 training and 8 validation videos."""
    return make_corpus(tmp_path_factory.mktemp("corpus"), num_classes=4, videos_per_class=8)


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory) -> Path:
    """A pretraining run folder as `avssl pretrain` leaves it (checkpoints/ + index.json), tiny model."""
    torch.manual_seed(0)
    model = create_model("tiny")
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    run = tmp_path_factory.mktemp("pretrain")
    save_checkpoint(run / "checkpoints", model, optimizer, scheduler, Position(step=1, epoch=1), metric=1.0)
    return run


def _config(corpus: Path, out: Path, *overrides: str) -> FinetuneConfig:
    base = [f"out={out}", f"data.train={corpus / 'train.csv'}", f"data.val={corpus / 'val.csv'}",
            "train.device=cpu", "data.eval_clips=2", "train.log_every=1"]
    return load_config(FinetuneConfig, TINY_YAML, base + list(overrides))


@pytest.mark.slow
def test_finetune_from_pretrained_beats_chance(corpus, pretrained_run, tmp_path):
    cfg = _config(corpus, tmp_path / "ft", f"init={pretrained_run}", "train.epochs=8")
    result = run_finetune(cfg)
    assert result.status == "finished"
    assert result.classes == ["circle_low", "diamond_buzz", "square_mid", "triangle_high"]
    assert result.metrics["chance_top1"] == 25.0
    assert result.top1 >= 62.5, result.metrics  # 8 validation videos, 4 classes: chance is 25 %
    assert result.top5 == 100.0
    payload = json.loads(result.metrics_json.read_text())
    assert (payload["clips"], payload["crops"], payload["num_videos"]) == (2, 3, 8)
    assert payload["split"] == "val" and Path(payload["checkpoint"]).parent == tmp_path / "ft" / "checkpoints"
    assert payload["top1"] == result.top1 and int(result.confusion.sum()) == 8
    assert Image.open(result.confusion_png).size[0] > 100
    assert len((tmp_path / "ft" / "eval" / "predictions.csv").read_text().splitlines()) == 9
    val = read_metrics(tmp_path / "ft", split="val")
    assert [r["epoch"] for r in val] == list(range(1, 9)) and all("val_top1" in r for r in val)
    index = json.loads((tmp_path / "ft" / "checkpoints" / "index.json").read_text())
    assert index["best_metric"] == max(r["val_top1"] for r in val)
    classifier = load_classifier(tmp_path / "ft")  # the run folder gives its best checkpoint
    assert classifier.classes == result.classes and classifier.mode == "video"


def test_scratch_run_resumes_where_it_stopped(corpus, tmp_path):
    first = run_finetune(_config(corpus, tmp_path / "ft", "init=none", "train.epochs=1", "data.eval_clips=1"))
    steps_per_epoch = first.fit.position.step
    assert first.status == "finished" and steps_per_epoch == 3  # 24 videos, batch 8
    resumed = run_finetune(_config(corpus, tmp_path / "ft", "init=none", "train.epochs=2", "train.resume=true",
                                   "data.eval_clips=1"))
    assert resumed.fit.position.step == 2 * steps_per_epoch
    train_steps = [r["step"] for r in read_metrics(tmp_path / "ft", split="train")]
    assert train_steps == list(range(1, 2 * steps_per_epoch + 1))  # epoch 1 was not trained twice
    assert [r["epoch"] for r in read_metrics(tmp_path / "ft", split="val")] == [1, 2]


def _multi_label_csv(corpus: Path, split: str) -> Path:
    """The corpus relabelled with two labels per video: its class and whether its shape is round."""
    rows = list(csv.DictReader((corpus / f"{split}.csv").open()))
    path = corpus / f"{split}_multi.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels"])
        for row in rows:
            shape = "round" if row["label"].startswith("circle") else "angular"
            writer.writerow([row["path"], f"{row['label']};{shape}"])
    return path


def test_multi_label_uses_bce_and_reports_map(corpus, tmp_path):
    cfg = _config(corpus, tmp_path / "ml", "init=none", "mode=audio", "train.epochs=1", "data.eval_clips=1",
                  f"data.train={_multi_label_csv(corpus, 'train')}", f"data.val={_multi_label_csv(corpus, 'val')}")
    result = run_finetune(cfg)
    assert result.classes == ["angular", "circle_low", "diamond_buzz", "round", "square_mid", "triangle_high"]
    assert 0 < result.metrics["mAP"] <= 100 and result.confusion is None and result.confusion_png is None
    payload = json.loads(result.metrics_json.read_text())
    assert payload["multi_label"] and set(payload["per_class_AP"]) == set(result.classes)
    assert payload["crops"] == 1  # audio: crops are a picture matter
    assert "val_mAP" in read_metrics(tmp_path / "ml", split="val")[0]


def test_linear_probe_beats_chance(corpus, pretrained_run):
    metrics = linear_probe(pretrained_run, corpus / "train.csv", corpus / "val.csv", mode="av", num_workers=2)
    assert (metrics["num_train"], metrics["num_val"], metrics["num_classes"]) == (24, 8, 4)
    assert metrics["feature_dim"] == 256
    assert metrics["top1"] >= 75.0, metrics


def test_cli_end_to_end_with_overrides(corpus, pretrained_run, tmp_path, capsys, caplog):
    out = tmp_path / "cli"
    with caplog.at_level("INFO", logger="avssl.recipes.pretrain"):
        code = main(["finetune", "-c", str(TINY_YAML), "--init", str(pretrained_run), f"out={out}",
                     f"data.train={corpus / 'train.csv'}", f"data.val={corpus / 'val.csv'}", "train.device=cpu",
                     "train.epochs=1", "mode=av", "head.fusion=joint", "head.mixup=0.4", "head.dropout=0.1",
                     "data.eval_clips=1", "data.eval_crops=2", "data.augment.flip=false",
                     "data.augment.crop_scale=[1, 1]"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "mode: av" in printed and "top1=" in printed and str(out / "eval" / "metrics.json") in printed
    saved = (out / "config.yaml").read_text()
    assert "fusion: joint" in saved and "mixup: 0.4" in saved and "flip: false" in saved
    assert "training augmentations: SpecAugment freq<=48 bins time<=20%" in caplog.text
    assert json.loads((out / "eval" / "metrics.json").read_text())["crops"] == 2
    assert main(["finetune", "-c", str(TINY_YAML), "head.label_smothing=0.2"]) == 2
    assert "did you mean 'label_smoothing'" in capsys.readouterr().err
    assert main(["finetune", "-c", str(TINY_YAML), "data.augment.flp=false"]) == 2
    assert "did you mean 'flip'" in capsys.readouterr().err
    assert main(["finetune", "-c", str(TINY_YAML), "data.augment.time_mask=2"]) == 2
    assert "data.augment.time_mask: expected" in capsys.readouterr().err


def test_unlabelled_training_videos_are_refused(corpus, tmp_path):
    cfg = _config(corpus, tmp_path / "x", f"data.train={corpus / 'circle_low'}")
    with pytest.raises(ValueError, match="has no labels"):
        run_finetune(cfg)


def test_targets_and_mixup():
    targets = soft_targets(torch.tensor([0, 2]), 4, 0.1, multi_label=False)
    assert torch.allclose(targets.sum(dim=1), torch.ones(2)) and targets[0, 0] == pytest.approx(0.925)
    multi = soft_targets(torch.tensor([[1.0, 0.0]]), 2, 0.2, multi_label=True, multi_label_style="binary")
    assert torch.allclose(multi, torch.tensor([[0.9, 0.1]]))
    with pytest.raises(ValueError, match="no label"):
        soft_targets(torch.tensor([1, -1]), 3, 0.0, multi_label=False)
    torch.manual_seed(0)
    video, audio = torch.randn(6, 2, 3, 4, 4), torch.randn(6, 5, 8)
    onehot = torch.eye(6)
    mixed_video, mixed_audio, mixed_targets = mixup(video, audio, onehot, alpha=0.4)
    # with one-hot targets the mixed targets are the mixing matrix itself: the same one must mix the inputs
    assert not torch.equal(mixed_targets, onehot) and torch.allclose(mixed_targets.sum(dim=1), torch.ones(6))
    assert torch.allclose(mixed_video, torch.einsum("ij,j...->i...", mixed_targets, video), atol=1e-6)
    assert torch.allclose(mixed_audio, torch.einsum("ij,j...->i...", mixed_targets, audio), atol=1e-6)
