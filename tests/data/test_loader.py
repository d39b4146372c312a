import pytest
import torch

from avssl.data.datasets import ClipDataset
from avssl.data.loader import ItemKey, ShardedSampler, build_loader, collate_clips, prefetch_per_worker
from avssl.data.synthetic import make_corpus


def indices(sampler: ShardedSampler) -> list[int]:
    """The indices a sampler's keys name (each key also carries the sampler's epoch)."""
    keys = list(sampler)
    assert all(isinstance(k, ItemKey) and k.epoch == sampler.epoch for k in keys)
    return [k.index for k in keys]


def test_two_ranks_are_disjoint_and_cover_the_data():
    shards = [indices(ShardedSampler(10, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert set(shards[0]).isdisjoint(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(10))
    assert shards[0] + shards[1] != list(range(0, 10, 2)) + list(range(1, 10, 2))  # shuffled


def test_uneven_sizes_are_padded_to_equal_length():
    shards = [indices(ShardedSampler(7, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    flat = shards[0] + shards[1] + shards[2]
    assert set(flat) == set(range(7)) and len(flat) == 9  # two indices repeat, nothing is lost


def test_order_depends_on_seed_and_epoch_only():
    a = ShardedSampler(50, seed=3)
    b = ShardedSampler(50, seed=3)
    assert indices(a) == indices(b)
    a.set_epoch(1)
    assert indices(a) != indices(b)
    b.set_epoch(1)
    assert list(a) == list(b) and list(a)[0].epoch == 1
    assert indices(ShardedSampler(50, seed=4)) != indices(ShardedSampler(50, seed=3))
    assert indices(ShardedSampler(6, shuffle=False, rank=1, world_size=2)) == [1, 3, 5]


def test_resume_start_skips_exactly():
    sampler = ShardedSampler(20, seed=2, rank=1, world_size=2)
    sampler.set_epoch(4)
    full = indices(sampler)
    sampler.set_epoch(4, start=3)
    assert indices(sampler) == full[3:] and len(sampler) == 7
    sampler.set_epoch(5)
    assert len(sampler) == 10  # a new epoch starts from the beginning
    with pytest.raises(ValueError, match=r"start must be in \[0, 10\]"):
        sampler.set_epoch(5, start=11)


def test_prefetch_covers_two_optimizer_steps_between_the_workers():
    assert prefetch_per_worker(2, 1) == 2  # torch's default is the floor
    assert prefetch_per_worker(2, 4) == 4  # 2 workers x 4 = 8 batches: two steps of 4 micro-batches
    assert prefetch_per_worker(4, 3) == 2 and prefetch_per_worker(1, 3) == 6


def test_bad_rank_is_named():
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        ShardedSampler(4, rank=2, world_size=2)


def test_collate_stacks_tensors_keeps_lists_and_flattens():
    def item(i):
        return {"video": torch.full((2, 3), float(i)), "label": torch.tensor(i), "path": f"v{i}.mp4",
                "clip_start": 0.5 * i}

    batch = collate_clips([item(0), [item(1), item(2)]])
    assert batch["video"].shape == (3, 2, 3) and batch["video"][2, 0, 0] == 2.0
    assert batch["label"].tolist() == [0, 1, 2]
    assert batch["path"] == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert batch["clip_start"] == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="empty batch"):
        collate_clips([])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    make_corpus(root / "videos", num_classes=2, videos_per_class=3, duration=2.0, size=64, fps=16)
    return ClipDataset(root / "videos", num_frames=2, clip_duration=1.0, frame_size=32, probe_cache=root / "probe.json")


def _epoch(loader, epoch, start=0):
    loader.set_epoch(epoch, start)
    return [(path, start) for batch in loader for path, start in zip(batch["path"], batch["clip_start"])]


def test_same_clips_with_or_without_workers(dataset):
    serial = build_loader(dataset, batch_size=2, num_workers=0, seed=5)
    parallel = build_loader(dataset, batch_size=2, num_workers=2, seed=5)
    first = _epoch(serial, 0)
    assert len(first) == 6 and first == _epoch(parallel, 0)
    second = _epoch(parallel, 1)
    assert second == _epoch(serial, 1)
    assert second != first  # the new epoch reached the workers: new order and new clip times
    batch = next(iter(parallel))
    assert batch["video"].shape == (2, 2, 3, 32, 32) and batch["label"].shape == (2,)
    assert batch["audio"].shape[0] == 2 and batch["has_audio"].dtype == torch.bool


def test_ranks_split_the_dataset_and_resume(dataset):
    loaders = [build_loader(dataset, batch_size=1, num_workers=0, rank=r, world_size=2, drop_last=False)
               for r in range(2)]
    shards = [_epoch(loader, 2) for loader in loaders]
    assert len(shards[0]) == len(shards[1]) == 3
    assert sorted(p for shard in shards for p, _ in shard) == sorted(map(dataset.video_path, range(6)))
    assert _epoch(loaders[0], 2, start=2) == shards[0][2:]


def test_a_dataset_smaller_than_one_batch_gives_one_batch_of_all_of_it(dataset, caplog):
    loader = build_loader(dataset, batch_size=8, num_workers=0)
    batches = list(loader)
    assert [len(b["video"]) for b in batches] == [len(dataset)]  # 6 clips: one batch of 6, not none
    assert "fewer than batch_size=8: batches of 6" in caplog.text


def test_the_loader_dataset_reads_as_the_dataset_it_was_given(dataset):
    loader = build_loader(dataset, batch_size=2, num_workers=0)
    assert loader.dataset.classes == dataset.classes and len(loader.dataset) == len(dataset)
    assert loader.dataset[0]["path"] == dataset[0]["path"]
