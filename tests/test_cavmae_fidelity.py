"""Issue 12: where a config or an imported checkpoint claims CAV-MAE, avssl does what CAV-MAE's released
code (YuanGongND/cav-mae) does; where avssl differs by default, the choice is an explicit option."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
import torch.nn.functional as F

import avssl
from avssl.config import load_config
from avssl.data.augment import AugmentConfig
from avssl.data.decode import decode_clip
from avssl.data.synthetic import write_video
from avssl.data.video import SpatialCrops, VideoTransform
from avssl.losses import ContrastiveLoss
from avssl.tasks.embed import clip_dataset
from avssl.recipes.finetune import FinetuneConfig, soft_targets
from avssl.recipes.pretrain import PretrainConfig
from gloo_ranks import run_ranks

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "avssl" / "configs" / "pretrain"


# 1. SpecAugment: off in pretraining unless a recipe asks for it (CAV-MAE: freqm = timem = 0)

def test_pretraining_leaves_spec_augment_off_by_default():
    augment = PretrainConfig().data.augment
    assert (augment.freq_mask, augment.time_mask) == (0, 0.0)
    assert "SpecAugment" not in augment.describe()
    # a partial override keeps the pretraining defaults for the keys it does not name
    partial = load_config(PretrainConfig, None, ["data.augment.flip=false"]).data.augment
    assert (partial.flip, partial.freq_mask, partial.time_mask) == (False, 0, 0.0)
    assert load_config(PretrainConfig, None, ["data.augment.freq_mask=24"]).data.augment.freq_mask == 24


def test_base_and_tiny_recipes_pretrain_without_spec_augment():
    base = load_config(PretrainConfig, PRETRAIN / "base.yaml", []).data.augment
    assert (base.freq_mask, base.time_mask) == (0, 0.0)
    tiny = load_config(PretrainConfig, PRETRAIN / "tiny.yaml", []).data.augment
    assert (tiny.freq_mask, tiny.time_mask) == (0, 0.0)  # a time mask can hide a brief event


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
    assert base.contrastive_directions == "video_to_audio" and base.contrastive_gather == "local"


WORLD, LOCAL = 2, 4


def _rank_losses(rank: int) -> dict[str, torch.Tensor]:
    """One rank's video-to-audio loss over its rows with local and with global negatives (run by `run_ranks`)."""
    torch.manual_seed(1)
    video, audio = (F.normalize(torch.randn(WORLD * LOCAL, 8), dim=-1) for _ in range(2))
    rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
    losses = {gather: ContrastiveLoss(0.05, gather=gather, directions="video_to_audio").train()(video[rows], audio[rows])
              for gather in ("local", "global")}
    return {k: v.detach() for k, v in losses.items()}


def test_local_gather_keeps_each_rank_to_its_own_negatives(tmp_path):
    ranks = run_ranks(_rank_losses, WORLD, tmp_path)
    torch.manual_seed(1)
    video, audio = (F.normalize(torch.randn(WORLD * LOCAL, 8), dim=-1) for _ in range(2))
    for rank in range(WORLD):
        got = ranks[rank]
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


# 2. spectrograms padded or cut to the model's audio_frames (AST / CAV-MAE), never another length

def test_spectrograms_take_the_models_length(write_test_video, caplog):
    video = write_test_video(duration=2.5)
    long_table = avssl.create_model("tiny", audio_frames=256)  # e.g. an import with a longer position table
    with caplog.at_level("INFO", logger="avssl.data.pipeline"):
        item = clip_dataset(long_table, video)[0]
    assert item["audio"].shape == (256, 128)  # was 208: the clip's own length, positions resampled
    pad = (0.0 - long_table.config.fbank_mean) / long_table.config.fbank_std
    assert torch.allclose(item["audio"][198:], torch.full((58, 128), pad))  # 2 s give 198 frames, then silence
    assert "2 s clips give 198 spectrogram frames; the model takes 256, so 58 silent frames are padded" in caplog.text
    short_table = avssl.create_model("tiny", audio_frames=96)
    with caplog.at_level("WARNING", logger="avssl.data.pipeline"):
        assert clip_dataset(short_table, video)[0]["audio"].shape == (96, 128)
    assert "only the first 0.97 s of each clip's sound reach it" in caplog.text


