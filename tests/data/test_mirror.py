"""Mirrored training clips and their labels: classes paired by name, the swap applied to real decoded
clips (the frames really mirrored exactly when the label says so), classes without a mirror class
never mirrored, and pseudo labels looked up by file swapped too."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from avssl.data.augment import AugmentConfig
from avssl.data.datasets import ClipDataset
from avssl.data.mirror import MirrorLabels, mirrored_name
from avssl.data.shard_writer import write_shards
from avssl.data.shards import ShardDataset
from avssl.data.synthetic import write_video
from avssl.tasks.pseudo_labels import PseudoLabels, pseudo_labelled


def test_names_with_a_horizontal_direction_pair_with_their_mirror_class():
    assert mirrored_name("Swipe Left") == "swipe right"
    assert mirrored_name("turning_counter-clockwise") == "turning_clockwise"
    assert mirrored_name("anticlockwise") == "clockwise" and mirrored_name("moving rightwards") == "moving leftwards"
    assert mirrored_name("playing guitar") == "playing guitar" and mirrored_name("leftover") == "leftover"
    labels = MirrorLabels(["left", "right", "up", "Clockwise", "counter-clockwise", "spin_left"])
    assert labels.target == [1, 0, 2, 4, 3, None]
    assert labels.swaps() == [("left", "right"), ("Clockwise", "counter-clockwise")]
    assert labels.unmirrored() == ["spin_left"] and not labels.complete
    assert "left <-> right" in labels.describe() and "never flipped (no mirror class): spin_left" in labels.describe()


def test_explicit_pairs_and_keep_mode():
    assert MirrorLabels(["west", "east", "left"], pairs={"west": "east"}).target == [1, 0, None]
    assert MirrorLabels(["left", "right"], mode="keep").target == [0, 1]
    with pytest.raises(ValueError, match="'north', which is not one of the 2 classes"):
        MirrorLabels(["west", "east"], pairs={"west": "north"})


def test_mirror_of_a_label_index_an_unknown_label_and_a_soft_target():
    labels = MirrorLabels(["left", "right", "up"])
    assert int(labels.mirror(torch.tensor(0))) == 1 and int(labels.mirror(torch.tensor(2))) == 2
    assert int(labels.mirror(torch.tensor(-1))) == -1  # complete: any clip may be mirrored
    assert torch.equal(labels.mirror(torch.tensor([0.7, 0.1, 0.2])), torch.tensor([0.1, 0.7, 0.2]))
    partial = MirrorLabels(["left", "up", "spin_left", "spin_right", "jump_left"])
    assert partial.mirror(torch.tensor(-1)) is None and partial.mirror(torch.tensor(4)) is None
    assert partial.mirror(torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0])).tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert partial.mirror(torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])) is None  # "left" lacks "right" here


def _half_lit_video(path):
    """A 2 s clip whose left half is white and right half black, so a mirror is plain to see."""
    frames = np.zeros((24, 32, 32, 3), np.uint8)
    frames[:, :, :16] = 255
    return write_video(path, frames, 12, np.zeros((1, 32000), np.float32), 16000)


@pytest.fixture
def direction_manifest(tmp_path):
    """Six copies of the half-lit clip: two "left", two "right", two "spin_left" (no mirror class)."""
    rows = [(str(_half_lit_video(tmp_path / f"{k}.mp4")), label)
            for k, label in enumerate(["left", "left", "right", "right", "spin_left", "spin_left"])]
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label"), *rows])
    return path


def _items(manifest, epochs=4, **augment):
    data = ClipDataset(manifest, num_frames=4, frame_size=32, train=True, seed=3,
                       augment=AugmentConfig(crop_scale=(1.0, 1.0), freq_mask=0, time_mask=0.0, **augment))
    items = []
    for epoch in range(epochs):
        data.set_epoch(epoch)
        items += [data[k] for k in range(len(data))]
    return data, items


def _clip(item):
    """Which of the fixture's six files `item` is from."""
    return int(item["path"].rsplit("/", 1)[1].split(".")[0])


