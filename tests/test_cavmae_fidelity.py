"""Issue 12: where a config or an imported checkpoint claims CAV-MAE, avssl does what CAV-MAE's released
code (YuanGongND/cav-mae) does; where avssl differs by default, the choice is an explicit option."""
from __future__ import annotations

from pathlib import Path

from avssl.config import load_config
from avssl.data.augment import AugmentConfig
from avssl.tasks.finetune import FinetuneConfig
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
