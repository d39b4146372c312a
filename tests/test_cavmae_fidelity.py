"""Issue 12: where a config or an imported checkpoint claims CAV-MAE, avssl does what CAV-MAE's released
code (YuanGongND/cav-mae) does; where avssl differs by default, the choice is an explicit option."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import avssl
from avssl.config import load_config
from avssl.data.augment import AugmentConfig
from avssl.losses import ContrastiveLoss
from avssl.tasks.finetune import FinetuneConfig, soft_targets
from avssl.train.pretrain import PretrainConfig

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "configs" / "pretrain"


# 1. SpecAugment: off in pretraining unless a recipe asks for it (CAV-MAE: freqm = timem = 0)

def test_pretraining_leaves_spec_augment_off_by_default():
    augment = PretrainConfig().data.augment
    assert (augment.freq_mask, augment.time_mask) == (0, 0.0)
    assert "SpecAugment" not in augment.describe()
    # a partial override keeps the pretraining defaults for the keys it does not name
    partial = load_config(PretrainConfig, None, ["data.augment.flip=false"]).data.augment
    assert (partial.flip, partial.freq_mask, partial.time_mask) == (False, 0, 0.0)
    assert load_config(PretrainConfig, None, ["data.augment.freq_mask=24"]).data.augment.freq_mask == 24


def test_base_recipe_is_cavmae_and_tiny_keeps_its_own_masks():
    base = load_config(PretrainConfig, PRETRAIN / "base.yaml", []).data.augment
    assert (base.freq_mask, base.time_mask) == (0, 0.0)
    tiny = load_config(PretrainConfig, PRETRAIN / "tiny.yaml", []).data.augment
    assert (tiny.freq_mask, tiny.time_mask) == (48, 0.2)  # set explicitly in tiny.yaml: unaffected


def test_finetuning_keeps_spec_augment_on():
    augment = FinetuneConfig().data.augment
    assert (augment.freq_mask, augment.time_mask) == (AugmentConfig().freq_mask, AugmentConfig().time_mask) == (48, 0.2)
    assert load_config(FinetuneConfig, None, ["data.augment.flip=false"]).data.augment.freq_mask == 48


# 4. contrastive loss: directions and gathering as options; base.yaml sets CAV-MAE's

def _cavmae_nce(video, audio, temperature):
    """CAV-MAE's forward_contrastive (bidirect_contrast=False), written out: softmax over the audio
    rows of audio @ video.T for each video column, the diagonal's log-probability averaged."""
    total = audio @ video.T / temperature
    return -torch.log_softmax(total, dim=0).diag().mean()


def test_video_to_audio_is_cavmae_single_direction_loss():
    torch.manual_seed(0)
    video, audio = (F.normalize(torch.randn(6, 16), dim=-1) for _ in range(2))
    one_way = ContrastiveLoss(0.05, directions="video_to_audio")(video, audio)
    assert one_way.item() == pytest.approx(_cavmae_nce(video, audio, 0.05).item(), rel=1e-5)
    both = ContrastiveLoss(0.05)(video, audio)
    reverse = _cavmae_nce(audio, video, 0.05)
    assert both.item() == pytest.approx(((_cavmae_nce(video, audio, 0.05) + reverse) / 2).item(), rel=1e-5)
    with pytest.raises(ValueError, match="directions"):
        ContrastiveLoss(0.05, directions="audio_to_video")


def test_model_config_carries_the_contrastive_options_and_base_yaml_sets_cavmae():
    model = avssl.create_model("tiny", contrastive_directions="video_to_audio", contrastive_gather="local")
    assert (model.contrastive.directions, model.contrastive.gather) == ("video_to_audio", "local")
    default = avssl.create_model("tiny").contrastive
    assert (default.directions, default.gather) == ("symmetric", "global")
    with pytest.raises(ValueError, match="contrastive_gather"):
        avssl.create_model("tiny", contrastive_gather="everywhere")
    base = load_config(PretrainConfig, PRETRAIN / "base.yaml", []).model
    assert base["contrastive_directions"] == "video_to_audio" and base["contrastive_gather"] == "local"


WORLD, LOCAL = 2, 4


def _local_worker(rank: int, rendezvous: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    torch.manual_seed(1)
    video, audio = (F.normalize(torch.randn(WORLD * LOCAL, 8), dim=-1) for _ in range(2))
    rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
    losses = {gather: ContrastiveLoss(0.05, gather=gather, directions="video_to_audio").train()(video[rows], audio[rows])
              for gather in ("local", "global")}
    torch.save({k: v.detach() for k, v in losses.items()}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # skip gloo's teardown, which can abort at interpreter exit


def test_local_gather_keeps_each_rank_to_its_own_negatives(tmp_path):
    mp.spawn(_local_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True)
    torch.manual_seed(1)
    video, audio = (F.normalize(torch.randn(WORLD * LOCAL, 8), dim=-1) for _ in range(2))
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
        assert got["local"].item() == pytest.approx(_cavmae_nce(video[rows], audio[rows], 0.05).item(), rel=1e-5)
        assert got["global"].item() != pytest.approx(got["local"].item(), rel=1e-3)  # 8 candidates, not 4


# 5. multi-label label smoothing: CAV-MAE's s / C for negatives, 1 - s for positives (its dataloader)

def test_multi_label_smoothing_is_cavmae_by_default():
    labels = torch.zeros(2, 527)
    labels[0, [3, 10]] = 1.0
    labels[1, 0] = 1.0
    targets = soft_targets(labels, 527, 0.1, multi_label=True)
    assert targets[0, 3].item() == pytest.approx(0.9) and targets[0, 10].item() == pytest.approx(0.9)
    assert targets[0, 0].item() == pytest.approx(0.1 / 527) and targets[1, 0].item() == pytest.approx(0.9)
    assert FinetuneConfig().head.multi_label_smoothing == "cavmae"
    binary = soft_targets(labels, 527, 0.1, multi_label=True, multi_label_style="binary")
    assert binary[0, 0].item() == pytest.approx(0.05) and binary[0, 3].item() == pytest.approx(0.95)
    cfg = load_config(FinetuneConfig, None, ["head.multi_label_smoothing=binary"])
    assert cfg.head.multi_label_smoothing == "binary"
