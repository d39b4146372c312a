"""Pretraining end to end on the synthetic corpus: learning, resumption, signals, NaNs, full disks,
torchrun."""
from __future__ import annotations

import errno
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file

import avssl
from avssl.cli import main
from avssl.config import load_config
from avssl.train import checkpoint as checkpoint_module
from avssl.recipes import pretrain as pretrain_module
from avssl.models.weights import resolve_checkpoint
from avssl.train.checkpoint import Position
from avssl.train.observe import read_metrics
from avssl.recipes.pretrain import PretrainConfig, run_pretrain
from avssl.train.trainer import NonFiniteLossError

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "avssl" / "configs" / "pretrain" / "tiny.yaml"


def tiny_config(corpus: Path, out: Path, *extra: str) -> PretrainConfig:
    overrides = [
        f"data.train={corpus / 'train.csv'}",
        f"data.val={corpus / 'val.csv'}",
        f"out={out}",
        "data.num_workers=0",
        "data.batch_size=8",  # the step counts below assume batches of 8 (tiny.yaml's are 32)
        *extra,
    ]
    return load_config(PretrainConfig, TINY, overrides)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(resolve_checkpoint(run) / "model.safetensors"))


# 2 epochs of 3 steps (24 training clips, batch 8), checkpoints at steps 2, 3, 4 and 6, a row every step
RESUMABLE = ("train.epochs=2", "train.warmup_epochs=0.5", "train.checkpoint_every=2", "train.log_every=1")
CLOCK_KEYS = {"time", "clips_per_s", "data_wait_fraction"}


def numbers(run: Path) -> list[tuple[str, dict[str, float]]]:
    """The rows of a run's metrics.jsonl as (split, numbers), without those that depend on the clock."""
    return [(row["split"], {k: v for k, v in row.items() if k not in CLOCK_KEYS | {"split"}})
            for row in read_metrics(run)]


def assert_same_rows(run: Path, reference: Path) -> None:
    rows, expected = numbers(run), numbers(reference)
    assert [(split, row["step"]) for split, row in rows] == [(split, row["step"]) for split, row in expected]
    for (split, row), (_, want) in zip(rows, expected):
        assert row == pytest.approx(want, rel=1e-4), (split, row["step"])


@pytest.fixture(scope="module")
def straight_run(synthetic_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RESUMABLE run never interrupted, for interrupted-and-resumed ones to match."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert run_pretrain(tiny_config(synthetic_corpus, run, *RESUMABLE)).status == "finished"
    return run


def wrap_steps(monkeypatch: pytest.MonkeyPatch, around: Callable) -> None:
    """Make every pretraining step `around(step, model, batch)`, `step` being the one the recipe made."""
    make = pretrain_module.make_pretrain_step
    monkeypatch.setattr(pretrain_module, "make_pretrain_step", lambda *args: functools.partial(around, make(*args)))


def fail_at_call(monkeypatch: pytest.MonkeyPatch, call: int, fail: Callable[[], None]) -> None:
    """Make the `call`-th pretraining step (a micro-step, before its forward) run `fail` first."""
    calls = {"n": 0}

    def step(original, model, batch):
        calls["n"] += 1
        if calls["n"] == call:
            fail()
        return original(model, batch)

    wrap_steps(monkeypatch, step)


def poison_loss_at(monkeypatch: pytest.MonkeyPatch, call: int) -> dict[str, int]:
    """Make the loss of the `call`-th pretraining step NaN; the returned {"n": ...} counts the steps run."""
    calls = {"n": 0}

    def poisoned_step(original, model, batch):
        out = original(model, batch)
        calls["n"] += 1
        if calls["n"] == call:
            out["loss"] = out["loss"] * float("nan")
        return out

    wrap_steps(monkeypatch, poisoned_step)
    return calls


@pytest.mark.slow
def test_tiny_run_learns_and_writes_its_run_folder(synthetic_corpus, tmp_path):
    result = run_pretrain(tiny_config(synthetic_corpus, tmp_path / "run"))
    run = tmp_path / "run"
    assert result.status == "finished"
    for name in ("config.yaml", "metrics.jsonl", "rejected.txt", "checkpoints/index.json"):
        assert (run / name).exists(), name
    assert any((run / "tensorboard").iterdir())
    train = read_metrics(run, "train")
    first, last = train[0]["loss"], train[-1]["loss"]
    assert last < first * 0.9, (first, last)
    val = read_metrics(run, "val")
    best = max(v["mean_R@1"] for v in val)
    assert best >= 2 * val[-1]["chance_R@1"], [v["mean_R@1"] for v in val]
    assert train[-1]["loss_contrastive"] < 0.9 * train[0]["loss_contrastive"]
    assert {"lr", "clips_per_s", "data_wait_fraction", "loss_contrastive"} <= set(train[-1])
    loaded = avssl.load_model(run)  # a run folder means its best checkpoint
    best_weights = load_file(str(resolve_checkpoint(run, "best") / "model.safetensors"))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in best_weights.items())


