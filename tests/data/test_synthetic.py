"""write_video produces the files it promises; make_corpus's sound matches its picture."""
from __future__ import annotations

import csv
from collections import Counter

import av
import numpy as np
import pytest

from avssl.data.synthetic import CLASSES, counter_frames, counter_value, make_corpus, write_video


def read_back(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0].codec_context if container.streams.video else None
        audio = container.streams.audio[0].codec_context if container.streams.audio else None
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)] if video else []
        return video, audio, frames


@pytest.mark.parametrize("suffix,video_codec,audio_codec", [
    (".mp4", "h264", "aac"), (".mkv", "h264", "aac"), (".webm", "vp9", "opus"), (".avi", "mpeg4", "pcm_s16le")])
def test_containers_get_their_codecs_and_keep_every_frame(tmp_path, suffix, video_codec, audio_codec):
    audio = np.zeros((2, 16000), np.float32)
    path = write_video(tmp_path / f"clip{suffix}", counter_frames(20, 48, 64), 10, audio, 16000)
    video, sound, frames = read_back(path)
    assert (video.name, sound.name, sound.channels) == (video_codec, audio_codec, 2)
    assert [counter_value(image) for _, image in frames] == list(range(20))
    assert [t for t, _ in frames] == pytest.approx([k / 10 for k in range(20)], abs=1e-3)


@pytest.mark.parametrize("channels,rate", [(6, 48000), (1, 8000)])
def test_audio_channels_and_rates(tmp_path, channels, rate):
    t = np.arange(rate) / rate
    audio = np.stack([np.sin(2 * np.pi * (200 + 100 * c) * t) * 0.3 for c in range(channels)]).astype(np.float32)
    path = write_video(tmp_path / "sound.mp4", counter_frames(4, 48, 64), 4, audio, rate)
    _, sound, _ = read_back(path)
    assert (sound.channels, sound.sample_rate) == (channels, rate)


def test_opus_and_mp3_take_rates_and_channels_they_support(tmp_path):
    audio = np.zeros((6, 44100), np.float32)
    _, sound, _ = read_back(write_video(tmp_path / "a.webm", counter_frames(2, 48, 64), 2, audio, 44100))
    assert sound.sample_rate == 48000 and sound.channels == 6
    _, sound, _ = read_back(write_video(tmp_path / "a.mkv", counter_frames(2, 48, 64), 2, audio, 44100,
                                        audio_codec="libmp3lame"))
    assert sound.sample_rate == 44100 and sound.channels == 2


def test_odd_sizes(tmp_path):
    frames = counter_frames(6, 77, 101)
    video, _, decoded = read_back(write_video(tmp_path / "odd.mp4", frames, 6))
    assert video.pix_fmt == "yuv444p" and decoded[0][1].shape == (77, 101, 3)
    video, _, decoded = read_back(write_video(tmp_path / "odd.webm", frames, 6))
    assert video.pix_fmt == "yuv420p" and [counter_value(f) for _, f in decoded] == list(range(6))
    with pytest.raises(ValueError, match="odd frame size 101x77"):
        write_video(tmp_path / "odd.avi", frames, 6)


def test_variable_frame_rate_and_audio_only(tmp_path):
    times = [0.0, 0.04, 0.5, 0.55, 1.25]
    _, _, frames = read_back(write_video(tmp_path / "vfr.mp4", counter_frames(5, 48, 64), 10, frame_times=times))
    assert [t for t, _ in frames] == pytest.approx(times, abs=1e-3)
    video, sound, _ = read_back(write_video(tmp_path / "a.m4a", None, 0, np.zeros((1, 800), np.float32), 8000))
    assert video is None and sound.sample_rate == 8000


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="frames, audio or both"):
        write_video(tmp_path / "x.mp4", None, 10)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        write_video(tmp_path / "x.mp4", np.zeros((4, 8, 8), np.uint8), 10)
    with pytest.raises(ValueError, match="3 frame_times for 4 frames"):
        write_video(tmp_path / "x.mp4", counter_frames(4, 8, 8), 10, frame_times=[0, 1, 2])


def read_split(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_corpus_layout_and_stratified_split(synthetic_corpus):
    train, val = read_split(synthetic_corpus / "train.csv"), read_split(synthetic_corpus / "val.csv")
    names = [c.name for c in CLASSES[:4]]
    assert Counter(r["label"] for r in train) == {n: 6 for n in names}
    assert Counter(r["label"] for r in val) == {n: 2 for n in names}
    rows = train + val
    assert len({r["path"] for r in rows}) == 32
    assert all(r["path"].startswith(r["label"] + "/") and (synthetic_corpus / r["path"]).is_file() for r in rows)
    video, sound, frames = read_back(synthetic_corpus / rows[0]["path"])
    assert (video.name, video.width, video.height, len(frames), sound.name, sound.sample_rate) == (
        "h264", 64, 64, 48, "aac", 16000)


def test_corpus_is_reproducible_whatever_was_decoded_before(tmp_path, synthetic_corpus):
    small = dict(num_classes=2, videos_per_class=2, duration=1.0, size=32)
    first = make_corpus(tmp_path / "a", seed=0, **small)
    read_back(synthetic_corpus / "square_mid/1.mp4")  # once changed what x264 made of the next frames
    again = make_corpus(tmp_path / "b", seed=0, **small)
    other = make_corpus(tmp_path / "c", seed=1, **small)
    for name in ("circle_low/0.mp4", "square_mid/1.mp4", "train.csv", "val.csv"):
        assert (first / name).read_bytes() == (again / name).read_bytes()
    assert (first / "circle_low/0.mp4").read_bytes() != (other / "circle_low/0.mp4").read_bytes()
    with pytest.raises(ValueError, match="num_classes"):
        make_corpus(tmp_path / "d", num_classes=len(CLASSES) + 1)


def flash_and_loudness(path, fps=16, rate=16000):
    """Per frame: how bright the picture is, and how loud the sound is during that frame."""
    with av.open(str(path)) as container:
        brightness = np.array([f.to_ndarray(format="rgb24").astype(float).mean()
                               for f in container.decode(video=0)])
        container.seek(0)
        sound = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    step = rate // fps
    loudness = np.abs(sound[:len(brightness) * step]).reshape(-1, step).max(axis=1)
    return brightness, loudness


def test_sound_and_picture_correspond_within_a_class(synthetic_corpus):
    """A video's flashes line up with its own sound bursts better than with other videos' of its class."""
    pairs = [flash_and_loudness(synthetic_corpus / f"circle_low/{k}.mp4") for k in range(8)]
    own, others = [], []
    for i, (brightness, _) in enumerate(pairs):
        for j, (_, loudness) in enumerate(pairs):
            n = min(len(brightness), len(loudness))
            r = np.corrcoef(brightness[:n], loudness[:n])[0, 1]
            (own if i == j else others).append(r)
    assert min(own) > 0.7 and min(own) > max(others) + 0.2


def test_classes_sound_different(synthetic_corpus):
    def spectrum_peak(path):
        with av.open(str(path)) as container:
            sound = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
        return float(np.argmax(np.abs(np.fft.rfft(sound[:48000])))) / 3  # 3 s of sound: bins 1/3 Hz apart

    peaks = {c.name: spectrum_peak(synthetic_corpus / f"{c.name}/0.mp4") for c in CLASSES[:4]}
    for spec in CLASSES[:4]:
        assert abs(peaks[spec.name] - spec.pitch) < 0.05 * spec.pitch
