"""AugmentConfig: defaults that keep the former fixed augmentations, checks that name the key, the
dotted overrides recipes take, and the words a run logs."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from avssl.config import ConfigError, load_config, save_config
from avssl.data.audio import AudioTransform
from avssl.data.augment import AugmentConfig
from avssl.data.video import VideoTransform


@dataclass
class Recipe:
    """A recipe-shaped config holding the augmentations one level down, as DataConfig does."""

    augment: AugmentConfig = field(default_factory=AugmentConfig)


def test_defaults_are_the_transforms_former_fixed_settings():
    cfg = AugmentConfig()
    video, audio = VideoTransform(32, train=True), AudioTransform(208, train=True)
    assert (cfg.crop_scale, cfg.crop_ratio, cfg.flip) == (video.scale, video.ratio, video.flip) == \
        ((0.35, 1.0), (3 / 4, 4 / 3), True)
    assert (cfg.freq_mask, cfg.time_mask) == (audio.freq_mask, audio.time_mask) == (48, 0.2)


def test_overrides_parse_from_command_line_strings():
    cfg = load_config(Recipe, None, ["augment.flip=false", "augment.crop_scale=[1, 1]", "augment.freq_mask=0",
                                     "augment.time_mask=0"]).augment
    assert cfg == AugmentConfig(flip=False, crop_scale=(1.0, 1.0), freq_mask=0, time_mask=0.0)
    assert cfg.crop_scale == (1.0, 1.0) and all(isinstance(v, float) for v in cfg.crop_scale)
    assert load_config(Recipe, None, ["augment.flip=true"]).augment.flip is True


def test_saved_config_loads_back_identically(tmp_path):
    cfg = load_config(Recipe, None, ["augment.flip=false", "augment.crop_ratio=[0.5, 2]"])
    path = save_config(cfg, tmp_path / "config.yaml")
    assert "flip: false" in path.read_text()
    assert load_config(Recipe, path) == cfg


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ConfigError, match=r"augment\.'flp'.*did you mean 'flip'"):
        load_config(Recipe, None, ["augment.flp=false"])
    with pytest.raises(ConfigError, match=r"did you mean 'crop_scale'"):
        load_config(Recipe, None, ["augment.crop_scal=[1, 1]"])


@pytest.mark.parametrize("override, message", [
    ("augment.crop_scale=[0.5, 1.5]", r"augment\.crop_scale: expected \[min, max\] with 0 < min <= max <= 1"),
    ("augment.crop_scale=[0.8, 0.4]", r"augment\.crop_scale: expected"),
    ("augment.crop_scale=[0, 1]", r"augment\.crop_scale: expected"),
    ("augment.crop_ratio=[2, 1]", r"augment\.crop_ratio: expected \[min, max\] aspect ratios"),
    ("augment.freq_mask=-1", r"augment\.freq_mask: expected .* integer >= 0"),
    ("augment.time_mask=1.5", r"augment\.time_mask: expected .* fraction of the frames in \[0, 1\]"),
    ("augment.flip=maybe", r"augment\.flip: expected true or false"),
    ("augment.freq_mask=4.5", r"augment\.freq_mask: expected an integer"),
])
def test_bad_values_are_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Recipe, None, [override])


def test_bad_values_are_refused_from_python_too():
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.5, 2.0))
    with pytest.raises(ValueError, match="freq_mask"):
        AugmentConfig(freq_mask=True)


def test_description_names_what_is_on():
    assert AugmentConfig().describe() == ("random resized crop scale 0.35-1 aspect 0.75-1.33, horizontal flip, "
                                          "SpecAugment freq<=48 bins time<=20%")
    assert AugmentConfig(flip=False).describe() == ("random resized crop scale 0.35-1 aspect 0.75-1.33, "
                                                    "SpecAugment freq<=48 bins time<=20%")
    assert AugmentConfig(crop_scale=(1, 1), freq_mask=0, time_mask=0.1).describe() == \
        "horizontal flip, SpecAugment time<=10%"
    assert AugmentConfig(flip=False, crop_scale=(1, 1), freq_mask=0, time_mask=0).describe() == "none"
