"""`AugmentConfig`: which random augmentations the training clips get, as recipes configure them.

The defaults are the CAV-MAE / VideoMAE-style augmentations every training set had before they
were configurable: a random resized crop of 35-100 % of the frame's area at an aspect of 3:4 to
4:3, a horizontal flip of half the clips, and SpecAugment with one frequency mask of up to 48 mel
bins and one time mask of up to 20 % of the frames. Each one assumes the label survives it, which
is not always so: a mirror turns a clip of something moving left into one moving right (and
clockwise into counterclockwise). With ``flip_labels: auto`` (the default) a labelled clip that is
mirrored takes its mirror class instead ("left" <-> "right" read from the class names, plus
``flip_pairs``; `avssl.data.mirror`), and a clip whose class has no mirror class is never mirrored;
``flip_labels: keep`` mirrors without looking at labels, ``flip: false`` not at all.

In a recipe's YAML this is ``data.augment`` (``data.augment.flip=false`` on the command line).
Evaluation transforms never augment, whatever the config says.

Pretraining's defaults (`PretrainAugmentConfig`) leave SpecAugment off, as CAV-MAE pretrains
(``freqm`` and ``timem`` 0 in its ``run_cavmae_pretrain.py``): masked bands would otherwise become MAE
targets and contrastive inputs. A recipe turns it on with ``data.augment.freq_mask`` / ``time_mask``
(the pretrain/tiny recipe does). Fine-tuning keeps it on by default.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

from avssl.config import Check, OneOf
from avssl.data.audio import check_masks, spec_augment_phrases
from avssl.data.video import check_crop, crop_flip_phrases


@dataclass
class AugmentConfig:
    """Training augmentations of the video frames and the spectrogram; each can be turned off."""

    flip: bool = True  # mirror half the clips
    # labels of mirrored clips: "auto" swaps the classes whose names say left / right or clockwise /
    # counterclockwise (a class without its mirror class is never mirrored); "keep" leaves them
    flip_labels: str = "auto"
    flip_pairs: dict[str, str] = field(default_factory=dict)  # more classes to swap: {name: mirror name}

    RANGES: ClassVar[dict[str, Check]] = {"flip_labels": OneOf(("auto", "keep"))}  # checked by validate_config
    crop_scale: tuple[float, float] = (0.35, 1.0)  # area fraction of the random crop; [1, 1]: whole frame
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect (width / height) range of the random crop
    freq_mask: int = 48  # SpecAugment: widest frequency mask, mel bins; 0: none
    time_mask: float = 0.2  # SpecAugment: widest time mask, fraction of the frames; 0: none

    def __post_init__(self) -> None:
        self.crop_scale = tuple(self.crop_scale)
        self.crop_ratio = tuple(self.crop_ratio)
        check_crop(self.crop_scale, self.crop_ratio, names=("crop_scale", "crop_ratio"))
        check_masks(self.freq_mask, self.time_mask)

    def describe(self) -> str:
        """The augmentations this config turns on, in the words a training run logs."""
        return join_phrases(crop_flip_phrases(self.crop_scale, self.crop_ratio, self.flip)
                            + spec_augment_phrases(self.freq_mask, self.time_mask))


def join_phrases(phrases: Sequence[str]) -> str:
    """Augmentations in words as one line: comma-separated, or "none"."""
    return ", ".join(phrases) or "none"


@dataclass
class PretrainAugmentConfig(AugmentConfig):
    """Pretraining's augmentations: `AugmentConfig`'s crop and flip, SpecAugment off unless asked for
    (CAV-MAE pretrains without frequency or time masking)."""

    freq_mask: int = 0  # SpecAugment: widest frequency mask, mel bins; 0: none (CAV-MAE's pretraining)
    time_mask: float = 0.0  # SpecAugment: widest time mask, fraction of the frames; 0: none
