import math

import pytest
import torch
import torch.nn.functional as F

from avssl.losses import ContrastiveLoss, info_nce, mae_loss
from gloo_ranks import run_ranks


def _pairs(batch=6, dim=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    video = F.normalize(torch.randn(batch, dim, generator=gen), dim=-1)
    audio = F.normalize(torch.randn(batch, dim, generator=gen), dim=-1)
    return video, audio


def _reference_nce(video, audio, temperature):
    """Symmetric InfoNCE written out pair by pair."""
    total = 0.0
    n = len(video)
    for i in range(n):
        v2a = [float(video[i] @ audio[j]) / temperature for j in range(n)]
        a2v = [float(audio[i] @ video[j]) / temperature for j in range(n)]
        for logits in (v2a, a2v):
            total += -(logits[i] - math.log(sum(math.exp(x) for x in logits))) / 2
    return total / n


def test_info_nce_matches_loop_reference():
    video, audio = _pairs()
    assert info_nce(video, audio, 0.07).item() == pytest.approx(_reference_nce(video, audio, 0.07), rel=1e-5)


def test_info_nce_lower_for_aligned_pairs():
    video, audio = _pairs()
    assert info_nce(video, video, 0.1) < info_nce(video, audio, 0.1)


def test_invalid_rows_are_left_out_entirely():
    video, audio = _pairs(batch=7)
    valid = torch.tensor([True, False, True, True, False, True, True])
    expected = info_nce(video[valid], audio[valid], 0.05)
    assert info_nce(video, audio, 0.05, valid).item() == pytest.approx(expected.item(), rel=1e-6)


def test_no_valid_rows_gives_finite_zero_and_gradient():
    video, audio = _pairs(batch=3)
    video.requires_grad_(True)
    loss = info_nce(video, audio, 0.05, torch.zeros(3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(video.grad).all()


def test_learnable_temperature_is_clamped_and_trained():
    loss_fn = ContrastiveLoss(temperature=0.05, learnable=True)
    assert loss_fn.temperature == pytest.approx(0.05)
    video, audio = _pairs()
    loss_fn(video, audio).backward()
    assert loss_fn.logit_scale.grad is not None and loss_fn.logit_scale.grad != 0
    with torch.no_grad():
        loss_fn.logit_scale.fill_(10.0)
    assert loss_fn.temperature == pytest.approx(0.01)
    assert "logit_scale" not in ContrastiveLoss(0.05).state_dict()


def test_mae_loss_scores_masked_patches_only():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 5, 12, generator=gen), torch.randn(2, 5, 12, generator=gen)
    mask = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.float)
    loss = mae_loss(pred, target, mask, norm_pix=False)
    expected = ((pred - target) ** 2).mean(-1)[mask.bool()].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    changed = pred.clone()
    changed[0, 1] += 5.0  # a visible patch
    assert mae_loss(changed, target, mask, norm_pix=False).item() == pytest.approx(loss.item(), rel=1e-6)


def test_mae_loss_norm_pix_and_row_weights():
    gen = torch.Generator().manual_seed(1)
    pred, target = torch.randn(3, 4, 16, generator=gen), torch.randn(3, 4, 16, generator=gen) * 3 + 2
    mask = torch.ones(3, 4)
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    assert mae_loss(pred, target, mask).item() == pytest.approx(((pred - normed) ** 2).mean().item(), rel=1e-5)
    weights = torch.tensor([1.0, 0.0, 1.0])
    expected = ((pred - normed) ** 2)[weights.bool()].mean()
    assert mae_loss(pred, target, mask, weights=weights).item() == pytest.approx(expected.item(), rel=1e-5)


# ---- two-process gloo check of the gathered loss --------------------------------------------------

WORLD, LOCAL = 2, 4


def _global_batch():
    video, audio = _pairs(batch=WORLD * LOCAL, dim=16, seed=3)
    valid = torch.ones(WORLD * LOCAL, dtype=torch.bool)
    valid[[1, 6]] = False  # one clip without audio on each rank
    return video, audio, valid


def _rank_loss(rank: int) -> dict[str, torch.Tensor]:
    """One rank's loss and gradients for its rows of the global batch (run by `run_ranks`)."""
    video, audio, valid = _global_batch()
    rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
    video, audio = video[rows].clone().requires_grad_(True), audio[rows].clone().requires_grad_(True)
    loss_fn = ContrastiveLoss(temperature=0.07, learnable=True).train()
    loss = loss_fn(video, audio, valid[rows])
    loss.backward()
    return {"loss": loss.detach(), "video": video.grad, "audio": audio.grad, "scale": loss_fn.logit_scale.grad}


def test_gathered_loss_and_gradients_match_single_process(tmp_path):
    ranks = run_ranks(_rank_loss, WORLD, tmp_path)

    video, audio, valid = _global_batch()
    video.requires_grad_(True)
    audio.requires_grad_(True)
    loss_fn = ContrastiveLoss(temperature=0.07, learnable=True)
    loss = loss_fn(video, audio, valid)
    loss.backward()

    assert torch.stack([r["loss"] for r in ranks]).mean().item() == pytest.approx(loss.item(), rel=1e-5)
    # DDP averages gradients over ranks, so a rank's gradient / WORLD is the single-process gradient
    torch.testing.assert_close(torch.cat([r["video"] for r in ranks]) / WORLD, video.grad)
    torch.testing.assert_close(torch.cat([r["audio"] for r in ranks]) / WORLD, audio.grad)
    torch.testing.assert_close(torch.stack([r["scale"] for r in ranks]).mean(), loss_fn.logit_scale.grad)
