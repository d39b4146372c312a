"""Evaluation and fine-tuning datasets normalise inputs with the statistics of the model's config."""
from __future__ import annotations

import torch

from avssl.data.audio import FBANK_MEAN, FBANK_STD
from avssl.data.video import IMAGENET_MEAN, IMAGENET_STD
from avssl.models.factory import create_model
from avssl.tasks.embed import clip_dataset
from avssl.tasks.video_eval import multi_view_dataset

AUDIOMAE_STATS = dict(fbank_mean=-4.2677, fbank_std=2 * 4.5690)  # AudioMAE's spectrogram statistics
OTHER_IMAGE_STATS = dict(image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5))


def _renormalised(default: torch.Tensor, mean_a, std_a, mean_b, std_b) -> torch.Tensor:
    """An input normalised with (mean_a, std_a) as it reads when normalised with (mean_b, std_b)."""
    return (default * std_a + mean_a - mean_b) / std_b


def test_embed_dataset_uses_the_model_fbank_and_image_statistics(write_test_video) -> None:
    video = write_test_video(duration=2.5)  # longer than the tiny 2 s clip: no padded frames
    default = clip_dataset(create_model("tiny"), video)[0]
    other = clip_dataset(create_model("tiny", **AUDIOMAE_STATS, **OTHER_IMAGE_STATS), video)[0]
    assert not torch.allclose(default["audio"], other["audio"])
    expected = _renormalised(default["audio"], FBANK_MEAN, FBANK_STD, AUDIOMAE_STATS["fbank_mean"],
                             AUDIOMAE_STATS["fbank_std"])
    assert torch.allclose(other["audio"], expected, atol=1e-4)
    shape = (1, 3, 1, 1)  # video (T, 3, H, W): statistics per colour channel
    expected_video = _renormalised(default["video"], torch.tensor(IMAGENET_MEAN).view(shape),
                                   torch.tensor(IMAGENET_STD).view(shape), 0.5, 0.5)
    assert torch.allclose(other["video"], expected_video, atol=1e-4)


def test_evaluation_views_use_the_model_fbank_statistics(write_test_video) -> None:
    video = write_test_video(duration=2.5)
    default = multi_view_dataset(video, model_config=create_model("tiny").config)[0]["audio"]
    other = multi_view_dataset(video, model_config=create_model("tiny", **AUDIOMAE_STATS).config)[0]["audio"]
    expected = _renormalised(default, FBANK_MEAN, FBANK_STD, AUDIOMAE_STATS["fbank_mean"],
                             AUDIOMAE_STATS["fbank_std"])
    assert torch.allclose(other, expected, atol=1e-4)
