"""ClipDataset on real MP4s written by avssl.data.synthetic (tiny: 64x64, a few seconds)."""
import logging
import shutil

import pytest
import torch

from avssl.data.audio import FBANK_MEAN, FBANK_STD, target_frames
from avssl.data.augment import AugmentConfig
from avssl.data.datasets import ClipDataset
from avssl.data.manifest import ManifestEntry, write_manifest
from avssl.data.synthetic import counter_value, make_corpus
from avssl.data.video import IMAGENET_MEAN, IMAGENET_STD

TINY = dict(num_frames=4, clip_duration=1.0, frame_size=32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """2 classes x 2 videos of 2 s, plus a probe cache shared by the tests."""
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root / "videos", num_classes=2, videos_per_class=2, duration=2.0, size=64, fps=16)
    return root


@pytest.fixture
def counter_video(write_test_video):
    """6 s at 10 fps whose frame colours spell their index, with a 440 Hz tone; the same without sound."""
    write_test_video("silent.mp4", duration=6.0, fps=10, width=64, height=64, audio=False)
    return write_test_video("counter.mp4", duration=6.0, fps=10, width=64, height=64).parent


def _cache(root):
    return root / "probe.json"


def _frame_indices(video: torch.Tensor) -> list[int]:
    """Counter values of a transformed (T, 3, H, W) clip."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = ((video * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    return [counter_value(frame.permute(1, 2, 0).numpy()) for frame in pixels]


def test_items_have_the_documented_shapes(corpus):
    ds = ClipDataset(corpus / "videos", **TINY, probe_cache=_cache(corpus))
    assert ds.classes == ["circle_low", "square_mid"] and not ds.multi_label
    assert len(ds) == 4 and ds.rejected == []
    item = ds[0]
    assert item["video"].shape == (4, 3, 32, 32) and item["video"].dtype == torch.float32
    assert item["audio"].shape == (target_frames(1.0), 128) and item["audio"].dtype == torch.float32
    assert item["has_audio"].dtype == torch.bool and bool(item["has_audio"])
    assert item["label"].dtype == torch.int64 and item["label"].item() == 0
    assert item["path"].endswith("circle_low/0.mp4") and item["index"] == 0
    assert 0.0 <= item["clip_start"] <= 1.0 and item["clip_end"] == pytest.approx(item["clip_start"] + 1.0)
    assert ds[3]["label"].item() == 1


def test_draws_are_a_function_of_seed_epoch_index(corpus):
    ds = ClipDataset(corpus / "videos", **TINY, probe_cache=_cache(corpus))
    a, b = ds[1], ds[1]
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["audio"], b["audio"])
    starts = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        starts.add(ds[1]["clip_start"])
    assert len(starts) == 4
    other = ClipDataset(corpus / "videos", **TINY, seed=1, probe_cache=_cache(corpus))
    assert other[1]["clip_start"] != a["clip_start"]


def test_segment_offsets_and_frames_by_time(counter_video, tmp_path):
    # a 2 s segment [2, 4) of the counter video; the centre 1 s window is [2.5, 3.5)
    write_manifest([ManifestEntry(str(counter_video / "counter.mp4"), label="x", start=2.0, end=4.0)],
                   tmp_path / "m.csv")
    ds = ClipDataset(tmp_path / "m.csv", num_frames=2, clip_duration=1.0, frame_size=32, sampler="constant",
                     train=False, probe_cache=_cache(tmp_path))
    item = ds[0]
    assert (item["clip_start"], item["clip_end"]) == (2.5, 3.5)
    assert _frame_indices(item["video"]) == [28, 33]  # first frames at or after 2.75 s and 3.25 s
    uniform = ClipDataset(tmp_path / "m.csv", **TINY, sampler="uniform", train=False, probe_cache=_cache(tmp_path))
    assert [(uniform[i]["clip_start"], uniform[i]["clip_end"]) for i in range(len(uniform))] == [(2.0, 3.0),
                                                                                             (3.0, 4.0)]


def test_audio_and_missing_audio(counter_video, tmp_path):
    ds = ClipDataset([counter_video / "counter.mp4", counter_video / "silent.mp4"], **TINY, sampler="constant",
                     train=False, probe_cache=_cache(tmp_path))
    tone, silent = ds[0], ds[1]
    assert bool(tone["has_audio"]) and not bool(silent["has_audio"])
    assert tone["label"].item() == -1 and ds.classes == []
    # the tone's energy sits in a few mel bins; silence is one flat floor value everywhere
    spectrum = tone["audio"][:90].mean(0)
    assert spectrum.max() - spectrum.median() > 2.0
    assert silent["audio"][:90].std() < 1e-4
    assert silent["audio"][98:].allclose(torch.tensor(-FBANK_MEAN / FBANK_STD))  # the padded frames


def test_normalisation_statistics_are_passed_through(counter_video, tmp_path):
    raw = ClipDataset([counter_video / "silent.mp4"], **TINY, sampler="constant", train=False, image_mean=(0, 0, 0),
                      image_std=(1, 1, 1), fbank_mean=0.0, fbank_std=1.0, probe_cache=_cache(tmp_path))[0]
    assert raw["video"].min() >= 0 and raw["video"].max() <= 1  # plain [0, 1] pixels
    assert raw["audio"][98:].abs().max() == 0 and raw["audio"][:98].max() < -15  # raw log-mel: floor, zero pad


def test_rejected_files_warn_once(corpus, tmp_path, caplog):
    shutil.copytree(corpus / "videos", tmp_path / "v", dirs_exist_ok=True)
    (tmp_path / "v/circle_low/empty.mp4").write_bytes(b"")
    (tmp_path / "v/square_mid/text.mp4").write_text("not a video at all")
    with caplog.at_level(logging.WARNING, logger="avssl.data.datasets"):
        ds = ClipDataset(tmp_path / "v", **TINY, probe_cache=_cache(tmp_path))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of 6 videos rejected" in warnings[0].getMessage()
    assert len(ds) == 4 and sorted(info.path.rsplit("/", 1)[1] for info in ds.rejected) == ["empty.mp4", "text.mp4"]
    assert all(not info.ok and info.reason for info in ds.rejected)


def test_empty_dataset_says_why(corpus, tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="no usable videos out of 1: 1 rejected"):
        ClipDataset([tmp_path / "a.mp4"], **TINY, probe_cache=_cache(tmp_path))
    with pytest.raises(ValueError, match=r"4 shorter than the 5 s clip and skipped \(short='skip'\)"):
        ClipDataset(corpus / "videos", num_frames=2, clip_duration=5.0, frame_size=32, short="skip",
                    probe_cache=_cache(corpus))


def test_short_videos_pad(corpus):
    ds = ClipDataset(corpus / "videos", num_frames=2, clip_duration=3.0, frame_size=32, probe_cache=_cache(corpus))
    item = ds[0]
    assert (item["clip_start"], item["clip_end"]) == (0.0, 3.0) and item["audio"].shape[0] == target_frames(3.0)


def test_decode_failure_falls_back_to_the_next_video(corpus, tmp_path, caplog):
    shutil.copytree(corpus / "videos", tmp_path / "v", dirs_exist_ok=True)
    ds = ClipDataset(tmp_path / "v", **TINY, sampler="constant", train=False, probe_cache=_cache(tmp_path))
    broken = tmp_path / "v/circle_low/1.mp4"
    broken.write_bytes(b"\x00" * 4096)  # breaks after the probe accepted it
    with caplog.at_level(logging.WARNING, logger="avssl.data.datasets"):
        item = ds[1]
    assert item["path"].endswith("square_mid/0.mp4") and item["index"] == 2
    assert ds.decode_failures == 1
    assert any(str(broken) in r.getMessage() for r in caplog.records)
    for path in (tmp_path / "v").rglob("*.mp4"):
        path.write_bytes(b"\x00" * 4096)
    with pytest.raises(RuntimeError, match="4 videos in a row failed to decode"):
        ds[0]


def test_multi_label_and_given_classes(corpus, tmp_path):
    videos = sorted((corpus / "videos").rglob("*.mp4"))
    write_manifest([ManifestEntry(str(videos[0]), labels=("bark", "engine")),
                    ManifestEntry(str(videos[1]), label="engine"),
                    ManifestEntry(str(videos[2]))], tmp_path / "m.csv")
    ds = ClipDataset(tmp_path / "m.csv", **TINY, probe_cache=_cache(corpus))
    assert ds.multi_label and ds.classes == ["bark", "engine"]
    assert [ds[i]["label"].tolist() for i in range(3)] == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
    given = ClipDataset(tmp_path / "m.csv", **TINY, classes=["engine", "bark", "rain"], probe_cache=_cache(corpus))
    assert given[0]["label"].tolist() == [1.0, 1.0, 0.0] and given.classes == ["engine", "bark", "rain"]
    with pytest.raises(ValueError, match="label 'bark' is not one of the 1 given classes"):
        ClipDataset(tmp_path / "m.csv", **TINY, classes=["engine"], probe_cache=_cache(corpus))


def test_random_multi_returns_clips_of_one_file(corpus):
    ds = ClipDataset(corpus / "videos", **TINY, sampler="random_multi", clips_per_video=3, probe_cache=_cache(corpus))
    clips = ds[2]
    assert isinstance(clips, list) and len(clips) == 3
    assert len({c["path"] for c in clips}) == 1 and len({c["clip_start"] for c in clips}) == 3
    assert [c["clip_index"] for c in clips] == [0, 1, 2]
    assert not torch.equal(clips[0]["video"], clips[1]["video"])


def test_uniform_sampler_indexes_every_window(corpus):
    ds = ClipDataset(corpus / "videos", **TINY, sampler="uniform", train=False, probe_cache=_cache(corpus))
    assert len(ds) == 8
    assert [(ds[i]["path"][-16:], ds[i]["clip_start"]) for i in (0, 1, 2)] == [
        ("circle_low/0.mp4", 0.0), ("circle_low/0.mp4", 1.0), ("circle_low/1.mp4", 0.0)]


def test_augment_reaches_the_training_items(corpus):
    # fixed windows ("constant"): with every augmentation off, training items no longer change by epoch
    off = AugmentConfig(flip=False, crop_scale=(1.0, 1.0), freq_mask=0, time_mask=0.0)
    plain = ClipDataset(corpus / "videos", **TINY, sampler="constant", augment=off, probe_cache=_cache(corpus))
    augmented = ClipDataset(corpus / "videos", **TINY, sampler="constant", probe_cache=_cache(corpus))
    assert plain.video_transform.flip is False and plain.audio_transform.freq_mask == 0
    firsts = (plain[0], augmented[0])
    plain.set_epoch(1)
    augmented.set_epoch(1)
    assert torch.equal(plain[0]["video"], firsts[0]["video"]) and torch.equal(plain[0]["audio"], firsts[0]["audio"])
    assert not torch.equal(augmented[0]["video"], firsts[1]["video"])
    assert plain.augmentations() == "none"
    assert augmented.augmentations() == AugmentConfig().describe()
    evaluation = ClipDataset(corpus / "videos", **TINY, train=False, probe_cache=_cache(corpus))
    assert evaluation.augmentations() == "none"
