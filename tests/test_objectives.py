"""The alignment objectives (avssl.objectives): each loss against a value worked out by hand on a tiny
input, each against collapse on a toy problem (with an invariance-only loss as the control that does
collapse, so the check can fail), and the gathered losses under two gloo processes against one process."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avssl.losses import ContrastiveLoss
from avssl.models.config import ModelConfig
from avssl.objectives import BarlowTwinsLoss, SwAVLoss, VICRegLoss, make_alignment, sinkhorn
from avssl.train.collapse import alignment, mean_pairwise_cosine
from gloo_ranks import run_ranks


# ---- hand-computed values ---------------------------------------------------------------------------

def test_barlow_twins_by_hand():
    # columns of `video` are already standardised (mean 0, biased std 1) and orthogonal; `audio`'s second
    # column copies video's first: C = [[1, 1], [0, 0]], so (1 - 1)^2 + (1 - 0)^2 + lambda * (1^2 + 0^2)
    video = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    audio = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]])
    assert BarlowTwinsLoss()(video, audio).item() == pytest.approx(1.005, abs=1e-4)
    assert BarlowTwinsLoss()(video, video).item() == pytest.approx(0.0, abs=1e-4)  # C = I
    assert BarlowTwinsLoss()(video * 3 + 2, -video).item() == pytest.approx(8.0, abs=1e-3)  # C = -I: 2 * 2^2


def test_vicreg_by_hand():
    # video = [[1, 1], [-1, -1]], audio = 0: invariance mean(video^2) = 1; variance: video's columns have
    # unbiased var 2 (std 1.414, no penalty), audio's 0 (std sqrt(1e-4) = 0.01, penalty 0.99 each):
    # (0 + 0.99) / 2 = 0.495; covariance: video's off-diagonal 2, twice, squared, / D = 8 / 2 = 4
    video = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    audio = torch.zeros(2, 2)
    assert VICRegLoss()(video, audio).item() == pytest.approx(25 * 1 + 25 * 0.495 + 1 * 4, abs=1e-4)


def _swav_with_axes() -> SwAVLoss:
    loss = SwAVLoss(dim=2, num_prototypes=2)
    loss.prototypes.weight.data = torch.eye(2)
    return loss


def test_swav_by_hand():
    # prototypes e1, e2; clip 0 is e1 in both towers, clip 1 e2. Scores = I: Sinkhorn's codes are
    # [[1 - d, d], [d, 1 - d]] with d = 1 / (1 + e^20) (exp(1 / 0.05) against exp(0)); each tower predicts
    # softmax([10, 0]) (scores / 0.1), so each row costs ln(1 + e^-10) + 10 d
    axes = torch.eye(2)
    d = 1 / (1 + math.exp(20))
    matched = math.log1p(math.exp(-10)) + 10 * d
    assert _swav_with_axes()(axes, axes).item() == pytest.approx(matched, abs=1e-6)  # float32 log-softmax
    # swapped pairs: each tower must predict the other prototype: ln(1 + e^-10) + 10 (1 - d)
    assert _swav_with_axes()(axes, axes.flip(0)).item() == pytest.approx(math.log1p(math.exp(-10)) + 10 * (1 - d),
                                                                         rel=1e-4)


def _swav_queue_of(queued: torch.Tensor, length: int) -> SwAVLoss:
    """The axes SwAV with a queue of `length` that already holds `queued` (Q, 2) in both modalities."""
    loss = SwAVLoss(dim=2, num_prototypes=2, queue_length=length)
    loss.prototypes.weight.data = torch.eye(2)
    loss.queue[:, :len(queued)] = queued
    loss.queued.fill_(len(queued))
    return loss


def test_swav_queue_balances_the_codes_with_past_clips_by_hand():
    # one clip at e1: alone, Sinkhorn must share it between the two prototypes, codes [1/2, 1/2], and
    # each tower's prediction softmax([10, 0]) costs ln(1 + e^-10) + 5; with a queued clip at e2 the
    # balance is over both clips, the codes are test_swav_by_hand's [1 - d, d] and the cost falls to
    # ln(1 + e^-10) + 10 d
    clip = torch.tensor([[1.0, 0.0]])
    d = 1 / (1 + math.exp(20))
    assert _swav_queue_of(torch.zeros(0, 2), 3)(clip, clip).item() == pytest.approx(math.log1p(math.exp(-10)) + 5,
                                                                                      rel=1e-5)
    assert _swav_queue_of(torch.tensor([[0.0, 1.0]]), 3)(clip, clip).item() == pytest.approx(
        math.log1p(math.exp(-10)) + 10 * d, abs=1e-6)


def test_swav_queue_keeps_the_latest_valid_clips_newest_first():
    loss = _swav_queue_of(torch.tensor([[0.0, 1.0]]), 3)
    first, second = torch.tensor([[1.0, 0.0], [0.6, 0.8]]), torch.tensor([[0.8, 0.6], [-1.0, 0.0]])
    loss(first, first.flip(0))
    torch.testing.assert_close(loss.queue[0], torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]))  # video
    torch.testing.assert_close(loss.queue[1], torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]]))  # audio
    loss(second * 2, second * 2, torch.tensor([True, False]))  # unit length queued; the clip without sound is not
    torch.testing.assert_close(loss.queue[0], torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.6, 0.8]]))
    assert int(loss.queued) == 3
    loss.eval()
    loss(first, first)  # evaluation leaves the queue alone
    torch.testing.assert_close(loss.queue[0], torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.6, 0.8]]))
    assert {"queue", "queued"} <= set(loss.state_dict())  # checkpoints keep it: a resumed run goes on with it


def test_sinkhorn_balances_prototypes():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.7, 0.3, 0.2], [0.9, 0.0, 0.3]])
    codes = sinkhorn(scores, iterations=50)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(codes.sum(dim=0), torch.full((3,), 4 / 3), rtol=1e-3, atol=1e-3)
    # every clip prefers prototype 0, yet the codes must share the clips among all three
    assert int((codes.argmax(dim=1) != 0).sum()) >= 1


def test_rows_left_out_do_not_count():
    gen = torch.Generator().manual_seed(0)
    video, audio = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    valid = torch.tensor([True, True, False, True, True, False])
    for loss_fn in (BarlowTwinsLoss(), VICRegLoss(), SwAVLoss(dim=4, num_prototypes=5)):
        expected = loss_fn(video[valid], audio[valid])
        garbage = audio.clone()
        garbage[~valid] = 100.0
        torch.testing.assert_close(loss_fn(video, garbage, valid), expected)
        zero = loss_fn(video, audio, torch.zeros(6, dtype=torch.bool))
        assert zero.item() == 0.0


def test_make_alignment_follows_the_config():
    assert isinstance(make_alignment(ModelConfig()), ContrastiveLoss)
    swav = make_alignment(ModelConfig(alignment="swav", swav_prototypes=7, proj_dim=16))
    assert swav.prototypes.weight.shape == (7, 16) and swav.unit_inputs
    assert not make_alignment(ModelConfig(alignment="barlow")).unit_inputs
    assert ContrastiveLoss().chance_level(8) == pytest.approx(math.log(8))
    assert swav.chance_level(8) == pytest.approx(math.log(7))
    assert not hasattr(swav, "queue")  # no queue unless asked for
    queued = make_alignment(ModelConfig(alignment="swav", swav_prototypes=7, proj_dim=16, swav_queue=40))
    assert queued.queue.shape == (2, 40, 16)
    assert make_alignment(ModelConfig(alignment="vicreg")).chance_level(8) is None


# ---- collapse on a toy problem ----------------------------------------------------------------------

class _InvarianceOnly(nn.Module):
    """Mean squared distance of the pairs and nothing else: the trivial solution (one point) is optimal."""

    unit_inputs = False

    def forward(self, video: torch.Tensor, audio: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return F.mse_loss(video, audio)


def _toy_run(loss_fn: nn.Module, steps: int = 300, seed: int = 0, batch: int = 64) -> dict[str, float]:
    """Two small MLP towers on two noisy views (one linearly mixed) of 8-cluster data, trained with
    `loss_fn` on batches of `batch` pairs; the held-out embeddings' spread and pair alignment before
    and after."""
    gen = torch.Generator().manual_seed(seed)
    centres, mixing = torch.randn(8, 16, generator=gen) * 2, torch.randn(16, 16, generator=gen) / 4

    def views(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = centres[torch.randint(0, 8, (n,), generator=gen)]
        return (x + 0.5 * torch.randn(n, 16, generator=gen),
                x @ mixing + 0.5 * torch.randn(n, 16, generator=gen))

    torch.manual_seed(seed)
    towers = nn.ModuleList(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16)) for _ in range(2))
    params = list(towers.parameters()) + list(loss_fn.parameters())
    optimiser = torch.optim.Adam(params, lr=3e-3)
    test_video, test_audio = views(128)

    def measure() -> dict[str, float]:
        with torch.no_grad():
            v, a = towers[0](test_video), towers[1](test_audio)
        return {"cos": max(mean_pairwise_cosine(v), mean_pairwise_cosine(a)),
                "std": float(torch.stack([v.std(dim=0), a.std(dim=0)]).mean()), "alignment": alignment(v, a)}

    before = measure()
    for _ in range(steps):
        video, audio = views(batch)
        v, a = towers[0](video), towers[1](audio)
        if loss_fn.unit_inputs:
            v, a = F.normalize(v, dim=-1), F.normalize(a, dim=-1)
        optimiser.zero_grad()
        loss_fn(v, a).backward()
        optimiser.step()
    after = measure()
    return {"alignment_before": before["alignment"], "std_before": before["std"], **after}


def _collapsed(run: dict[str, float]) -> bool:
    """All embeddings bunched (mean pairwise cosine over 0.9) or shrunk to under a third of their spread."""
    return run["cos"] > 0.9 or run["std"] < run["std_before"] / 3


@pytest.mark.parametrize("make_loss", [BarlowTwinsLoss, VICRegLoss, lambda: SwAVLoss(dim=16, num_prototypes=16),
                                       lambda: ContrastiveLoss(temperature=0.1)],
                         ids=["barlow", "vicreg", "swav", "infonce"])
def test_each_objective_resists_collapse_and_aligns(make_loss):
    run = _toy_run(make_loss())
    assert not _collapsed(run), run
    assert run["alignment"] < 0.7 * run["alignment_before"], run


def test_swav_queue_spreads_small_batches():
    # at 8 pairs a batch, Sinkhorn has 8 clips to share among 16 prototypes; 64 queued clips make the
    # codes balanced over many more, and the embeddings end up further apart
    alone = _toy_run(SwAVLoss(dim=16, num_prototypes=16), batch=8)
    queued = _toy_run(SwAVLoss(dim=16, num_prototypes=16, queue_length=64), batch=8)
    assert queued["cos"] < 0.7 * alone["cos"], (alone, queued)


def test_the_toy_problem_detects_collapse():
    # the control: without a term against collapse, the towers shrink to (nearly) one point
    assert _collapsed(_toy_run(_InvarianceOnly()))


# ---- two-process gloo check of the gathered losses ------------------------------------------------

WORLD, LOCAL = 2, 5
KINDS = {"barlow": BarlowTwinsLoss, "vicreg": VICRegLoss, "swav": lambda: SwAVLoss(dim=6, num_prototypes=4),
         "swav_queue": lambda: SwAVLoss(dim=6, num_prototypes=4, queue_length=12)}


def _global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    video, audio = torch.randn(WORLD * LOCAL, 6, generator=gen), torch.randn(WORLD * LOCAL, 6, generator=gen)
    valid = torch.ones(WORLD * LOCAL, dtype=torch.bool)
    valid[[2, 7]] = False  # one clip without audio on each rank
    return video, audio, valid


def _loss_and_grads(kind: str, rows: slice) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # the same prototypes in every process
    loss_fn = KINDS[kind]().train()
    if kind == "swav_queue":  # 3 clips queued before, the same in every process
        loss_fn.queue[:, :3] = F.normalize(torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(4)), dim=-1)
        loss_fn.queued.fill_(3)
    video, audio, valid = _global_batch()
    video, audio = video[rows].clone().requires_grad_(True), audio[rows].clone().requires_grad_(True)
    loss = loss_fn(video, audio, valid[rows])
    loss.backward()
    grads = {"loss": loss.detach(), "video": video.grad, "audio": audio.grad}
    if kind == "swav_queue":
        grads["queue"] = loss_fn.queue.clone()
    grads.update({name: p.grad for name, p in loss_fn.named_parameters()})
    return grads


def _rank_losses(rank: int) -> dict[str, dict[str, torch.Tensor]]:
    """Each objective's loss and gradients for one rank's rows of the global batch (run by `run_ranks`)."""
    return {kind: _loss_and_grads(kind, slice(rank * LOCAL, (rank + 1) * LOCAL)) for kind in KINDS}


def test_gathered_losses_match_one_process(tmp_path):
    ranks = run_ranks(_rank_losses, WORLD, tmp_path)
    for kind in KINDS:
        single = _loss_and_grads(kind, slice(None))
        losses = torch.stack([r[kind]["loss"] for r in ranks])
        # Barlow and VICReg: every rank computes the global loss; SwAV: each its rows' share (their mean)
        assert losses.mean().item() == pytest.approx(single["loss"].item(), rel=1e-5), kind
        for tower in ("video", "audio"):  # DDP averages over ranks: a rank's gradient / WORLD is the global one
            torch.testing.assert_close(torch.cat([r[kind][tower] for r in ranks]) / WORLD, single[tower])
        if kind.startswith("swav"):
            grad = torch.stack([r[kind]["prototypes.weight"] for r in ranks]).mean(dim=0)
            torch.testing.assert_close(grad, single["prototypes.weight"])
        if kind == "swav_queue":  # every rank queues the global batch's clips with sound
            for rank in ranks:
                torch.testing.assert_close(rank[kind]["queue"], single["queue"])