def test_interrupted_then_resumed_run_matches_uninterrupted(synthetic_corpus, straight_run, tmp_path, monkeypatch):
    # stopped on the last step of epoch 0: the resumed run starts that epoch's loader only to find
    # it finished, which drew from the global RNG and changed the validation masks (val_loss)
    with monkeypatch.context() as patch:
        fail_at_call(patch, 3, lambda: os.kill(os.getpid(), signal.SIGTERM))
        stopped = run_pretrain(tiny_config(synthetic_corpus, tmp_path / "b", *RESUMABLE))
    assert stopped.status == "interrupted" and stopped.position.step == 3
    assert resolve_checkpoint(tmp_path / "b").name == "step_0000003"

    resumed = run_pretrain(tiny_config(synthetic_corpus, tmp_path / "b", *RESUMABLE, "train.resume=true"))
    assert resumed.status == "finished" and resumed.position.step == 6
    a, b = weights(straight_run), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    assert_same_rows(tmp_path / "b", straight_run)


def test_a_signal_during_validation_stops_at_the_epoch_boundary(synthetic_corpus, tmp_path, monkeypatch):
    original = pretrain_module.make_validator

    def signalling_validator(loader):
        evaluate = original(loader)

        def run(model):
            os.kill(os.getpid(), signal.SIGTERM)
            return evaluate(model)
        return run

    monkeypatch.setattr(pretrain_module, "make_validator", signalling_validator)
    result = run_pretrain(tiny_config(synthetic_corpus, tmp_path / "run", *RESUMABLE))
    assert result.status == "interrupted" and result.position == Position(step=3, epoch=1, batch_in_epoch=0)
    assert [r["step"] for r in read_metrics(tmp_path / "run", "train")][-1] == 3  # no step of epoch 1
    assert resolve_checkpoint(tmp_path / "run").name == "step_0000003"


class _Crash(RuntimeError):
    """The process dies mid-step (out of memory, a node lost): no checkpoint of what it did since the last."""


def test_a_run_resumed_after_a_crash_logs_each_step_once(synthetic_corpus, straight_run, tmp_path, monkeypatch):
    def crash() -> None:
        raise _Crash

    with monkeypatch.context() as patch:
        fail_at_call(patch, 6, crash)  # step 5 was logged, the last checkpoint is step 4's
        with pytest.raises(_Crash):
            run_pretrain(tiny_config(synthetic_corpus, tmp_path / "run", *RESUMABLE))
    assert [r["step"] for r in read_metrics(tmp_path / "run", "train")][-1] == 5
    assert resolve_checkpoint(tmp_path / "run").name == "step_0000004"

    run_pretrain(tiny_config(synthetic_corpus, tmp_path / "run", *RESUMABLE, "train.resume=true"))
    assert_same_rows(tmp_path / "run", straight_run)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_process_group_ends_with_a_checkpoint_and_exit_0(synthetic_corpus, tmp_path, signum):
    # what Slurm and Kubernetes do (and Ctrl-C): the DataLoader worker gets the signal too
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "avssl", "pretrain", "-c", str(TINY), f"data.train={synthetic_corpus / 'train.csv'}",
           f"data.val={synthetic_corpus / 'val.csv'}", f"out={run}", "data.num_workers=1", "train.log_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        wait_for(lambda: bool(read_metrics(run, "train")) or proc.poll() is not None, 180, "the first training step")
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it was signalled (exit {proc.returncode}): {proc.communicate()[1][-3000:]}")
        os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    assert "killed by signal" not in err and "Traceback" not in err, err[-3000:]
    assert f"received {signal.Signals(signum).name}" in err and "interrupted at step" in out
    last_step = read_metrics(run)[-1]["step"]
    assert resolve_checkpoint(run).name == f"step_{last_step:07d}"
    wait_for(lambda: group_is_gone(proc.pid), 10, "the DataLoader worker to be gone")


