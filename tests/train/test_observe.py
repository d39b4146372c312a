"""metrics.jsonl after a resume: the rows logged after the checkpoint resumed from are dropped."""
from __future__ import annotations

import json

from avssl.train.observe import MetricsLogger, read_metrics, truncate_metrics


def test_rows_after_the_resumed_step_and_a_line_cut_short_are_dropped(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in (1, 2, 3, 4):
        logger.log("train", step, {"loss": 1.0 / step})
    logger.log("val", 3, {"val_loss": 0.5})
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"split": "train", "st')  # the run was killed mid-write

    MetricsLogger(tmp_path, tensorboard=False, resume_step=3).log("train", 4, {"loss": 0.2})
    assert [(r["split"], r["step"]) for r in read_metrics(tmp_path)] == [
        ("train", 1), ("train", 2), ("train", 3), ("val", 3), ("train", 4)]
    assert read_metrics(tmp_path)[-1]["loss"] == 0.2


def test_nothing_to_drop_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"split": "train", "step": 1}) + "\n")
    before = path.stat()
    assert truncate_metrics(path, 1) == 0 and truncate_metrics(tmp_path / "absent.jsonl", 1) == 0
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_ino == before.st_ino
