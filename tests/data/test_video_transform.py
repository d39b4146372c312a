import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from einops import rearrange

from avssl.data.video import IMAGENET_MEAN, IMAGENET_STD, VideoTransform, eval_resize, random_resized_crop_box


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _column_ramp(t: int, h: int, w: int) -> torch.Tensor:
    """Frames whose every channel holds the column index: crops are readable."""
    cols = torch.arange(w, dtype=torch.uint8).expand(t, h, w)
    return torch.stack([cols, cols, cols], dim=-1).contiguous()


def _denormalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x * std + mean) * 255


def test_eval_centre_crop_is_exact():
    frames = _column_ramp(4, 64, 96)
    assert eval_resize(56) == 64  # the short side is already right: crop only
    out = VideoTransform(56)(frames)
    assert out.shape == (4, 3, 56, 56) and out.dtype == torch.float32
    pixels = _denormalise(out)
    expected = torch.arange(20, 76, dtype=torch.float32).expand(4, 3, 56, 56)
    torch.testing.assert_close(pixels, expected, atol=1e-3, rtol=0)


def test_normalisation_of_a_constant_frame():
    frames = torch.full((2, 40, 40, 3), 128, dtype=torch.uint8)
    out = VideoTransform(32)(frames)
    for c in range(3):
        want = (128 / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        torch.testing.assert_close(out[:, c], torch.full((2, 32, 32), want), atol=1e-4, rtol=0)


def test_eval_resizes_the_short_side():
    frames = torch.randint(0, 256, (2, 120, 200, 3), dtype=torch.uint8)
    assert VideoTransform(64)(frames).shape == (2, 3, 64, 64)


def test_train_same_crop_for_every_frame():
    image = torch.randint(0, 256, (1, 72, 96, 3), dtype=torch.uint8)
    out = VideoTransform(48, train=True)(image.expand(6, -1, -1, -1).contiguous(), _gen(1))
    assert out.shape == (6, 3, 48, 48)
    for t in range(1, 6):
        assert torch.equal(out[t], out[0])


def test_train_is_a_function_of_the_generator():
    frames = torch.randint(0, 256, (3, 72, 96, 3), dtype=torch.uint8)
    transform = VideoTransform(48, train=True)
    assert torch.equal(transform(frames, _gen(5)), transform(frames, _gen(5)))
    outs = [transform(frames, _gen(s)) for s in range(6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_flip_mirrors_the_clip():
    frames = _column_ramp(2, 64, 64)
    transform = VideoTransform(64, train=True, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    ramp = torch.arange(64, dtype=torch.float32).expand(2, 3, 64, 64)

    def is_ramp(out: torch.Tensor, ramp: torch.Tensor) -> bool:
        return torch.allclose(_denormalise(out), ramp, atol=1e-3, rtol=0)

    outs = [transform(frames, _gen(s)) for s in range(12)]
    flipped = [is_ramp(o, ramp.flip(-1)) for o in outs]
    assert all(f or is_ramp(o, ramp) for f, o in zip(flipped, outs))
    assert any(flipped) and not all(flipped)
    no_flip = VideoTransform(64, train=True, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert all(is_ramp(no_flip(frames, _gen(s)), ramp) for s in range(12))


def test_random_resized_crop_box_respects_scale_and_ratio():
    for seed in range(50):
        top, left, h, w = random_resized_crop_box(90, 160, (0.3, 0.6), (0.75, 1.333), _gen(seed))
        assert 0 <= top and top + h <= 90 and 0 <= left and left + w <= 160
        assert 0.28 <= h * w / (90 * 160) <= 0.62
        assert 0.72 <= w / h <= 1.39


def test_random_resized_crop_box_fallback_is_centred():
    # an aspect range no crop of a 10x100 frame can reach at that area: falls back to the centre
    box = random_resized_crop_box(10, 100, (0.99, 1.0), (1.0, 1.0), _gen(0))
    assert box == (0, 45, 10, 10)
    assert math.isclose(box[3] / box[2], 1.0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        VideoTransform(32)(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="scale"):
        VideoTransform(32, scale=(0.5, 1.5))


def _runs_left_to_right(out: torch.Tensor) -> bool:
    """Whether a transformed column ramp still gets brighter from left to right (not mirrored)."""
    columns = _denormalise(out).mean(dim=(0, 1, 2))
    return bool(columns[-1] > columns[0])


def test_without_flip_a_clip_is_never_mirrored():
    # left dark, right bright: a mirror (or nothing else) reverses that, whatever the crop
    frames = _column_ramp(2, 48, 96)
    mirrored = [not _runs_left_to_right(VideoTransform(32, train=True)(frames, _gen(s))) for s in range(20)]
    assert any(mirrored) and not all(mirrored)  # with the flip on, about half are
    no_flip = VideoTransform(32, train=True, flip=False)
    assert all(_runs_left_to_right(no_flip(frames, _gen(s))) for s in range(20))


def test_crop_scale_one_keeps_the_whole_frame():
    # 36x64 is wider than the 4:3 the aspect range allows: still the whole frame, resized to the square
    frames = _column_ramp(2, 36, 64)
    for seed in range(5):
        assert random_resized_crop_box(36, 64, (1.0, 1.0), (3 / 4, 4 / 3), _gen(seed)) == (0, 0, 36, 64)
    out = VideoTransform(32, train=True, scale=(1.0, 1.0), flip=False)(frames, _gen(0))
    whole = TF.resize(rearrange(frames, "t h w c -> t c h w"), [32, 32], antialias=True)
    torch.testing.assert_close(_denormalise(out), whole.float(), atol=1e-3, rtol=0)


def test_description_names_the_training_augmentations():
    assert VideoTransform(32, train=True).describe() == ["random resized crop scale 0.35-1 aspect 0.75-1.33",
                                                         "horizontal flip"]
    assert VideoTransform(32, train=True, scale=(0.5, 0.9), ratio=(1.0, 1.0), flip=False).describe() == [
        "random resized crop scale 0.5-0.9 aspect 1-1"]
    assert VideoTransform(32, train=True, scale=(1.0, 1.0), flip=False).describe() == []
    assert VideoTransform(32).describe() == []  # evaluation never augments