def _looks_mirrored(item):
    video = item["video"]  # (T, 3, S, S), normalised: the lit half is the brighter one
    return bool(video[..., :16].mean() < video[..., 16:].mean())


def test_a_mirrored_clip_takes_its_mirror_class(direction_manifest):
    data, items = _items(direction_manifest)
    assert data.classes == ["left", "right", "spin_left"]
    assert "horizontal flip (labels swapped: left <-> right; never flipped (no mirror class): spin_left)" \
        in data.augmentations()
    mirrored = 0
    for item in items:
        own = [0, 0, 1, 1, 2, 2][_clip(item)]
        assert item["mirrored"] == _looks_mirrored(item)
        if own == 2:
            assert not item["mirrored"] and int(item["label"]) == 2
        else:
            assert int(item["label"]) == (1 - own if item["mirrored"] else own)
            mirrored += item["mirrored"]
    assert 4 <= mirrored <= 12  # 16 coin flips: about half mirrored


def test_shard_clips_are_mirrored_with_their_labels_too(direction_manifest, tmp_path):
    write_shards(direction_manifest, tmp_path / "shards", shard_size="100KB", shuffle_seed=0, probe_cache=False)
    data = ShardDataset(tmp_path / "shards", num_frames=4, frame_size=32, train=True, seed=3,
                        augment=AugmentConfig(crop_scale=(1.0, 1.0), freq_mask=0, time_mask=0.0))
    items = []
    for epoch in range(4):
        data.set_epoch(epoch)
        items += list(data)
    assert len(items) == 24 and data.mirror is not None and data.mirror.swaps() == [("left", "right")]
    for item in items:
        own = [0, 0, 1, 1, 2, 2][_clip(item)]
        assert item["mirrored"] == _looks_mirrored(item) and not (own == 2 and item["mirrored"])
        assert int(item["label"]) == (1 - own if item["mirrored"] else own)
    assert any(item["mirrored"] for item in items)


def test_keep_mode_mirrors_without_touching_labels_and_no_flip_never_mirrors(direction_manifest):
    _, kept = _items(direction_manifest, flip_labels="keep")
    own = [0, 0, 1, 1, 2, 2]
    assert all(i["mirrored"] == _looks_mirrored(i) and int(i["label"]) == own[_clip(i)] for i in kept)
    assert any(i["mirrored"] for i in kept if _clip(i) >= 4)  # "spin_left" too: labels are not read
    _, plain = _items(direction_manifest, flip=False)
    assert not any(_looks_mirrored(i) for i in plain) and "mirrored" not in plain[0]


def test_pseudo_labels_of_mirrored_pool_clips_are_swapped(direction_manifest, tmp_path):
    rows = list(csv.DictReader(open(direction_manifest)))
    labelled_csv, pool_csv = tmp_path / "labelled.csv", tmp_path / "pool.csv"
    with open(labelled_csv, "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label")] + [(r["path"], r["label"]) for r in rows[:4]])
    with open(pool_csv, "w", newline="") as handle:
        csv.writer(handle).writerows([("path",)] + [(r["path"],) for r in rows[:4]])
    options = dict(num_frames=4, frame_size=32, train=True, seed=3,
                   augment=AugmentConfig(crop_scale=(1.0, 1.0), freq_mask=0, time_mask=0.0))
    labelled = ClipDataset(labelled_csv, **options)
    targets = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.2, 0.8]])
    pseudo = PseudoLabels(paths=[r["path"] for r in rows[:4]], targets=targets, kept=torch.ones(4, dtype=torch.bool),
                          confidence=targets.max(1).values, hard=(targets > 0.5).float(), source=str(pool_csv))
    both = pseudo_labelled(labelled, ClipDataset(pool_csv, **options), pseudo)
    seen = set()
    for epoch in range(4):
        both.set_epoch(epoch)
        for item in (both[k] for k in range(4, 8)):
            own = targets[_clip(item)]
            assert item["mirrored"] == _looks_mirrored(item)
            assert torch.allclose(item["label"], own.flip(0) if item["mirrored"] else own)
            seen.add(item["mirrored"])
    assert seen == {True, False}