# 3. stereo: the mean of the channels (no sqrt(2) gain), or one channel by index (CAV-MAE: the first)

def _stereo_and_mono(tmp_path, left, right):
    frames = np.zeros((10, 32, 32, 3), np.uint8)
    stereo = write_video(tmp_path / "stereo.avi", frames, 10, np.stack([left, right]), 16000)
    mono_left = write_video(tmp_path / "left.avi", frames, 10, left[None], 16000)
    mono_right = write_video(tmp_path / "right.avi", frames, 10, right[None], 16000)
    return stereo, mono_left, mono_right


def test_stereo_with_equal_channels_reads_like_its_mono_twin(tmp_path):
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo, mono, _ = _stereo_and_mono(tmp_path, tone, tone)
    a, b = decode_clip(stereo, 0.1, 0.9, 2).audio, decode_clip(mono, 0.1, 0.9, 2).audio
    ratio = float(a.abs().sum() / b.abs().sum())
    assert ratio == pytest.approx(1.0, abs=1e-3)  # FFmpeg's downmix gave 1.414
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_audio_channel_picks_one_channel(tmp_path):
    t = np.arange(16000) / 16000
    left = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    right = (0.2 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    stereo, mono_left, mono_right = _stereo_and_mono(tmp_path, left, right)
    first = decode_clip(stereo, 0.1, 0.9, 2, audio_channel=0).audio
    torch.testing.assert_close(first, decode_clip(mono_left, 0.1, 0.9, 2).audio, atol=1e-4, rtol=0)
    second = decode_clip(stereo, 0.1, 0.9, 2, audio_channel=1).audio
    torch.testing.assert_close(second, decode_clip(mono_right, 0.1, 0.9, 2).audio, atol=1e-4, rtol=0)
    mean = decode_clip(stereo, 0.1, 0.9, 2).audio
    torch.testing.assert_close(mean, (first + second) / 2, atol=1e-4, rtol=0)
    assert torch.equal(decode_clip(mono_left, 0.1, 0.9, 2, audio_channel=3).audio,
                       decode_clip(mono_left, 0.1, 0.9, 2).audio)  # a mono file has only its one channel
    with pytest.raises(ValueError, match="audio_channel"):
        avssl.create_model("tiny", audio_channel="left")


# 6. the evaluation view: CAV-MAE resizes the short side straight to the crop

def test_evaluation_view_of_cavmae_weights_is_resized_straight_to_the_crop():
    frames = torch.randint(0, 256, (2, 48, 64, 3), dtype=torch.uint8)
    view = VideoTransform(32, train=False, crop_fraction=1.0, mean=(0, 0, 0), std=(1, 1, 1))(frames)
    chw = frames.permute(0, 3, 1, 2)
    expected = TF.to_dtype(TF.center_crop(TF.resize(chw, [32], antialias=True), [32]), torch.float32, scale=True)
    torch.testing.assert_close(view, expected)
    zoomed = VideoTransform(32, train=False, mean=(0, 0, 0), std=(1, 1, 1))(frames)  # avssl's default: 36 first
    assert not torch.allclose(zoomed, expected)
    # multi-crop evaluation takes the same view: one crop is exactly the centre crop, at either fraction
    for fraction in (1.0, 0.875):
        one = SpatialCrops(32, 1, (0, 0, 0), (1, 1, 1), crop_fraction=fraction)(frames)[0]
        torch.testing.assert_close(one, VideoTransform(32, crop_fraction=fraction, mean=(0, 0, 0), std=(1, 1, 1))(frames))
