"""Checkpoints: complete or absent, pruned, resolvable, exact to resume from, and checked: damage is
skipped for an older checkpoint or one clear error, never a parser's traceback nor a silent load."""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from avssl.train import checkpoint
from avssl.models.weights import CHECKSUM_FILE, CheckpointError, resolve_checkpoint, verify_checkpoint
from avssl.train.checkpoint import (
    CheckpointWriteError,
    Position,
    load_checkpoint,
    load_latest,
    resume_candidates,
    save_checkpoint,
)
from avssl.train.schedule import warmup_cosine


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)

    def save_pretrained(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), str(directory / "model.safetensors"))
        (directory / "config.json").write_text("{}")
        return directory


def setup():
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=2)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def test_round_trip_restores_weights_optimizer_schedule_position_and_rng(tmp_path):
    model, opt, sched = setup()
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    path = save_checkpoint(tmp_path, model, opt, sched, Position(step=5, epoch=1, batch_in_epoch=2))
    expected = (torch.rand(3), np.random.rand(3), random.random())

    fresh = Tiny()
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    fresh_sched = warmup_cosine(fresh_opt, total_steps=10, warmup_steps=2)
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    position, _ = load_checkpoint(path, fresh, fresh_opt, fresh_sched)
    assert position == Position(step=5, epoch=1, batch_in_epoch=2)
    assert torch.equal(fresh.fc.weight, model.fc.weight)
    assert fresh_sched.get_last_lr() == sched.get_last_lr()
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_index_tracks_last_and_best_and_prunes_the_rest(tmp_path):
    model, opt, sched = setup()
    for step, metric in [(1, 0.5), (2, 0.9), (3, 0.1), (4, 0.2)]:
        save_checkpoint(tmp_path, model, opt, sched, Position(step=step), metric=metric, keep=2)
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["last"] == "step_0000004" and index["best"] == "step_0000002"
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_0000002", "step_0000003", "step_0000004"]
    assert resolve_checkpoint(tmp_path).name == "step_0000004"
    assert resolve_checkpoint(tmp_path.parent / tmp_path.name, "best").name == "step_0000002"
    assert not list(tmp_path.glob(".tmp-*"))


def test_resolve_reports_missing_and_weights_only_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint(tmp_path)
    weights_only = Tiny().save_pretrained(tmp_path / "w")
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        load_checkpoint(weights_only, Tiny())


def test_warmup_then_cosine_to_floor():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert sched.get_last_lr()[0] == pytest.approx(0.1)


# --- damage, replacement and full disks ------------------------------------------------------------

def _save_steps(directory, *steps):
    """Checkpoints of `steps` (each after one more optimizer step, so their weights differ)."""
    model, opt, sched = setup()
    for step in steps:
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
        save_checkpoint(directory, model, opt, sched, Position(step=step), keep=5)
    return model


