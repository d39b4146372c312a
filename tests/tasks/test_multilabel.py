"""Multi-label (AudioSet-style) fine-tuning end to end: segment CSVs -> `avssl prepare audioset` ->
multi-hot `ClipDataset` -> `avssl finetune` with BCE -> mAP in metrics.json; and mAP itself on a
score matrix worked out by hand."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from avssl.cli import main
from avssl.data.datasets import ClipDataset
from avssl.tasks.classification_metrics import average_precision, classification_report, mean_average_precision
from avssl.recipes.finetune import classification_loss, soft_targets
from avssl.train.observe import read_metrics

TINY_YAML = Path(__file__).resolve().parents[2] / "avssl" / "configs" / "finetune" / "tiny.yaml"
SEGMENTS_HEADER = [
    "# Segments csv created by the avssl tests",
    "# num_ytids=0, num_segs=0, num_unique_labels=0, num_positive_labels=0",
    "# YTID, start_seconds, end_seconds, positive_labels",
]
SHAPE_MID = {"circle_low": "/m/round", "diamond_buzz": "/m/angular", "square_mid": "/m/angular",
             "triangle_high": "/m/angular"}
DISPLAY = {"/m/round": "Round, smooth", "/m/angular": "Angular"}  # a comma inside a name, as AudioSet has


def _class_mid(name: str) -> str:
    return f"/m/{name}"


def _write_audioset(root: Path, corpus: Path, write_test_video) -> dict[str, Path]:
    """Annotations in AudioSet's formats for the synthetic corpus (each video: its class + its shape,
    two labels), its videos linked under downloader names (`<id>_<start>_<end>.mp4`), plus one
    full-length download whose annotated segment is a window of the file."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    names = {**DISPLAY, **{_class_mid(c): c.replace("_", " ") for c in SHAPE_MID}}
    index = root / "class_labels_indices.csv"
    with index.open("w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows([i, mid, name] for i, (mid, name) in enumerate(sorted(names.items())))
    segments = {}
    for split, csv_name in (("train", "balanced_train_segments.csv"), ("val", "eval_segments.csv")):
        lines = list(SEGMENTS_HEADER)
        for k, row in enumerate(csv.DictReader((corpus / f"{split}.csv").open())):
            ytid = f"{split[:2]}{k:09d}"  # 11 characters, like a YouTube id
            os.symlink(corpus / row["path"], videos / f"{ytid}_0.000_3.000.mp4")
            lines.append(f'{ytid}, 0.000, 3.000, "{_class_mid(row["label"])},{SHAPE_MID[row["label"]]}"')
        segments[split] = root / csv_name
        segments[split].write_text("\n".join(lines) + "\n")
    full = write_test_video("fullLength1.mp4", duration=4.0)
    os.replace(full, videos / full.name)
    with segments["train"].open("a") as handle:
        handle.write(f'fullLength1, 1.000, 3.000, "{_class_mid("circle_low")},/m/round"\n')
    return {"index": index, "videos": videos, **segments}


@pytest.fixture
def audioset_manifests(tmp_path: Path, synthetic_corpus: Path, write_test_video,
                       monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """train.csv / eval.csv as `avssl prepare audioset` writes them."""
    monkeypatch.setenv("AVSSL_CACHE_DIR", str(tmp_path / "cache"))  # the probe cache stays in the test
    layout = _write_audioset(tmp_path / "audioset", synthetic_corpus, write_test_video)
    out = {}
    for split, name in (("train", "train.csv"), ("val", "eval.csv")):
        out[split] = tmp_path / "manifests" / name
        assert main(["prepare", "audioset", "--annotations", str(layout[split]), "--class-index",
                     str(layout["index"]), "--videos", str(layout["videos"]), "--out", str(out[split])]) == 0
    return out


def test_prepared_manifest_gives_multi_hot_targets(audioset_manifests: dict[str, Path]) -> None:
    rows = list(csv.DictReader(audioset_manifests["train"].open()))
    assert set(rows[0]) >= {"path", "labels"} and len(rows) == 25  # 24 linked clips + the full-length one
    full = [r for r in rows if r["path"].endswith("fullLength1.mp4")]
    assert len(full) == 1 and (float(full[0]["start"]), float(full[0]["end"])) == (1.0, 3.0)
    dataset = ClipDataset(audioset_manifests["train"], train=False, sampler="constant", frame_size=64)
    assert dataset.multi_label and "Round, smooth" in dataset.classes and len(dataset.classes) == 6
    target = dataset[0]["label"]
    assert target.dtype == torch.float32 and target.shape == (6,) and float(target.sum()) == 2.0


def test_finetune_on_prepared_audioset_uses_bce_and_reports_map(
        audioset_manifests: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ft"
    code = main(["finetune", "-c", str(TINY_YAML), "init=none", "mode=av", f"out={out}", "train.device=cpu",
                 f"data.train={audioset_manifests['train']}", f"data.val={audioset_manifests['val']}",
                 "train.epochs=2", "train.log_every=1", "data.eval_clips=1", "data.eval_crops=1",
                 "head.label_smoothing=0.0"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "mAP=" in printed
    # at the first step the fresh head (zero bias, weights of std 0.01) gives logits near 0: BCE per
    # class is then ln 2 whatever the targets, where softmax cross-entropy over 6 classes would be ln 6
    first = read_metrics(out, split="train")[0]
    assert first["step"] == 1 and first["loss"] == pytest.approx(math.log(2), abs=0.02)
    val = read_metrics(out, split="val")
    assert [r["epoch"] for r in val] == [1, 2] and all(0 <= r["val_mAP"] <= 100 for r in val)
    index = json.loads((out / "checkpoints" / "index.json").read_text())
    assert index["best_metric"] == max(r["val_mAP"] for r in val)  # the best checkpoint is chosen by mAP
    payload = json.loads((out / "eval" / "metrics.json").read_text())
    assert payload["multi_label"] and payload["num_videos"] == 8 and payload["num_classes"] == 6
    assert 0 <= payload["mAP"] <= 100 and "confusion" not in payload  # mAP in percent, as top-1 is
    assert set(payload["per_class_AP"]) == set(payload["classes"])
    assert not (out / "eval" / "confusion.png").exists()
    predictions = list(csv.DictReader((out / "eval" / "predictions.csv").open()))
    assert len(predictions) == 8 and all(len(r["label"].split(";")) == 2 for r in predictions)


def test_bce_loss_for_multi_label_targets() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    targets = soft_targets(labels, 3, 0.0, multi_label=True)
    by_hand = -(labels * F.logsigmoid(logits) + (1 - labels) * F.logsigmoid(-logits)).mean()
    assert classification_loss(logits, targets, multi_label=True) == pytest.approx(float(by_hand))
    assert classification_loss(torch.zeros(2, 3), targets, multi_label=True) == pytest.approx(math.log(2))


def test_map_on_a_hand_worked_score_matrix() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.4, 0.3],
                           [0.8, 0.7, 0.2, 0.6],
                           [0.3, 0.6, 0.9, 0.5],
                           [0.1, 0.2, 0.8, 0.4]])
    targets = torch.tensor([[1, 0, 0, 0],
                            [0, 1, 1, 0],
                            [1, 1, 0, 0],
                            [0, 0, 0, 0]])
    # class 0 ranks v0+ v1- v2+ v3-: (1/1 + 2/3) / 2; class 1 ranks v1+ v2+ first: 1;
    # class 2 ranks its one positive (v1) last: 1/4; class 3 has no positive and is left out
    ap = average_precision(scores, targets)
    assert ap[:3].tolist() == pytest.approx([5 / 6, 1.0, 1 / 4]) and math.isnan(float(ap[3]))
    assert mean_average_precision(scores, targets) == pytest.approx(100 * (5 / 6 + 1 + 1 / 4) / 3)  # 69.44
    metrics, confusion = classification_report(scores, targets, multi_label=True)
    assert confusion is None and metrics["mAP"] == pytest.approx(2500 / 36)
    assert metrics["top1"] == 25.0  # best-scored class is one of the video's own only for v0
    # a tie is ranked pessimistically: the positive shares the group's last rank
    tied = average_precision(torch.tensor([[0.5], [0.5], [0.5], [0.1]]), torch.tensor([[1], [0], [0], [0]]))
    assert float(tied[0]) == pytest.approx(1 / 3)
