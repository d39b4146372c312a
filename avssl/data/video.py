"""Frame transforms: decoded uint8 frames -> normalised float clip.

Training: random-resized crop (area ``scale``, aspect ``ratio``; ``scale`` (1, 1)
keeps the whole frame) and horizontal flip (optional: a mirror turns "moving
left" into "moving right", which `avssl.data.mirror` turns into a label swap). Evaluation: resize the short side to
``size / crop_fraction`` and take the centre ``size`` x ``size`` crop: 0.875 (the
default) resizes 224 -> 256 first, ImageNet's convention; 1.0 resizes straight to
``size``, as CAV-MAE (``T.Resize(224)`` + ``T.CenterCrop(224)``) and VideoMAE do.
A model config's ``eval_crop_fraction`` chooses. Every frame of a clip gets the same
crop and flip, so motion stays coherent; the random parameters come from the
``torch.Generator`` passed in, which the dataset seeds from (seed, epoch, index).

All ops run once on the whole (T, 3, H, W) uint8 tensor through
``torchvision.transforms.v2.functional`` (antialiased), and only the final
``size`` x ``size`` clip is converted to float.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torchvision.transforms.v2.functional as TF
from einops import rearrange

from avssl.data.normalization import IMAGENET_MEAN, IMAGENET_STD


EVAL_CROP_FRACTION = 0.875  # 224 / 256


def eval_resize(size: int, crop_fraction: float = EVAL_CROP_FRACTION) -> int:
    """Short side to resize to before the evaluation centre crop of `size`, which covers
    `crop_fraction` of it (0.875: 256 for 224; 1.0: `size` itself)."""
    return int(round(size / crop_fraction, 6))


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def check_crop(scale: tuple[float, float], ratio: tuple[float, float],
               names: tuple[str, str] = ("scale", "ratio")) -> None:
    """Raise ValueError unless ``scale`` is a range of area fractions in (0, 1] and ``ratio`` a range
    of positive aspect ratios; ``names`` are the settings' names in the message."""
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"{names[0]}: expected [min, max] with 0 < min <= max <= 1 (fractions of the frame's "
                         f"area; [1, 1] keeps the whole frame), got {scale}")
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"{names[1]}: expected [min, max] aspect ratios (width / height) with 0 < min <= max, "
                         f"got {ratio}")


def crop_flip_phrases(scale: tuple[float, float], ratio: tuple[float, float], flip: bool) -> list[str]:
    """The training crop and flip in words, for run logs and reports (nothing for what is off)."""
    phrases = []
    if scale[0] < 1:
        phrases.append(f"random resized crop scale {scale[0]:g}-{scale[1]:g} aspect {ratio[0]:.3g}-{ratio[1]:.3g}")
    if flip:
        phrases.append("horizontal flip")
    return phrases


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                            generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a crop covering a random fraction ``scale`` of the
    area with a random aspect ``ratio`` (log-uniform), as torchvision's
    RandomResizedCrop draws it, but from ``generator``. After 10 misses it falls
    back to the largest centred crop with the nearest allowed aspect ratio.
    ``scale`` (1, 1) asks for the whole area, which only the whole frame has: it
    is returned, whatever its aspect, with nothing drawn."""
    if scale[0] >= 1:
        return 0, 0, height, width
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * _rand(generator))
        aspect = math.exp(log_lo + (log_hi - log_lo) * _rand(generator))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class VideoTransform:
    """(T, H, W, 3) uint8 frames -> (T, 3, size, size) float32, ImageNet-normalised.

    ``train=True`` draws a random-resized crop (none when ``scale`` is (1, 1))
    and a coin-flip mirror (when ``flip``) from the generator; ``train=False``
    is deterministic (short-side resize to ``eval_resize(size, crop_fraction)``, centre crop).
    """

    def __init__(self, size: int = 224, *, train: bool = False, scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                 mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
                 crop_fraction: float = EVAL_CROP_FRACTION):
        check_crop(scale, ratio)
        if not 0 < crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
        self.size = size
        self.crop_fraction = crop_fraction
        self.train = train
        self.scale = scale
        self.ratio = ratio
        self.flip = flip
        self.mean = list(mean)
        self.std = list(std)

    def __repr__(self) -> str:
        return (f"VideoTransform(size={self.size}, train={self.train}, scale={self.scale}, "
                f"ratio={self.ratio}, flip={self.flip}, crop_fraction={self.crop_fraction})")

    def describe(self) -> list[str]:
        """The random augmentations this transform applies, in words (none in evaluation)."""
        return crop_flip_phrases(self.scale, self.ratio, self.flip) if self.train else []

    def __call__(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform one clip; ``frames`` is (T, H, W, 3) uint8."""
        return self.transform(frames, generator)[0]

    def transform(self, frames: torch.Tensor, generator: torch.Generator | None = None, *,
                  may_flip: bool = True) -> tuple[torch.Tensor, bool]:
        """Transform one clip and say whether it was mirrored. `may_flip` False vetoes a mirror the
        coin asked for (a label without a mirror class); the coin is drawn either way, so the draws
        that follow stay the same."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames of shape (T, H, W, 3), got {tuple(frames.shape)}")
        clip = rearrange(frames, "t h w c -> t c h w")
        size = [self.size, self.size]
        mirrored = False
        if self.train:
            top, left, h, w = random_resized_crop_box(clip.shape[-2], clip.shape[-1], self.scale, self.ratio,
                                                      generator)
            clip = TF.resized_crop(clip, top, left, h, w, size, antialias=True)
            mirrored = self.flip and _rand(generator) < 0.5 and may_flip
            if mirrored:
                clip = TF.horizontal_flip(clip)
        else:
            clip = TF.resize(clip, [eval_resize(self.size, self.crop_fraction)], antialias=True)
            clip = TF.center_crop(clip, size)
        clip = TF.to_dtype(clip, torch.float32, scale=True)
        return TF.normalize(clip, self.mean, self.std), mirrored


class SpatialCrops:
    """(T, H, W, 3) uint8 frames -> (crops, T, 3, size, size) float32, normalised: the evaluation view
    of `VideoTransform` (short side resized to ``eval_resize(size, crop_fraction)``), taken `crops`
    times, evenly spaced along the long side from one end to the other and centred along the short
    side (one crop: exactly `VideoTransform`'s centre crop). Square frames give identical crops.
    """

    def __init__(self, size: int, crops: int = 3, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, crop_fraction: float = EVAL_CROP_FRACTION) -> None:
        if crops < 1:
            raise ValueError(f"crops must be >= 1, got {crops}")
        self.size, self.crops, self.mean, self.std = size, crops, list(mean), list(std)
        self.crop_fraction = crop_fraction

    def __repr__(self) -> str:
        return f"SpatialCrops(size={self.size}, crops={self.crops}, crop_fraction={self.crop_fraction})"

    def __call__(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = TF.resize(rearrange(frames, "t h w c -> t c h w"), [eval_resize(self.size, self.crop_fraction)],
                         antialias=True)
        height, width = clip.shape[-2:]
        slack_y, slack_x = height - self.size, width - self.size
        views = []
        for k in range(self.crops):
            along = 0.5 if self.crops == 1 else k / (self.crops - 1)
            fy, fx = (0.5, along) if width >= height else (along, 0.5)
            top, left = int(round(slack_y * fy)), int(round(slack_x * fx))
            views.append(clip[..., top:top + self.size, left:left + self.size])
        views = TF.to_dtype(torch.stack(views), torch.float32, scale=True)
        return TF.normalize(views.flatten(0, 1), self.mean, self.std).unflatten(0, (self.crops, -1))
