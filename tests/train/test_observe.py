"""Where a run's numbers go: metrics.jsonl (rows after a resumed checkpoint dropped), and the optional
loggers of train.loggers (an unknown or missing one is a config error; W&B tested offline)."""
from __future__ import annotations

import importlib.util
import json

import pytest

from avssl.config import ConfigError, load_config
from avssl.recipes.pretrain import PretrainConfig
from avssl.train.observe import MetricsLogger, read_metrics, truncate_metrics


def test_rows_after_the_resumed_step_and_a_line_cut_short_are_dropped(tmp_path):
    logger = MetricsLogger(tmp_path, loggers=())
    for step in (1, 2, 3, 4):
        logger.log("train", step, {"loss": 1.0 / step})
    logger.log("val", 3, {"val_loss": 0.5})
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"split": "train", "st')  # the run was killed mid-write

    MetricsLogger(tmp_path, loggers=(), resume_step=3).log("train", 4, {"loss": 0.2})
    assert [(r["split"], r["step"]) for r in read_metrics(tmp_path)] == [
        ("train", 1), ("train", 2), ("train", 3), ("val", 3), ("train", 4)]
    assert read_metrics(tmp_path)[-1]["loss"] == 0.2


def test_nothing_to_drop_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"split": "train", "step": 1}) + "\n")
    before = path.stat()
    assert truncate_metrics(path, 1) == 0 and truncate_metrics(tmp_path / "absent.jsonl", 1) == 0
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_ino == before.st_ino


def test_an_unknown_logger_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"train.loggers\[1\]='wandbb': must be one of tensorboard, wandb"):
        load_config(PretrainConfig, overrides=["train.loggers=[tensorboard, wandbb]"])
    assert load_config(PretrainConfig).train.loggers == ("tensorboard",)  # W&B is off by default


def test_a_logger_whose_package_is_missing_says_how_to_install_it(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match=r'pip install "avssl\[wandb\]", or leave it out: train.loggers=\[tensorboard\]'):
        MetricsLogger(tmp_path, enabled=False, loggers=("tensorboard", "wandb"))  # every rank checks, not only rank 0
    assert not (tmp_path / "metrics.jsonl").exists()


def test_wandb_offline_gets_the_runs_scalars_and_config(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # nothing written to the home folder
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "pretrain-tiny"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("seed: 3\nmodel:\n  name: tiny\n")
    logger = MetricsLogger(run_dir, loggers=("tensorboard", "wandb"))
    for step in (1, 2, 3):
        logger.log("train", step, {"loss": 1.0 / step}, epoch=0)
    logger.log("val", 3, {"R@1": 0.5}, epoch=0)
    logger.log("train", 4, {"loss": 0.2}, epoch=1)  # W&B commits step 3 when step 4 begins
    run = wandb.run
    assert (run.name, run.group, run.project, run.offline) == ("pretrain-tiny", "pretrain-tiny", "avssl", True)
    assert run.config["seed"] == 3 and run.config["model"] == {"name": "tiny"}
    summary = dict(run.summary)
    assert summary["_step"] == 3 and summary["train/loss"] == pytest.approx(1 / 3) and summary["val/R@1"] == 0.5
    logger.close()
    assert wandb.run is None  # finished
    wandb.teardown()  # stop the W&B service process this test started
    assert list(run_dir.glob("wandb/offline-run-*/run-*.wandb")) and list(run_dir.glob("tensorboard/events.*"))
    assert [r["step"] for r in read_metrics(run_dir, "train")] == [1, 2, 3, 4]
