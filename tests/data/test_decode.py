"""decode_clip / decode_clips on real files written by PyAV: which frames, how much audio, and errors."""
from __future__ import annotations

import io
import math

import av
import numpy as np
import pytest
import torch

from avssl.data import video_reader
from avssl.data.decode import DecodeError, decode_clip, decode_clips
from avssl.data.synthetic import counter_frames, counter_value, write_video


def indices(clip) -> list[int]:
    return [counter_value(frame.numpy()) for frame in clip.frames]


def expected_indices(frame_times: list[float], start: float, end: float, num_frames: int) -> list[int]:
    """The documented rule: frame i is the first frame at or after start + (i + 0.5) * step."""
    step = (end - start) / num_frames
    chosen = []
    for i in range(num_frames):
        later = [k for k, t in enumerate(frame_times) if t >= start + (i + 0.5) * step - 1e-9]
        chosen.append(later[0] if later else len(frame_times) - 1)
    return chosen


def test_shapes_dtypes_and_frames_by_timestamp(write_test_video):
    path = write_test_video(duration=3.0, fps=16)
    clip = decode_clip(path, 0.5, 2.5, 8)
    assert clip.frames.shape == (8, 48, 64, 3) and clip.frames.dtype == torch.uint8
    assert clip.audio.shape == (32000,) and clip.audio.dtype == torch.float32
    assert clip.frame_times.dtype == torch.float64 and clip.has_audio
    times = [k / 16 for k in range(48)]
    assert indices(clip) == expected_indices(times, 0.5, 2.5, 8)
    assert clip.frame_times.tolist() == pytest.approx([times[k] for k in indices(clip)])


def test_variable_frame_rate_picks_by_time(write_test_video):
    times = [0.0, 0.05, 0.1, 0.3, 0.32, 0.34, 0.9, 1.0, 1.45, 1.5, 1.9]
    path = write_test_video("vfr.mkv", frame_times=times, duration=2.0, fps=10)
    clip = decode_clip(path, 0.0, 2.0, 8)
    assert indices(clip) == expected_indices(times, 0.0, 2.0, 8)
    clip = decode_clip(path, 0.2, 1.2, 5)
    assert indices(clip) == expected_indices(times, 0.2, 1.2, 5)
    assert clip.frame_times.tolist() == pytest.approx([times[k] for k in indices(clip)], abs=1e-3)


def test_seeking_into_the_middle_decodes_only_from_the_keyframe_before(write_test_video, monkeypatch):
    path = write_test_video(duration=10.0, fps=16, keyframe_interval=16, audio=False)
    # a keyframe at least every second: 2 s of window plus at most 1 s of lead-in
    monkeypatch.setattr(video_reader, "MAX_DECODED_FRAMES", 3 * 16 + 4)
    clip = decode_clip(path, 6.3, 8.3, 8)
    assert indices(clip) == expected_indices([k / 16 for k in range(160)], 6.3, 8.3, 8)


