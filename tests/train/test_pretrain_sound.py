"""Pretraining hands the model `has_audio` only when some training videos have no sound: otherwise the
joint and decoder attention stay unmasked (SDPA's fast kernels), with the same losses."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avssl.config import load_config
from avssl.models.av_model import AVModel
from avssl.models.factory import create_model
from avssl.recipes import pretrain as pretrain_module
from avssl.recipes.pretrain import PretrainConfig, make_pretrain_step, run_pretrain
from avssl.train.observe import read_metrics

TINY = Path(pretrain_module.__file__).parents[1] / "configs" / "pretrain" / "tiny.yaml"
LOSSES = ("loss", "loss_mae_video", "loss_mae_audio", "loss_contrastive")


def _record_training_masks(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor | None]:
    """The `has_audio` of every training-mode AVModel forward from now on."""
    seen: list[torch.Tensor | None] = []
    forward = AVModel.forward

    def recording(self, video, audio, has_audio=None, **kwargs):
        if self.training:
            seen.append(has_audio)
        return forward(self, video, audio, has_audio, **kwargs)

    monkeypatch.setattr(AVModel, "forward", recording)
    return seen


def _run(root: Path, out: Path) -> list[dict[str, float]]:
    """One epoch over root/train (batches of 2) validated on root/val; its training rows."""
    cfg = load_config(PretrainConfig, TINY, [f"data.train={root / 'train'}", f"data.val={root / 'val'}",
                                             f"out={out}", "data.num_workers=0", "data.batch_size=2",
                                             "train.epochs=1", "train.log_every=1"])
    assert run_pretrain(cfg).status == "finished"
    return read_metrics(out, "train")


def test_the_step_passes_has_audio_only_when_asked_with_the_same_losses(monkeypatch):
    torch.manual_seed(0)
    model = create_model("tiny")
    cfg = model.config
    batch = {"video": torch.randn(2, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size),
             "audio": torch.randn(2, cfg.audio_frames, cfg.num_mel_bins), "has_audio": torch.tensor([True, True])}
    seen = _record_training_masks(monkeypatch)
    outs = []
    for mask_silence in (False, True):
        torch.manual_seed(1)  # the masking draws
        outs.append(make_pretrain_step(mask_silence)(model, batch))
    assert seen[0] is None and seen[1] is batch["has_audio"]
    for key in LOSSES:
        torch.testing.assert_close(outs[0][key], outs[1][key])


def test_all_sound_trains_unmasked_as_masked_and_a_silent_video_brings_the_mask(write_test_video, tmp_path,
                                                                                 monkeypatch):
    for split, count in (("train", 4), ("val", 2)):
        for k in range(count):
            write_test_video(f"sound/{split}/{k}.mp4")
    seen = _record_training_masks(monkeypatch)
    unmasked = _run(tmp_path / "sound", tmp_path / "unmasked")
    assert len(seen) == 2 and all(has_audio is None for has_audio in seen)

    monkeypatch.setattr(pretrain_module, "may_lack_sound", lambda dataset: True)  # as before: always the mask
    seen.clear()
    masked = _run(tmp_path / "sound", tmp_path / "masked")
    assert len(seen) == 2 and all(has_audio is not None for has_audio in seen)
    for row, reference in zip(unmasked, masked, strict=True):
        assert {k: row[k] for k in LOSSES} == pytest.approx({k: reference[k] for k in LOSSES}, rel=1e-5)
    monkeypatch.undo()

    for k in range(3):
        write_test_video(f"mixed/train/{k}.mp4")
        write_test_video(f"mixed/val/{k}.mp4")
    write_test_video("mixed/train/silent.mp4", audio=False)
    seen = _record_training_masks(monkeypatch)
    _run(tmp_path / "mixed", tmp_path / "mixed_run")
    assert len(seen) == 2 and all(has_audio is not None for has_audio in seen)
    assert sum(int((~has_audio.bool()).sum()) for has_audio in seen) == 1  # the silent video's clip