def _flip_weights(folder):
    """Up to 64 bytes of 0xFF over the tensor data (after the 8-byte length and the JSON header):
    NaN weights in a file that still parses."""
    data = bytearray((folder / "model.safetensors").read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    end = min(start + 64, len(data))
    data[start:end] = b"\xff" * (end - start)
    (folder / "model.safetensors").write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CORRUPTIONS = {
    "truncated weights": lambda f: _truncate(f / "model.safetensors"),
    "64 bytes of 0xFF in the weights": _flip_weights,
    "garbage trainer state": lambda f: (f / "trainer_state.pt").write_bytes(b"\x80\x02garbage" * 10),
    "empty trainer state (EOF)": lambda f: (f / "trainer_state.pt").write_bytes(b""),
    "truncated trainer state": lambda f: _truncate(f / "trainer_state.pt"),
    "trainer state missing": lambda f: (f / "trainer_state.pt").unlink(),
    "weights missing": lambda f: (f / "model.safetensors").unlink(),
}


@pytest.mark.parametrize("damage", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_damaged_checkpoint_is_skipped_for_the_newest_that_verifies(tmp_path, damage, caplog):
    _save_steps(tmp_path, 1, 2)
    good = Tiny()
    load_checkpoint(tmp_path / "step_0000001", good)
    damage(tmp_path / "step_0000002")

    fresh = Tiny()
    with caplog.at_level("WARNING", logger="avssl.train.checkpoint"):
        folder, position, _ = load_latest(resume_candidates(tmp_path), fresh)
    assert folder.name == "step_0000001" and position.step == 1
    assert torch.equal(fresh.fc.weight, good.fc.weight)
    assert "skipping checkpoint step_0000002" in caplog.text


@pytest.mark.parametrize("damage", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
@pytest.mark.parametrize("with_checksums", [True, False], ids=["checksums", "written-without-checksums"])
def test_a_damaged_checkpoint_alone_is_one_clear_error_not_a_parser_traceback(tmp_path, damage, with_checksums):
    _save_steps(tmp_path, 1)
    folder = tmp_path / "step_0000001"
    if not with_checksums:
        (folder / CHECKSUM_FILE).unlink()  # as checkpoints of older versions are
    damage(folder)
    model = Tiny()
    before = model.fc.weight.detach().clone()
    with pytest.raises((CheckpointError, FileNotFoundError)) as caught:
        load_latest(resume_candidates(tmp_path), model)
    message = str(caught.value)
    assert "step_0000001" in message and "\n" not in message
    assert torch.equal(model.fc.weight, before)  # nothing half-loaded
    with pytest.raises((CheckpointError, FileNotFoundError)):
        load_checkpoint(folder, model)


def test_resolve_checkpoint_refuses_weights_that_fail_their_checksum(tmp_path):
    _save_steps(tmp_path, 1)
    _flip_weights(tmp_path / "step_0000001")
    with pytest.raises(CheckpointError, match="model.safetensors does not match its sha256"):
        resolve_checkpoint(tmp_path)


class _Killed(BaseException):
    """The process dies here (a SIGKILL between two file operations of a save)."""


def test_a_save_killed_at_any_file_operation_leaves_a_checkpoint_to_resume_from(tmp_path, monkeypatch):
    # re-saving a step (e.g. the end of an epoch after a stop on its last step) replaces its folder
    _save_steps(tmp_path, 1, 2)
    expected = {}
    for name in ("step_0000001", "step_0000002"):
        expected[name] = Tiny()
        load_checkpoint(tmp_path / name, expected[name])
    real_replace, real_rmtree = os.replace, shutil.rmtree
    for kill_at in range(1, 20):
        calls = {"n": 0}

        def dying(real):
            def operation(*args, **kwargs):
                calls["n"] += 1
                if calls["n"] == kill_at:
                    raise _Killed
                return real(*args, **kwargs)
            return operation

        model = Tiny()
        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", dying(real_replace))
            patch.setattr(shutil, "rmtree", dying(real_rmtree))
            try:
                save_checkpoint(tmp_path, model, *setup()[1:], Position(step=2), keep=5)
                finished = True
            except _Killed:
                finished = False
        fresh = Tiny()
        folder, position, _ = load_latest(resume_candidates(tmp_path), fresh)
        assert position.step == 2, kill_at
        if finished:
            assert torch.equal(fresh.fc.weight, model.fc.weight)
            break
        assert any(torch.equal(fresh.fc.weight, m.fc.weight) for m in (expected["step_0000002"], model)), kill_at
        expected["step_0000002"] = fresh  # what a later kill may fall back to
    else:
        pytest.fail("the save never finished")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["step_0000001", "step_0000002"]


def test_a_full_disk_is_one_error_line_the_temp_folder_removed_and_the_last_checkpoint_intact(tmp_path, monkeypatch):
    model = _save_steps(tmp_path, 1)
    index = (tmp_path / "index.json").read_text()

    def no_space(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 100)  # part of the file made it to disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", no_space)
    with pytest.raises(CheckpointWriteError) as caught:
        save_checkpoint(tmp_path, model, *setup()[1:], Position(step=2))
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, ValueError)
    assert "No space left on device" in message and "step_0000001" in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json", "step_0000001"]
    assert (tmp_path / "index.json").read_text() == index
    assert verify_checkpoint(tmp_path / "step_0000001")
