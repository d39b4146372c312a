"""AVModel with each alignment objective and with the synchronisation head (tiny model, random inputs)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from avssl.losses import ContrastiveLoss
from avssl.models.factory import create_model
from avssl.models.sync_head import LagSyncHead
from avssl.objectives import BarlowTwinsLoss, SwAVLoss, VICRegLoss

KINDS = {"infonce": ContrastiveLoss, "barlow": BarlowTwinsLoss, "vicreg": VICRegLoss, "swav": SwAVLoss}


def _batch(batch: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 8, 3, 64, 64, generator=gen), torch.randn(batch, 208, 128, generator=gen)


@pytest.mark.parametrize("name", list(KINDS))
def test_each_alignment_combines_with_the_mae_terms(name):
    torch.manual_seed(0)
    model = create_model("tiny", alignment=name, swav_prototypes=16, contrastive_weight=0.3)
    assert isinstance(model.contrastive, KINDS[name])
    assert isinstance(model.video_proj, nn.Sequential) == (name in ("barlow", "vicreg"))
    video, audio = _batch()
    out = model(video, audio, torch.tensor([True, True, False, True]))
    torch.testing.assert_close(out["loss"], out["loss_mae_video"] + out["loss_mae_audio"] + 0.3 * out["loss_contrastive"])
    torch.testing.assert_close(out["video_emb"].norm(dim=-1), torch.ones(4))
    out["loss"].backward()
    trained = [model.video_proj, model.audio_proj] + ([model.contrastive.prototypes] if name == "swav" else [])
    for module in trained:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_default_model_is_unchanged_infonce_without_sync_head():
    model = create_model("tiny")
    assert isinstance(model.contrastive, ContrastiveLoss) and isinstance(model.video_proj, nn.Linear)
    assert model.sync_head is None
    assert not any(key.startswith(("sync_head", "contrastive")) for key in model.state_dict())
    with pytest.raises(ValueError, match="sync_weight"):
        model.sync_logits(*_batch(2))


def test_sync_term_is_added_and_needs_its_inputs():
    torch.manual_seed(0)
    model = create_model("tiny", sync_weight=0.5, sync_offsets=5)
    video, audio = _batch()
    with pytest.raises(ValueError, match="sync_audio"):
        model(video, audio)
    shifted, offsets = _batch(seed=1)[1], torch.tensor([0, 2, 4, 1])
    out = model(video, audio, torch.tensor([True, True, False, True]), sync_audio=shifted, sync_offset=offsets,
                generator=torch.Generator().manual_seed(3))
    expected = out["loss_mae_video"] + out["loss_mae_audio"] + 0.1 * out["loss_contrastive"] + 0.5 * out["loss_sync"]
    torch.testing.assert_close(out["loss"], expected)
    logits = model.sync_logits(video, shifted)
    assert logits.shape == (4, 5)
    by_hand = nn.functional.cross_entropy(logits[[0, 1, 3]], offsets[[0, 1, 3]])  # the silent clip left out
    torch.testing.assert_close(out["loss_sync"], by_hand)


@pytest.mark.parametrize("head", ["lag", "mlp"])
def test_sync_head_learns_to_read_an_offset(head):
    # a pulse in the frames and the same pulse in the sound, moved as a sound read `offset` seconds
    # later would be (earlier in its window): after some steps the head names the offset of new clips
    # far above chance (1 / 3)
    torch.manual_seed(0)
    model = create_model("tiny", sync_weight=1.0, sync_offsets=3, sync_max_shift=0.4, sync_head=head,
                         mae_weight=0.0, contrastive_weight=0.0, video_mask_ratio=0.5, audio_mask_ratio=0.5)

    def clips(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        video, audio = torch.zeros(n, 8, 3, 64, 64), torch.zeros(n, 208, 128)
        at = torch.randint(2, 6, (n,), generator=gen)  # the frame of the pulse
        offset = torch.randint(0, 3, (n,), generator=gen)  # -0.4, 0 or +0.4 s
        for i in range(n):
            video[i, at[i]] = 3.0
            start = int(at[i]) * 25 - (int(offset[i]) - 1) * 40  # 25 spectrogram frames (10 ms) per video frame
            audio[i, start:start + 25] = 3.0
        return video, audio, offset

    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(60):
        video, audio, offset = clips(12, step)
        loss = model(video, audio, sync_audio=audio, sync_offset=offset)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    video, audio, offset = clips(48, 1000)
    with torch.no_grad():
        accuracy = (model.eval().sync_logits(video, audio).argmax(dim=1) == offset).float().mean()
    assert accuracy > 0.7


def test_lag_head_scores_the_offset_at_which_the_streams_match():
    # untrained but with identity projections: a feature at the frames' step 5 (0.92 s into the clip,
    # 1/6 s steps) and at the sound's step 3 (0.48-0.64 s, 0.16 s steps) match when the sound is read
    # 0.4 s later than the frames, so that offset scores highest, and a sound moved the other way
    # scores the mirrored offset
    head = LagSyncHead(8, [-0.8, -0.4, 0.0, 0.4, 0.8], video_step_s=1 / 6, audio_step_s=0.16)
    for projection in (head.video, head.audio):
        nn.init.eye_(projection[1].weight)
        nn.init.zeros_(projection[1].bias)
    video, audio = torch.zeros(1, 12, 8), torch.zeros(1, 13, 8)
    video[0, 5, 2] = 1.0
    audio[0, 3, 2] = 1.0
    assert head(video, audio).argmax().item() == 3
    later = torch.zeros(1, 13, 8)
    later[0, 8, 2] = 1.0  # 1.28-1.44 s: the sound read 0.4 s earlier
    assert head(video, later).argmax().item() == 1


def test_a_classifier_drops_the_sync_head_and_the_prototypes():
    from avssl.models.classifier import AVClassifier

    backbone = create_model("tiny", alignment="swav", swav_prototypes=8, sync_weight=0.5)
    names = [name for name, _ in AVClassifier(backbone, 3, mode="av").named_parameters()]
    assert names and not any(n.startswith(("backbone.sync_head", "backbone.contrastive")) for n in names)
