"""The synchronisation task's data: shifted sound decoded with the clip (real H.264 + AAC MP4s written
with PyAV), seeded offset draws, and dataset items that carry the shifted sound and its offset class."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avssl.data.datasets import ClipDataset
from avssl.data.decode import decode_clip, decode_clips
from avssl.data.sync import SyncShift


def _onsets(audio: torch.Tensor, rate: int = 16000) -> list[float]:
    """Times (s) where the loud bursts of the test tone start."""
    loud = np.flatnonzero(np.abs(audio.numpy()) > 0.3)
    return [loud[0] / rate] + [x / rate for a, x in zip(loud, loud[1:]) if x - a > rate // 10] if len(loud) else []


def test_shifted_sound_is_the_moved_window_from_the_same_pass(write_test_video):
    path = write_test_video(duration=3.0, audio_rate=48000, bursts=[1.0, 2.2])
    plain, shifted = decode_clips(path, [(0.5, 2.5), (0.5, 2.5)], 4, audio_shifts=[0.0, 0.3])
    assert plain.shifted_audio is not None and torch.allclose(plain.shifted_audio, plain.audio, atol=1e-2)
    assert torch.equal(shifted.frames, plain.frames)
    # a decoder restarted by a seek differs from a fresh one for a few ms (as in test_decode)
    assert torch.allclose(shifted.audio, plain.audio, atol=1e-2)
    assert _onsets(plain.audio) == pytest.approx([0.5, 1.7], abs=0.003)
    assert _onsets(shifted.shifted_audio) == pytest.approx([0.2, 1.4], abs=0.003)  # sound from 0.8 s on
    moved = decode_clip(path, 0.8, 2.8, 4)
    assert torch.allclose(shifted.shifted_audio, moved.audio, atol=1e-2)
    assert decode_clip(path, 0.5, 2.5, 4).shifted_audio is None


def test_sound_moved_before_the_start_is_silence_there(write_test_video):
    path = write_test_video(duration=2.0, bursts=[0.4])
    clip = decode_clip(path, 0.2, 1.2, 4, audio_shifts=[-0.5])  # sound of [-0.3, 0.7)
    assert not clip.shifted_audio[:4600].any()  # 0.3 s of nothing (less the resampler's few samples)
    assert _onsets(clip.shifted_audio) == pytest.approx([0.7], abs=0.003)
    with pytest.raises(ValueError, match="one per window"):
        decode_clips(path, [(0.0, 1.0)], 4, audio_shifts=[0.1, 0.2])


def test_offset_classes_and_draws():
    shift = SyncShift(5, 0.5)
    assert shift.seconds.tolist() == pytest.approx([-0.5, -0.25, 0.0, 0.25, 0.5])
    assert shift.seconds[shift.in_sync] == 0.0
    draws = [shift.draw(seed=0, epoch=e, index=i, clip=0) for e in range(4) for i in range(100)]
    assert draws == [shift.draw(seed=0, epoch=e, index=i, clip=0) for e in range(4) for i in range(100)]
    counts = np.bincount(draws, minlength=5)
    assert counts.min() > 50  # 400 draws over 5 classes: each near 80
    assert draws != [shift.draw(seed=1, epoch=e, index=i, clip=0) for e in range(4) for i in range(100)]
    for bad in ({"offsets": 4}, {"offsets": 1}, {"max_shift": 0.0}):
        with pytest.raises(ValueError):
            SyncShift(**bad)


def test_dataset_items_carry_the_shifted_sound_and_its_class(write_test_video):
    root = write_test_video("a.mp4", duration=4.0, bursts=[1.5, 2.5]).parent
    sync = SyncShift(3, 0.5)
    options = dict(num_frames=4, clip_duration=2.0, frame_size=32, sampler="constant", train=False)
    plain = ClipDataset(root, **options)[0]
    assert "sync_audio" not in plain
    dataset = ClipDataset(root, sync=sync, **options)
    seen = set()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        item = dataset[0]
        offset = int(item["sync_offset"])
        seen.add(offset)
        assert item["sync_audio"].shape == item["audio"].shape
        torch.testing.assert_close(item["audio"], plain["audio"])
        same = torch.allclose(item["sync_audio"], item["audio"], atol=0.05)
        assert same == (offset == sync.in_sync)
    assert seen == {0, 1, 2}
