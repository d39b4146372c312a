"""The in-memory API: frames and waveforms decoded from a file give the same model inputs and
embeddings as the file itself does through `avssl embed`'s pipeline."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

import avssl
from avssl.data.pipeline import Preprocessor
from avssl.data.synthetic import counter_frames, write_video
from avssl.tasks.embed import clip_dataset, embed_dataset

FPS, RATE = 16, 44100


def make_file(folder: Path, width: int, height: int, seconds: float) -> Path:
    """An H.264 + AAC file with textured frames and a stereo 44.1 kHz tone pair (not the model's rate)."""
    count = round(seconds * FPS)
    ramp = np.linspace(0, 60, width, dtype=np.float32)[None, None, :, None]
    frames = np.clip(counter_frames(count, height, width) + ramp, 0, 255).astype(np.uint8)
    t = np.arange(round(seconds * RATE)) / RATE
    sound = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t * (1 + t))])
    return write_video(folder / "clip.mp4", frames, FPS, sound.astype(np.float32), RATE)


def decode_all(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Every frame (T, H, W, 3) at the file's size and every sample (channels, N) at its rate."""
    with av.open(str(path)) as container:
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        samples = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)
    return frames, samples, rate


@pytest.fixture(scope="module")
def model() -> avssl.models.av_model.AVModel:
    torch.manual_seed(0)
    # eval_crop_fraction 1: the decoder's short side is the frame size (64), so 80x64 frames need no resize
    return avssl.create_model("tiny", eval_crop_fraction=1.0).eval()


def test_a_file_and_its_decoded_arrays_give_the_same_embedding(tmp_path, model):
    path = make_file(tmp_path, 80, 64, seconds=3.0)  # longer than the 2 s clip: its centre window
    reference = embed_dataset(model, clip_dataset(model, tmp_path), num_workers=0, show_progress=False)
    assert reference.clip_start[0] == pytest.approx(0.5)
    frames, samples, rate = decode_all(path)
    assert rate == RATE and samples.shape[0] == 2
    item = clip_dataset(model, tmp_path)[0]
    prep = Preprocessor.from_config(model.config)
    inputs = prep(video=frames, audio=samples, sample_rate=rate, fps=FPS)
    assert torch.equal(inputs["video"][0], item["video"])
    # the decoder resamples from a pre-roll before the window, the arrays from their first sample: the
    # resampler's phase is the same, its float rounding is not (the log of near-silent bins shows it)
    window = prep.pipeline.decode(path, 0.5, 2.5).audio
    torch.testing.assert_close(prep.waveform(samples, rate, (0.5, 2.5)), window, rtol=0, atol=1e-5)
    torch.testing.assert_close(inputs["audio"][0], item["audio"], rtol=0, atol=2e-3)
    out = model.embed(video=frames, audio=samples, sample_rate=rate, fps=FPS)
    torch.testing.assert_close(out["video"], reference.video_emb, rtol=0, atol=1e-5)
    torch.testing.assert_close(out["audio"], reference.audio_emb, rtol=0, atol=1e-4)


def test_resized_frames_use_the_decoders_scaler(tmp_path, model):
    """Frames larger than the decoder's short side are scaled by the same scaler; the file path scales
    the 4:2:0 picture before its colour conversion, the arrays after it, so a few levels differ."""
    path = make_file(tmp_path, 112, 96, seconds=2.0)
    item = clip_dataset(model, tmp_path)[0]
    frames, _, _ = decode_all(path)
    video = Preprocessor.from_config(model.config).video(frames)  # default fps: the frames span the clip
    assert video.shape == item["video"].shape == (8, 3, 64, 64)
    assert (video - item["video"]).abs().mean() < 0.04  # normalised units: ~2 levels of 255 (0.017 each)
    assert (video - item["video"]).abs().max() < 0.15


def test_batches_lists_and_sample_types(model):
    prep = Preprocessor.from_config(model.config)
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (2, 12, 64, 72, 3), dtype=np.uint8)
    batch = prep(video=clips)
    assert set(batch) == {"video"} and batch["video"].shape == (2, 8, 3, 64, 64)
    assert torch.equal(batch["video"][1], prep(video=[clips[0], clips[1]])["video"][1])
    assert torch.equal(batch["video"][1], prep(video=torch.from_numpy(clips[1]))["video"][0])
    pcm = rng.integers(-20000, 20000, (1, 24000), dtype=np.int16)
    as_float = prep(audio=pcm.astype(np.float32) / 32768, sample_rate=8000)["audio"]
    torch.testing.assert_close(prep(audio=pcm, sample_rate=8000)["audio"], as_float, rtol=0, atol=1e-5)
    assert as_float.shape == (1, model.config.audio_frames, model.config.num_mel_bins)
    emb = model.embed(audio=[pcm[0], pcm[0]], sample_rate=8000)
    assert set(emb) == {"audio"} and torch.equal(emb["audio"][0], emb["audio"][1])


def test_short_sources_are_padded_and_bad_inputs_named(model):
    prep = Preprocessor.from_config(model.config)
    wave = prep.waveform(np.ones(8000, np.float32), 16000)  # 0.5 s of a 2 s clip
    assert wave.shape == (32000,) and wave[:7900].min() > 0.9 and not wave[8100:].any()
    frames = np.stack([np.full((64, 64, 3), 40 * k, np.uint8) for k in range(4)])  # 4 frames at 8 fps: 0.5 s
    video = prep.video(frames, fps=8)
    assert torch.equal(video[-1], video[2])  # past the end: the last frame repeats, as a file's does
    with pytest.raises(ValueError, match="uint8 frames of shape"):
        prep(video=np.zeros((8, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="sample_rate"):
        prep(audio=np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="2 video clips but 1 waveforms"):
        prep(video=[frames, frames], audio=[np.zeros(100, np.float32)], sample_rate=16000)
    with pytest.raises(ValueError, match="float32 / float64 / int16"):
        prep(audio=np.zeros(100, np.uint8), sample_rate=16000)
