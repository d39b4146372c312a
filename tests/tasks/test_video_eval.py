"""Multi-view evaluation: spatial crops, clips per video, per-video averaging, the written report."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from avssl.data.synthetic import make_corpus
from avssl.models.classifier import AVClassifier
from avssl.models.factory import create_model
from avssl.tasks.video_eval import (SpatialCrops, eval_loader, evaluate_classifier, multi_view_dataset, per_video,
                                    predict_videos)


def test_three_crops_run_left_centre_right_along_the_long_side():
    # a landscape clip whose pixel values are the column index: crops are told apart by their columns
    columns = torch.arange(96, dtype=torch.uint8)
    frames = columns.view(1, 1, 96, 1).expand(2, 32, 96, 3).contiguous()
    crops = SpatialCrops(32, crops=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_fraction=1.0)(frames)
    assert crops.shape == (3, 2, 3, 32, 32)
    first_columns = [round(float(view[0, 0, 0, 0]) * 255) for view in crops]
    assert first_columns == [0, 32, 64]
    portrait = SpatialCrops(16, crops=1)(torch.zeros(2, 40, 20, 3, dtype=torch.uint8))
    assert portrait.shape == (1, 2, 3, 16, 16)
    with pytest.raises(ValueError):
        SpatialCrops(16, crops=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), num_classes=2, videos_per_class=3, duration=2.5,
                       val_fraction=0.0)


def test_per_video_averages_every_view(corpus):
    config = create_model("tiny").config
    dataset = multi_view_dataset(corpus / "train.csv", model_config=config, clips=2, crops=3)
    assert len(dataset) == 12 and dataset.video_of(5) == 2
    item = dataset[0]
    assert item["video"].shape == (3, config.num_frames, 3, config.frame_size, config.frame_size)
    calls = []

    def count_views(video, audio):
        calls.append((video.shape[0], audio.shape[0]))
        return torch.ones(video.shape[0], 1) * video.shape[0]

    out = per_video(count_views, dataset, mode="av", batch_size=4, num_workers=0)
    assert out.values.shape == (6, 1) and out.targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert all(v == a for v, a in calls) and sum(v for v, _ in calls) == 36  # 6 videos x 2 clips x 3 crops
    audio_only = per_video(lambda v, a: a.mean(dim=(1, 2))[:, None], dataset, mode="audio", batch_size=5,
                           num_workers=0)
    first_video = torch.stack([dataset[0]["audio"], dataset[1]["audio"]]).mean()
    assert torch.allclose(audio_only.values[0, 0], first_video, atol=1e-5)


def test_evaluate_classifier_writes_report(corpus, tmp_path):
    torch.manual_seed(0)
    model = AVClassifier(create_model("tiny"), 2, classes=["circle_low", "square_mid"])
    dataset = multi_view_dataset(corpus / "train.csv", model_config=model.config, clips=2, crops=3,
                                 classes=model.classes)
    report = evaluate_classifier(model, dataset, tmp_path / "eval", batch_size=4, num_workers=0,
                                 extra={"split": "test"}, show_progress=False)
    payload = json.loads(report.metrics_json.read_text())
    assert payload["split"] == "test" and payload["clips"] == 2 and payload["crops"] == 3
    assert payload["num_videos"] == 6 and payload["top1"] == report.metrics["top1"]
    assert int(report.confusion.sum()) == 6 and payload["confusion"] == report.confusion.tolist()
    assert Image.open(report.confusion_png).format == "PNG"
    rows = report.predictions_csv.read_text().splitlines()
    assert rows[0] == "path,label,predicted,score" and len(rows) == 7


class _PidLog(Dataset):
    """The items of `source`, each adding the id of the process that read it to the file `log`."""

    def __init__(self, source: Dataset, log: Path) -> None:
        self.source, self.log = source, log

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Any:
        with self.log.open("a") as handle:
            handle.write(f"{os.getpid()}\n")
        return self.source[index]

    def __getattr__(self, name: str) -> Any:
        if name == "source":  # not set yet (unpickling in a worker): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)


def test_a_kept_eval_loader_serves_every_pass_with_the_same_workers_and_predictions(corpus, tmp_path):
    torch.manual_seed(0)
    model = AVClassifier(create_model("tiny"), 2, mode="av", classes=["circle_low", "square_mid"])
    dataset = multi_view_dataset(corpus / "train.csv", model_config=model.config, classes=model.classes)
    fresh = predict_videos(model, dataset, batch_size=2, num_workers=0)
    pid_log = tmp_path / "pids"
    logged = _PidLog(dataset, pid_log)
    passes = []
    with eval_loader(logged, batch_size=2, num_workers=2) as loader:  # 3 batches: both workers read
        for _ in range(2):
            outputs = predict_videos(model, logged, loader=loader)
            passes.append(set(pid_log.read_text().split()))
            pid_log.unlink()
            assert torch.equal(outputs.values, fresh.values) and torch.equal(outputs.targets, fresh.targets)
            assert outputs.paths == fresh.paths
    assert len(passes[0]) == 2 and str(os.getpid()) not in passes[0]
    assert passes[1] == passes[0]  # the second pass was read by the same two processes: none re-spawned
