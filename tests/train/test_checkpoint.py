"""Checkpoints: complete or absent, pruned, resolvable, and exact to resume from."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from avssl.train.checkpoint import Position, load_checkpoint, resolve_checkpoint, save_checkpoint
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