def moving_texture(count: int) -> np.ndarray:
    """(count, 48, 80, 3) noise sliding sideways: the encoder uses B-frames and adds no keyframes."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(48, 80, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * k, axis=1) for k in range(count)])


def test_skipping_unreferenced_frames_changes_nothing(tmp_path, monkeypatch):
    path = write_video(tmp_path / "b.mp4", moving_texture(64), 16)
    windows = [(0.0, 2.0), (1.1, 3.1), (2.5, 4.5), (3.5, 5.0)]
    fast = decode_clips(path, windows, 8)
    monkeypatch.setattr(video_reader.VideoReader, "_skippable", lambda *args: False)
    plain = decode_clips(path, windows, 8)
    for a, b in zip(fast, plain):
        assert torch.equal(a.frames, b.frames) and torch.equal(a.frame_times, b.frame_times)


@pytest.mark.parametrize("source_rate,channels", [(8000, 1), (48000, 6), (44100, 2)])
@pytest.mark.parametrize("audio_rate", [16000, 22050])
def test_audio_length_is_exact(write_test_video, source_rate, channels, audio_rate):
    path = write_test_video(duration=3.0, audio_rate=source_rate, channels=channels)
    windows = [(0.0, 1.0), (0.3, 1.7), (0.123, 0.9), (1.05, 2.95), (2.5, 3.6), (0.01, 0.0101)]
    for (start, end), clip in zip(windows, decode_clips(path, windows, 4, audio_rate=audio_rate)):
        assert clip.audio.shape == (round((end - start) * audio_rate),)
        assert clip.audio.dtype == torch.float32


def test_audio_is_aligned_with_the_window(write_test_video):
    path = write_test_video(duration=3.0, audio_rate=48000, channels=6, bursts=[1.0, 2.2])
    clip = decode_clip(path, 0.5, 2.5, 4, audio_rate=16000)
    loud = np.flatnonzero(np.abs(clip.audio.numpy()) > 0.3)
    first_burst, second_burst = loud[loud < 16000], loud[loud >= 16000]
    assert abs(first_burst[0] - 8000) <= 48  # 3 ms at 16 kHz
    assert abs(second_burst[0] - 27200) <= 48


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv", "clip.webm", "clip.avi"])
def test_audio_has_no_holes_at_the_start_or_between_frames(write_test_video, name):
    path = write_test_video(name, duration=3.0, audio_rate=16000)
    # a second window after the first checks the decoder is reset properly by the seek
    for clip in decode_clips(path, [(0.0, 1.0), (0.7, 1.9), (0.0, 1.0)], 2):
        blocks = np.abs(clip.audio.numpy()).reshape(-1, 160).max(axis=1)  # 10 ms blocks
        assert blocks.min() > 0.02  # the quiet tone never drops out


def test_file_without_audio_gives_zeros(write_test_video):
    path = write_test_video(audio=False)
    clip = decode_clip(path, 0.25, 1.25, 4)
    assert not clip.has_audio
    assert clip.audio.shape == (16000,) and not clip.audio.any()


def test_window_past_the_end_repeats_the_last_frame_and_pads_audio(write_test_video):
    path = write_test_video(duration=2.0, fps=16)
    clip = decode_clip(path, 1.5, 3.5, 8)
    assert indices(clip) == [26, 30, 31, 31, 31, 31, 31, 31]
    assert clip.frame_times[-1].item() == pytest.approx(31 / 16)
    audio = clip.audio.numpy()
    assert np.abs(audio[:7000]).max() > 0.02 and not audio[9000:].any()


def test_file_object_and_path_give_the_same_clip(write_test_video):
    path = write_test_video(duration=2.0)
    handle = io.BytesIO(path.read_bytes())
    from_bytes = decode_clip(handle, 0.4, 1.6, 6)
    from_path = decode_clip(path, 0.4, 1.6, 6)
    assert torch.equal(from_bytes.frames, from_path.frames)
    assert torch.equal(from_bytes.audio, from_path.audio)
    assert not handle.closed


@pytest.mark.parametrize("name", ["clip.mkv", "clip.webm", "clip.avi", "odd.mp4"])
def test_containers_and_odd_sizes(write_test_video, name):
    width, height = (101, 77) if name.startswith("odd") else (64, 48)
    path = write_test_video(name, duration=2.0, fps=16, width=width, height=height)
    clip = decode_clip(path, 0.5, 1.5, 4)
    assert clip.frames.shape == (4, height, width, 3)
    assert indices(clip) == expected_indices([k / 16 for k in range(32)], 0.5, 1.5, 4)
    assert clip.has_audio and clip.audio.shape == (16000,) and clip.audio.abs().max() > 0.02


def test_short_side_keeps_the_aspect_ratio(write_test_video):
    path = write_test_video(width=101, height=77)
    clip = decode_clip(path, 0.0, 1.0, 2, short_side=32)
    assert clip.frames.shape == (2, 32, round(101 * 32 / 77), 3)


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv", "clip.webm"])
def test_several_windows_from_one_open_file_match_single_windows(write_test_video, name):
    path = write_test_video(name, duration=3.0, audio_rate=48000)
    windows = [(2.5, 4.0), (0.0, 1.0), (0.5, 2.5), (2.0, 3.0)]  # the first one runs into the end of file
    together = decode_clips(path, windows, 4)
    for window, clip in zip(windows, together):
        alone = decode_clip(path, *window, 4)
        assert torch.equal(clip.frames, alone.frames)
        # a decoder restarted by a seek differs from a fresh one for a few ms; after that, same samples
        # in the same places (placement errors would show here: 0.1 ms of this tone moves it by 0.014)
        assert torch.allclose(clip.audio[160:], alone.audio[160:], atol=2e-3)
        assert torch.allclose(clip.audio, alone.audio, atol=1e-2)


def test_video_or_audio_alone(write_test_video, tmp_path):
    path = write_test_video()
    sound = decode_clip(path, 0.0, 1.0, 4, with_video=False)
    assert sound.frames.shape[0] == 0 and sound.audio.abs().max() > 0.02
    picture = decode_clip(path, 0.0, 1.0, 4, with_audio=False)
    assert picture.frames.shape[0] == 4 and not picture.has_audio and not picture.audio.any()
    audio_only = write_test_video("sound.m4a", video=False)
    assert decode_clip(audio_only, 0.0, 1.0, 4, with_video=False).audio.abs().max() > 0.02
    with pytest.raises(DecodeError, match="no video stream"):
        decode_clip(audio_only, 0.0, 1.0, 4)


def test_errors_name_the_file(tmp_path, write_test_video):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(DecodeError, match="missing.mp4"):
        decode_clip(missing, 0.0, 1.0, 4)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    with pytest.raises(DecodeError, match="notes.mp4"):
        decode_clip(text, 0.0, 1.0, 4)
    with pytest.raises(ValueError, match="end > start"):
        decode_clip(write_test_video(), 1.0, 1.0, 4)


def test_time_and_frame_bounds(write_test_video, monkeypatch):
    path = write_test_video(duration=3.0)
    with pytest.raises(DecodeError, match="took longer than"):
        decode_clip(path, 0.0, 3.0, 8, timeout=0.0)
    monkeypatch.setattr(video_reader, "MAX_DECODED_FRAMES", 10)  # one keyframe: 2.5 s means ~40 frames
    with pytest.raises(DecodeError, match="more than 10 frames"):
        decode_clip(path, 2.0, 3.0, 4)
    assert math.isfinite(decode_clip(path, 0.0, 0.5, 4).frame_times.sum().item())


@pytest.mark.parametrize("keyframe_interval", [250, 40])  # one keyframe; one every 2.5 s
def test_mpeg_ts_decodes_every_window_from_the_keyframe_before(tmp_path, keyframe_interval):
    # MPEG-TS seeks land on any packet, whose frame the decoder drops while it waits for a keyframe
    path = write_video(tmp_path / "clip.ts", moving_texture(96), 16, keyframe_interval=keyframe_interval)
    times = [k / 16 for k in range(96)]
    windows = [(start, start + 0.5) for start in np.arange(0.0, 5.5, 0.5)]
    for (start, end), clip in zip(windows, decode_clips(path, windows, 2)):
        assert clip.frame_times.tolist() == pytest.approx([times[k] for k in expected_indices(times, start, end, 2)])


def _packet_bytes(path, index: int) -> tuple[int, int]:
    """(offset, size) in the file of the `index`-th video packet's data."""
    data = path.read_bytes()
    with av.open(str(path)) as container:
        packet = [p for p in container.demux(video=0) if p.size][index]
        return data.index(bytes(packet), packet.pos), packet.size


