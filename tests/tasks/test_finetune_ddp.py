"""Fine-tuning under DDP without `find_unused_parameters`: `freeze_unreached` takes out what a mode
never reads (the norms of the streams it does not run), so every trainable parameter gets a gradient
on every step, on 2 gloo ranks, in every mode and fusion."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from avssl.models.classifier import AVClassifier
from avssl.models.factory import create_model
from avssl.recipes.finetune import freeze_unreached
from gloo_ranks import run_ranks

SETUPS = (("video", "concat"), ("audio", "concat"), ("av", "concat"), ("av", "mean"), ("av", "joint"))


def _classifier(mode: str, fusion: str) -> AVClassifier:
    torch.manual_seed(0)
    return AVClassifier(create_model("tiny", num_frames=4, audio_frames=64), 3, mode=mode, fusion=fusion)


def _rank_steps(rank: int) -> dict[str, dict]:
    """Per setup: the frozen names, the weights after 2 DDP steps on this rank's own batches, and
    whether the frozen ones kept their values (run by `run_ranks`)."""
    out = {}
    for mode, fusion in SETUPS:
        model = _classifier(mode, fusion)
        frozen = freeze_unreached(model)
        before = {name: model.get_parameter(name).detach().clone() for name in frozen}
        ddp = DistributedDataParallel(model)  # find_unused_parameters=False, as run_finetune's Trainer
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        generator = torch.Generator().manual_seed(rank)
        cfg = model.config
        for _ in range(2):  # a trainable parameter without a gradient makes DDP fail at the second step
            video = torch.randn(2, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size, generator=generator)
            audio = torch.randn(2, cfg.audio_frames, cfg.num_mel_bins, generator=generator)
            logits = ddp(video if mode != "audio" else None, audio if mode != "video" else None)
            loss = F.cross_entropy(logits, torch.tensor([0, 2]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        out[f"{mode}-{fusion}"] = {
            "frozen": frozen,
            "kept": all(torch.equal(model.get_parameter(n), before[n]) for n in frozen),
            "weights": torch.cat([p.detach().flatten() for p in model.parameters()]),
        }
    return out


def test_every_mode_trains_under_ddp_without_searching_for_unused_parameters(tmp_path):
    ranks = run_ranks(_rank_steps, 2, tmp_path)
    for setup, first in ranks[0].items():
        second = ranks[1][setup]
        torch.testing.assert_close(first["weights"], second["weights"])  # gradients were all-reduced
        assert first["frozen"] and first["kept"], setup
    video = ranks[0]["video-concat"]["frozen"]
    assert "backbone.joint_blocks.0.norm1_a.weight" in video and "backbone.joint_blocks.0.norm1.weight" in video
    assert not any("norm1_v" in name for name in video)
    assert "backbone.video_encoder.norm.weight" in ranks[0]["av-joint"]["frozen"]


def test_freezing_leaves_every_trainable_parameter_reached_and_the_rng_alone():
    for mode, fusion in SETUPS:
        model = _classifier(mode, fusion)
        state = torch.get_rng_state()
        frozen = set(freeze_unreached(model))
        assert torch.equal(torch.get_rng_state(), state)
        cfg = model.config
        video = torch.randn(2, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size)
        audio = torch.randn(2, cfg.audio_frames, cfg.num_mel_bins)
        model(video if mode != "audio" else None, audio if mode != "video" else None).sum().backward()
        missing = {n for n, p in model.named_parameters() if p.grad is None}
        assert missing == frozen, (mode, fusion)
        assert all(not model.get_parameter(n).requires_grad for n in frozen)