def test_a_full_disk_at_a_checkpoint_is_one_error_line_and_keeps_the_last_one(synthetic_corpus, tmp_path, monkeypatch,
                                                                               capsys):
    real_save = torch.save
    saves = {"n": 0}

    def save_until_the_disk_fills(obj, path, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_the_disk_fills)
    run = tmp_path / "run"
    code = main(["pretrain", "-c", str(TINY), f"data.train={synthetic_corpus / 'train.csv'}",
                 f"data.val={synthetic_corpus / 'val.csv'}", f"out={run}", "data.num_workers=0", "train.epochs=2",
                 "data.batch_size=8"])  # 3 steps an epoch
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert code == 2 and "Traceback" not in err
    assert len(errors) == 1 and "No space left on device" in errors[0] and "step_0000003" in errors[0], err[-2000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["index.json", "step_0000003"]
    assert resolve_checkpoint(run).name == "step_0000003"


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(synthetic_corpus, tmp_path, monkeypatch):
    poison_loss_at(monkeypatch, 3)
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        run_pretrain(tiny_config(synthetic_corpus, tmp_path / "run", "train.checkpoint_every=1"))
    last = resolve_checkpoint(tmp_path / "run")
    assert last.name == "step_0000002"
    assert all(torch.isfinite(t).all() for t in weights(tmp_path / "run").values())


def test_a_nan_is_caught_at_the_next_log_step_without_a_sync_per_step(synthetic_corpus, tmp_path, monkeypatch):
    # 6 steps an epoch (24 clips, batch 4); rows and checkpoints every 3 steps; the loss is NaN at step 4
    calls = poison_loss_at(monkeypatch, 4)
    with pytest.raises(NonFiniteLossError, match=r"at step 4 \(found at step 6"):
        run_pretrain(tiny_config(synthetic_corpus, tmp_path / "run", "data.batch_size=4", "train.log_every=3",
                                 "train.checkpoint_every=3"))
    assert calls["n"] == 6  # steps 5 and 6 ran: nothing waited on the device at steps 4 and 5
    assert [r["step"] for r in read_metrics(tmp_path / "run", "train")] == [3]  # the NaN window is not logged
    assert resolve_checkpoint(tmp_path / "run").name == "step_0000003"
    assert all(torch.isfinite(t).all() for t in weights(tmp_path / "run").values())


def test_unknown_config_key_is_an_error_naming_it(tmp_path):
    cmd = [sys.executable, "-m", "avssl", "pretrain", "-c", str(TINY), "train.epoch=3", f"out={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "'epoch'" in proc.stderr and "epochs" in proc.stderr


@pytest.mark.slow
def test_two_process_torchrun_finishes_with_ranks_in_agreement(synthetic_corpus, tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "avssl", "pretrain", "-c", str(TINY),
        f"data.train={synthetic_corpus / 'train.csv'}", f"data.val={synthetic_corpus / 'val.csv'}",
        f"out={run}", "data.num_workers=0", "data.batch_size=4", "train.epochs=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = read_metrics(run, "ranks")
    assert final and final[-1]["weight_spread"] == 0.0
    assert resolve_checkpoint(run).name.startswith("step_")


def test_training_videos_without_any_sound_are_refused_before_training(write_test_video, tmp_path):
    for k in range(4):
        write_test_video(f"mute/{k}.mp4", audio=False)
    cfg = load_config(PretrainConfig, TINY, [f"data.train={tmp_path / 'mute'}", f"out={tmp_path / 'run'}",
                                             "data.num_workers=0", "data.batch_size=2", "data.val_fraction=0.25"])
    with pytest.raises(ValueError, match="has an audio stream"):
        run_pretrain(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bf16_autocast_runs_the_same_loop_with_finite_losses(synthetic_corpus, tmp_path, monkeypatch):
    # CUDA runs bf16 by default (precision=auto); on a CPU the same autocast path is taken when asked
    seen = []

    def watched_step(original, model, batch):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return original(model, batch)

    wrap_steps(monkeypatch, watched_step)
    cfg = tiny_config(synthetic_corpus, tmp_path / "bf16", "train.epochs=2", "train.precision=bf16")
    result = run_pretrain(cfg)
    assert result.status == "finished"
    assert seen and set(seen) == {(True, torch.bfloat16)}
    train = read_metrics(tmp_path / "bf16", "train")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train)
    # reconstruction improves within a few steps (the contrastive term is too noisy at batch 8 to say)
    mae = [r["loss_mae_video"] + r["loss_mae_audio"] for r in train]
    assert mae[-1] < mae[0]
    # master weights stay fp32 (integer buffers, e.g. a BatchNorm's batch count, are not weights)
    assert all(t.dtype == torch.float32 for t in weights(tmp_path / "bf16").values() if t.is_floating_point())


def test_a_tiny_validation_set_is_warned_about(write_test_video, tmp_path, caplog):
    for k in range(4):
        write_test_video(f"few/{k}.mp4")
    cfg = load_config(PretrainConfig, TINY, [f"data.train={tmp_path / 'few'}", f"out={tmp_path / 'run'}",
                                             "data.num_workers=0", "data.batch_size=2", "train.epochs=1"])
    with caplog.at_level("WARNING", logger="avssl.recipes.pretrain"):
        assert run_pretrain(cfg).status == "finished"
    assert "only 1 validation clips" in caplog.text


class _Stop(Exception):
    """Raised instead of building the trainer: what a test needs has happened by then."""


def test_augment_overrides_reach_the_training_set_and_the_log(write_test_video, tmp_path, caplog, monkeypatch):
    for k in range(4):
        write_test_video(f"few/{k}.mp4")
    built = {}

    def stop(model, loader, *args, **kwargs):
        built["train_set"] = loader.dataset
        built["config"] = (tmp_path / "run" / "config.yaml").read_text()  # the folder goes with the failed set-up
        raise _Stop

    monkeypatch.setattr(pretrain_module, "Trainer", stop)
    cfg = load_config(PretrainConfig, TINY, [f"data.train={tmp_path / 'few'}", f"out={tmp_path / 'run'}",
                                             "data.num_workers=0", "data.batch_size=2", "data.augment.flip=false",
                                             "data.augment.freq_mask=0", "data.augment.time_mask=0.2"])
    with caplog.at_level("INFO", logger="avssl.recipes.pretrain"), pytest.raises(_Stop):
        run_pretrain(cfg)
    assert built["train_set"].video_transform.flip is False and built["train_set"].audio_transform.freq_mask == 0
    assert "training augmentations: random resized crop scale 0.35-1 aspect 0.75-1.33, SpecAugment time<=20%" \
        in caplog.text
    assert "flip: false" in built["config"]


def test_damaged_videos_in_a_folder_are_rejected_counted_and_never_held_out(write_test_video, tmp_path, monkeypatch,
                                                                            capsys):
    """Issue 11: one damaged video must not stop a run. A folder of 4 good videos and 4 damaged ones
    (an MP4 whose sample table box is renamed: no decoder; cut short; text) trains for an epoch;
    the damaged ones are listed with their reasons, and validation is drawn from the good ones only
    (it was drawn from all 8, so it could hold only damaged files: "no usable videos", exit 2)."""
    monkeypatch.setenv("AVSSL_CACHE_DIR", str(tmp_path / "cache"))
    videos = tmp_path / "videos"
    good = [write_test_video(f"videos/{k}.mp4") for k in range(4)]
    data = good[0].read_bytes()
    damaged = {videos / "no_decoder_a.mp4": data.replace(b"stbl", b"xtbl", 1),
               videos / "no_decoder_b.mp4": data.replace(b"stbl", b"xtbl", 1) + b"\0",
               videos / "cut.mp4": data[: len(data) // 3], videos / "text.mp4": b"not a video\n" * 50}
    for path, content in damaged.items():
        path.write_bytes(content)
    run = tmp_path / "run"
    code = main(["pretrain", "-c", str(TINY), f"data.train={videos}", f"out={run}", "data.num_workers=0",
                 "data.batch_size=2", "data.val_fraction=0.5", "train.epochs=1"])
    assert code == 0, capsys.readouterr()
    rejected = dict(line.split("\t") for line in (run / "rejected.txt").read_text().splitlines())
    assert sorted(rejected) == sorted(str(p) for p in damaged)
    assert rejected[str(videos / "no_decoder_a.mp4")] == "no decoder for the video stream"
    assert all(reason for reason in rejected.values())
    held = (run / "val_split.csv").read_text().splitlines()[1:]
    assert len(held) == 2 and {line.split(",")[0] for line in held} <= {str(p) for p in good}
    assert resolve_checkpoint(run).name.startswith("step_")