def test_a_damaged_packet_is_skipped(tmp_path):
    path = write_video(tmp_path / "clip.mkv", counter_frames(48, 48, 64), 16, keyframe_interval=8)
    offset, size = _packet_bytes(path, 20)
    data = bytearray(path.read_bytes())
    data[offset:offset + size] = bytes(size)
    path.write_bytes(bytes(data))
    clip = decode_clip(path, 1.0, 2.0, 8)  # frame 20 is at 1.25 s
    assert clip.frames.shape[0] == 8
    assert indices(clip)[2:] == expected_indices([k / 16 for k in range(48)], 1.0, 2.0, 8)[2:]


def test_a_decoder_confused_by_damaged_data_is_replaced(write_test_video):
    # In MPEG-4 part 2 every keyframe repeats the stream's header: one flipped bit in it gives the
    # decoder another frame size, after which it refuses every packet, even after a seek.
    path = write_test_video("clip.avi", duration=3.0, fps=16)
    offset, size = _packet_bytes(path, 29)
    data = bytearray(path.read_bytes())
    header = data.index(b"\x00\x00\x01\x20", offset, offset + size)  # video object layer start code
    data[header + 9] ^= 0xFB
    path.write_bytes(bytes(data))
    refused = []
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            try:
                packet.decode()
            except av.error.InvalidDataError:
                refused.append(packet.pts)
    assert refused == list(range(30, 48))  # what the damage does to a decoder that reads on
    first, second = decode_clips(path, [(1.0, 2.0), (2.0, 3.0)], 4)
    times = [k / 16 for k in range(48)]
    assert indices(first)[:3] == expected_indices(times, 1.0, 2.0, 4)[:3]
    assert indices(second) == expected_indices(times, 2.0, 3.0, 4)


def test_every_failure_is_a_decode_error(write_test_video, monkeypatch):
    path = write_test_video()
    no_decoder = path.with_name("no_decoder.mp4")
    no_decoder.write_bytes(path.read_bytes().replace(b"stbl", b"xtbl", 1))  # the video track's sample tables
    with pytest.raises(DecodeError, match="no_decoder.mp4: no decoder for the video stream"):
        decode_clip(no_decoder, 0.0, 1.0, 4)

    def explode(*args):
        raise ValueError("odd frame")

    monkeypatch.setattr(video_reader.VideoReader, "read", explode)
    with pytest.raises(DecodeError, match="clip.mp4: ValueError: odd frame"):
        decode_clip(path, 0.0, 1.0, 4)


def test_a_frame_in_a_reserved_colour_space_is_converted_as_bt601(write_test_video, monkeypatch):
    path = write_test_video()
    plain = decode_clip(path, 0.0, 1.0, 4)
    decode_packet = video_reader.decode_packet

    def reserved_colour_space(packet, errors):
        frames = decode_packet(packet, errors)
        for frame in frames:
            if isinstance(frame, av.VideoFrame):
                frame.colorspace = 3  # reserved: what a damaged VP9 header gave, and the converter refuses
        return frames

    monkeypatch.setattr(video_reader, "decode_packet", reserved_colour_space)
    assert torch.equal(decode_clip(path, 0.0, 1.0, 4).frames, plain.frames)
