"""A pseudo-labelling run stopped by SIGTERM in the middle of round 1's student and run again with
train.resume=true goes on where it stopped: round 0 is not redone, the teacher is not asked again (the
round's saved pseudo labels are reused), the student resumes from its checkpoint, and the run ends
with the weights, metrics and files of a run never stopped."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import avssl.recipes.finetune as finetune_module
import avssl.recipes.pseudo_label as pseudo_label_module
from avssl.config import load_config
from avssl.models.weights import resolve_checkpoint
from avssl.recipes.finetune import FinetuneConfig
from avssl.recipes.pseudo_label import run_pseudo_label
from avssl.train.observe import read_metrics
from test_pseudo_labels import _few_labels, _pseudo_label_run

# threshold 0: the 8 pool clips are kept; a train row per step, as a resumed run's first row averages only the
# steps since its checkpoint
SETTINGS = ("train.epochs=2", "train.log_every=1", "pseudo_label.labels=soft")
CLOCK_KEYS = {"time", "clips_per_s", "data_wait_fraction"}  # how fast, not what was computed
STEPS = (4, 8)  # optimizer steps of round 0 (8 labelled clips, batch 4, 2 epochs) and round 1 (8 + 8 clips)


def _stop_at_step(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """SIGTERM during the `call`-th training step of the run, counted over every round."""
    make_step = finetune_module.make_step
    calls = {"n": 0}

    def make(*args: Any):
        step = make_step(*args)

        def signalling_step(model, batch):
            calls["n"] += 1
            if calls["n"] == call:
                os.kill(os.getpid(), signal.SIGTERM)  # the trainer finishes the step, saves and stops
            return step(model, batch)
        return signalling_step

    monkeypatch.setattr(finetune_module, "make_step", make)


def _watch_runs(monkeypatch: pytest.MonkeyPatch, runs: list[Path]) -> None:
    """Append to `runs` the folder of each fine-tuning run started; fail if the teacher is asked for labels."""
    def never(*_: Any):
        raise AssertionError("the teacher was asked again: the saved pseudo labels were not reused")

    monkeypatch.setattr(pseudo_label_module, "teacher_labels", never)
    run_finetune = pseudo_label_module.run_finetune
    monkeypatch.setattr(pseudo_label_module, "run_finetune",
                        lambda cfg, pseudo=None: runs.append(Path(cfg.out)) or run_finetune(cfg, pseudo))


def _rows(run: Path, split: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in CLOCK_KEYS} for row in read_metrics(run, split)]


def _weights(run: Path, which: str) -> dict[str, torch.Tensor]:
    return load_file(str(resolve_checkpoint(run, which) / "model.safetensors"))


def _headline(run: Path) -> dict[str, Any]:
    payload = json.loads((run / "eval" / "metrics.json").read_text())
    return {k: v for k, v in payload.items() if k not in ("checkpoint", "source")}


@pytest.mark.slow
def test_a_run_stopped_in_round_1_resumes_there_and_ends_as_one_never_stopped(synthetic_corpus, tmp_path,
                                                                              monkeypatch) -> None:
    args, _ = _few_labels(synthetic_corpus, tmp_path, pool_size=8)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert _pseudo_label_run(args, *SETTINGS, f"out={straight}").status == "finished"

    with monkeypatch.context() as patch:
        _stop_at_step(patch, STEPS[0] + 3)  # mid-epoch 0 of the student
        interrupted = _pseudo_label_run(args, *SETTINGS, f"out={stopped}")
    assert interrupted.status == "interrupted" and interrupted.fit.position.step == 3
    assert not (stopped / "round1" / "eval").exists() and (stopped / "report.html").is_file()
    assert [r["step"] for r in read_metrics(stopped, "pseudo_label")] == [1]  # no final row for a stopped run

    runs: list[Path] = []
    with monkeypatch.context() as patch:
        _watch_runs(patch, runs)
        resumed = _pseudo_label_run(args, *SETTINGS, f"out={stopped}", "train.resume=true")
    assert runs == [stopped / "round1"]  # round 0 was finished: read back, not run again
    assert resumed.status == "finished" and resumed.fit.position.step == STEPS[1]
    assert [r["step"] for r in read_metrics(stopped / "round1", "train")] == list(range(1, STEPS[1] + 1))

    for run in ("round0", "round1"):
        for which in ("last", "best"):
            a, b = _weights(straight / run, which), _weights(stopped / run, which)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (run, which)
        for split in ("train", "val"):
            assert _rows(stopped / run, split) == _rows(straight / run, split), (run, split)
        assert _headline(stopped / run) == _headline(straight / run)
    assert _rows(stopped, "pseudo_label") == _rows(straight, "pseudo_label")
    assert resumed.top1 == read_metrics(straight, "pseudo_label")[-1]["teacher_top1"]
    labels_csv, straight_csv = (run / "pseudo_labels" / "round1.csv" for run in (stopped, straight))
    assert labels_csv.read_text() == straight_csv.read_text()
    assert "Pseudo-labelled clips per class" in (stopped / "report.html").read_text()

    again: list[Path] = []  # a finished run resumed: every round read back, nothing run, the same numbers
    with monkeypatch.context() as patch:
        _watch_runs(patch, again)
        done = _pseudo_label_run(args, *SETTINGS, f"out={stopped}", "train.resume=true")
    assert again == [] and done.status == "finished" and done.fit.position.step == STEPS[1]
    assert (done.top1, done.metrics, done.run_dir) == (resumed.top1, resumed.metrics, resumed.run_dir)
    assert torch.equal(done.confusion, resumed.confusion)
    assert _rows(stopped, "pseudo_label") == _rows(straight, "pseudo_label")


def test_resuming_from_a_checkpoint_path_is_refused_with_what_to_do(tmp_path) -> None:
    cfg = load_config(FinetuneConfig, None, [f"data.unlabeled={tmp_path}", f"train.resume={tmp_path / 'ckpt'}",
                                             f"out={tmp_path / 'pl'}"])
    with pytest.raises(ValueError, match="pseudo-labelling resumes its rounds from its own folder: train.resume=true"):
        run_pseudo_label(cfg)
