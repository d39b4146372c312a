"""probe_file verdicts on good and broken files, and the probe cache."""
from __future__ import annotations

import json
import logging
import os
import struct

import av
import numpy as np
import pytest

from avssl.cli import main
from avssl.data import probe as probe_module
from avssl.data.datasets import ClipDataset
from avssl.data.probe import VideoInfo, default_cache_path, probe, probe_file, summarize
from avssl.data.synthetic import counter_frames, write_video


def cut(path, fraction: float, name: str):
    data = path.read_bytes()
    out = path.with_name(name)
    out.write_bytes(data[:int(len(data) * fraction)])
    return out


def write_fast_start(path, frames):
    """An MP4 with its index (moov) in front of the data, as streaming sites serve them."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=16)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for k, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_good_file_is_described(write_test_video):
    path = write_test_video(duration=2.0, fps=16, width=64, height=48, audio_rate=8000)
    info = probe_file(path)
    assert info.ok and info.reason == ""
    assert info.duration == pytest.approx(2.0, abs=1e-6) and info.start == 0.0 and info.fps == pytest.approx(16)
    assert (info.width, info.height, info.video_codec) == (64, 48, "h264")
    assert (info.has_audio, info.audio_rate, info.audio_channels) == (True, 8000, 1)
    assert info.size_bytes == path.stat().st_size and info.path == str(path)


def test_short_and_silent_videos_are_fine(write_test_video):
    short = probe_file(write_test_video("short.mp4", duration=0.25, fps=16))
    assert short.ok and short.duration == pytest.approx(0.25, abs=1e-6)
    silent = probe_file(write_test_video("silent.mkv", audio=False))
    assert silent.ok and not silent.has_audio and silent.audio_rate == 0 and silent.duration == pytest.approx(2.0)


def test_variable_frame_rate_duration_comes_from_the_packets(write_test_video):
    info = probe_file(write_test_video(frame_times=[0.0, 0.1, 0.15, 0.9, 1.4], fps=10))
    assert info.ok and 1.4 < info.duration <= 1.55


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_mp4_with_index_at_the_end(write_test_video, fraction):
    path = write_test_video(duration=3.0)
    info = probe_file(cut(path, fraction, "cut.mp4"))
    assert not info.ok and info.reason.startswith("truncated (")


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_files_with_index_in_front(tmp_path, fraction):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(48, 48, 64, 3), dtype=np.uint8)  # noise: bytes spread evenly
    fast_start = write_fast_start(tmp_path / "faststart.mp4", frames)
    matroska = write_video(tmp_path / "m.mkv", frames, 16)
    assert probe_file(fast_start).ok and probe_file(matroska).ok
    for path in (fast_start, matroska):
        info = probe_file(cut(path, fraction, f"cut{path.suffix}"))
        assert not info.ok and info.reason.startswith("truncated ("), info


def test_truncation_is_seen_in_the_packets_without_ffmpeg_messages(tmp_path, monkeypatch):
    monkeypatch.setattr(probe_module, "_TRUNCATION_HINTS", ())
    matroska = write_video(tmp_path / "long.mkv", counter_frames(200, 48, 64), 16, keyframe_interval=16)
    data = matroska.read_bytes()
    last_cluster = data.rindex(b"\x1f\x43\xb6\x75")  # cut cleanly before the last Matroska cluster
    (tmp_path / "cut.mkv").write_bytes(data[:last_cluster])
    info = probe_file(tmp_path / "cut.mkv")
    assert info.reason.startswith("truncated (video packets end at ") and info.reason.endswith("of 12.50 s)")

    fast_start = write_fast_start(tmp_path / "faststart.mp4", counter_frames(48, 48, 64))
    with av.open(str(fast_start)) as container:
        thirtieth = [p.pos for p in container.demux(video=0) if p.size][30]
    (tmp_path / "cut.mp4").write_bytes(fast_start.read_bytes()[:thirtieth])  # cut between two pictures
    assert probe_file(tmp_path / "cut.mp4").reason == "truncated (30 of 48 video packets)"


def test_files_that_are_not_videos(tmp_path, write_test_video):
    assert probe_file(tmp_path / "absent.mp4").reason == "missing file"
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert probe_file(tmp_path / "empty.mp4").reason == "zero-byte file"
    (tmp_path / "notes.mp4").write_text("these are notes, not a video\n" * 20)
    assert probe_file(tmp_path / "notes.mp4").reason.startswith("not a media file (")
    audio_only = probe_file(write_test_video("sound.m4a", video=False))
    assert audio_only.reason == "no video stream" and audio_only.has_audio
    assert probe_file(tmp_path).reason == "a folder, not a file"


def test_an_audio_alone_probe_judges_sound_files_on_their_audio_packets(tmp_path, write_test_video):
    """Retrieval queries may be sound files: `audio_alone` accepts them, and still refuses non-media."""
    sound = probe_file(write_test_video("sound.m4a", video=False, duration=1.5), audio_alone=True)
    assert sound.ok and not sound.has_video and sound.has_audio and sound.audio_rate == 16000
    assert sound.duration == pytest.approx(1.5, abs=0.07)  # AAC pads to frames of 64 ms at 16 kHz
    assert sound.fps == 0 and sound.video_codec == ""
    video = write_test_video("clip.mp4")
    assert probe_file(video).has_video and probe_file(video, audio_alone=True) == probe_file(video)  # as always
    (tmp_path / "notes.m4a").write_text("these are notes, not a sound\n" * 20)
    notes = probe_file(tmp_path / "notes.m4a", audio_alone=True)
    assert notes.reason.startswith("not a media file (")
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(write_test_video("long.m4a", video=False, duration=3.0).read_bytes()[:3000])
    assert probe_file(cut, audio_alone=True).reason.startswith("truncated (")


def test_zero_duration_and_undecodable_video(tmp_path):
    empty = write_video(tmp_path / "empty.mkv", np.zeros((0, 48, 64, 3), np.uint8), 16,
                        np.zeros((1, 8000), np.float32))
    assert probe_file(empty).reason.startswith("zero duration")
    good = write_video(tmp_path / "good.mkv", np.zeros((8, 48, 64, 3), np.uint8), 16)
    with av.open(str(good)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(good.read_bytes())
    for position, size in packets:  # keep the container, wipe the pictures
        data[position:position + size] = bytes(size)
    wiped = tmp_path / "wiped.mkv"
    wiped.write_bytes(bytes(data))
    info = probe_file(wiped)
    assert not info.ok and info.reason.startswith("undecodable video ("), info


def test_probe_keeps_order_and_summarizes(tmp_path, write_test_video):
    good = write_test_video()
    paths = [good, tmp_path / "absent.mp4", good, tmp_path / "gone.mp4"]
    infos = probe(paths, cache=tmp_path / "cache.json")
    assert [i.path for i in infos] == [str(p) for p in paths]
    assert [i.ok for i in infos] == [True, False, True, False]
    assert summarize(infos) == "2 ok, 2 bad (missing file: 2)"
    assert summarize(infos[:1]) == "1 ok, 0 bad"


def test_second_probe_reads_the_cache_only(tmp_path, write_test_video, monkeypatch):
    paths = [write_test_video(f"v{k}.mp4", duration=1.0) for k in range(3)]
    cache = tmp_path / "cache" / "probe.json"
    first = probe(paths, cache=cache)
    assert cache.exists() and not [p for p in cache.parent.iterdir() if p.suffix == ".tmp"]

    def refuse(path):
        raise AssertionError(f"{path} was probed again")

    monkeypatch.setattr(probe_module, "probe_file", refuse)
    assert probe(paths, cache=cache) == first
    relative = os.path.relpath(paths[0])
    assert probe([relative], cache=cache)[0].path == relative  # keyed by absolute path, reported as given

    os.utime(paths[1], ns=(1, 1))  # a changed file is probed again
    with pytest.raises(AssertionError, match="v1.mp4 was probed again"):
        probe(paths, cache=cache)


def test_unreadable_cache_is_ignored_and_rewritten(tmp_path, write_test_video, caplog):
    path = write_test_video()
    cache = tmp_path / "probe.json"
    cache.write_text("{ this is not json")
    with caplog.at_level(logging.WARNING, logger="avssl.data.probe"):
        info = probe([path], cache=cache)[0]
    assert info.ok and "ignoring unreadable probe cache" in caplog.text
    stored = json.loads(cache.read_text())
    assert VideoInfo(**stored["files"][str(path)]["info"]) == info


def test_default_cache_location_and_no_cache(tmp_path, write_test_video, monkeypatch):
    monkeypatch.setenv("AVSSL_CACHE_DIR", str(tmp_path / "cachedir"))
    assert default_cache_path() == tmp_path / "cachedir" / "probe.json"
    path = write_test_video()
    probe([path], cache=False)
    assert not default_cache_path().exists()
    probe([path])
    assert default_cache_path().exists()
    monkeypatch.delenv("AVSSL_CACHE_DIR")
    assert default_cache_path() == default_cache_path().home() / ".cache" / "avssl" / "probe.json"


def test_same_breakage_twice_gets_the_same_specific_reason(tmp_path):
    # FFmpeg's log drops a message equal to the one before it; the second file must not lose it.
    reasons = []
    for name in ("first.mp4", "second.mp4"):
        (tmp_path / name).write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
        reasons.append(probe_file(tmp_path / name).reason)
    assert reasons[0] == reasons[1] == "truncated (moov atom not found)"


def without_video_decoder(path):
    """The MP4 at `path` with its first sample table box renamed: the video stream has no codec."""
    data = path.read_bytes()
    damaged = path.with_name(f"no_decoder{path.suffix}")
    damaged.write_bytes(data.replace(b"stbl", b"xtbl", 1))
    return damaged


def test_a_video_stream_without_a_decoder_is_rejected(write_test_video):
    info = probe_file(without_video_decoder(write_test_video()))
    assert not info.ok and info.reason == "no decoder for the video stream"


def test_any_error_becomes_a_reason(write_test_video, monkeypatch):
    def explode(*args):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(probe_module, "_probe_container", explode)
    info = probe_file(write_test_video())
    assert not info.ok and info.reason == "unreadable (ZeroDivisionError: float division by zero)"


def test_a_stream_that_cannot_seek_is_rejected(write_test_video):
    path = write_test_video()
    data = path.read_bytes()
    sizes = data.rindex(b"stsz")  # the audio track's sample sizes (the index sits at the end, audio last)
    path.write_bytes(data[:sizes] + b"xxxx" + data[sizes + 4:])
    info = probe_file(path)
    assert not info.ok and info.reason == "unseekable (audio stream: Operation not permitted)"


def test_a_container_shorter_than_its_video_is_inconsistent(write_test_video):
    path = write_test_video("clip.mkv", duration=3.0)
    data = bytearray(path.read_bytes())
    duration = data.index(b"\x44\x89\x88")  # Matroska's segment Duration: an 8-byte float, in ms
    struct.pack_into(">d", data, duration + 3, 500.0)
    path.write_bytes(bytes(data))
    info = probe_file(path)
    assert info.reason == "inconsistent duration (video packets span 3.00 s, the container says 0.50 s)"


def test_a_stream_starting_after_its_packets_is_inconsistent(tmp_path):
    path = tmp_path / "late_start.ts"
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        packets = [p for k, image in enumerate(counter_frames(32, 48, 64))
                   for p in stream.encode(_frame(image, k))] + stream.encode(None)
        packets[0].pts += round(7 / packets[0].time_base)  # one damaged time stamp, where FFmpeg reads the start
        for packet in packets:
            container.mux(packet)
    info = probe_file(path)
    assert not info.ok and info.reason.startswith("inconsistent timestamps (the video starts at 7.")


def _frame(image, index: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    frame.pts = index
    return frame


def test_damaged_files_are_reported_and_the_scan_goes_on(tmp_path, write_test_video, capsys, monkeypatch):
    monkeypatch.setenv("AVSSL_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("a/1.mp4", "a/2.mp4", "b/1.mp4", "b/2.mp4"):
        write_test_video(f"corpus/{name}")
    broken = without_video_decoder(tmp_path / "corpus" / "b" / "2.mp4")
    assert main(["probe", str(tmp_path / "corpus")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[4].startswith("BAD") and out[4].endswith(f"{broken}  no decoder for the video stream")
    assert out[-1].startswith("4 ok, 1 bad (no decoder for the video stream: 1)")
    dataset = ClipDataset(tmp_path / "corpus", clip_duration=1.0, num_frames=2, frame_size=32)
    assert dataset.num_videos == 4 and dataset.classes == ["a", "b"]
    assert [(info.path, info.reason) for info in dataset.rejected] == [(str(broken), "no decoder for the video stream")]
