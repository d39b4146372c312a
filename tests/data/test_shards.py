"""WebDataset shards on real MP4s: `avssl shard`, ShardDataset against ClipDataset, rank/worker splits."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from avssl.cli import main
from avssl.data.augment import AugmentConfig
from avssl.data.datasets import ClipDataset
from avssl.data.loader import build_loader
from avssl.data.manifest import ManifestEntry, write_manifest
from avssl.data.shard_writer import INDEX_NAME, parse_size, write_shards
from avssl.data.shards import ShardDataset, is_shard_source
from avssl.models.config import get_config
from avssl.recipes.pretrain import PretrainConfig, build_datasets

TINY = dict(num_frames=2, clip_duration=1.0, frame_size=32)
KEYS = ("video", "audio", "has_audio", "label")


def assert_same_items(shard_items, clip_dataset):
    """Every item from shards equals ClipDataset's item of the same index."""
    for item in shard_items:
        reference = clip_dataset[item["index"]]
        for key in KEYS:
            assert torch.equal(item[key], reference[key]), (item["index"], key)
        for key in ("path", "clip_start", "clip_end", "clip_index"):
            assert item[key] == reference[key], (item["index"], key)


def test_clips_from_shards_equal_clips_from_the_files(shard_dir, synthetic_corpus):
    shards = ShardDataset(shard_dir, seed=5, **TINY)
    files = ClipDataset(synthetic_corpus / "train.csv", seed=5, probe_cache=False, **TINY)
    assert len(json.loads((shard_dir / INDEX_NAME).read_text())["shards"]) >= 4
    epochs = []
    for epoch in (0, 1):
        shards.set_epoch(epoch)
        files.set_epoch(epoch)
        items = list(shards)
        assert sorted(i["index"] for i in items) == list(range(len(files))) == list(range(24))
        assert_same_items(items, files)
        epochs.append({i["index"]: i["clip_start"] for i in items})
    assert epochs[0] != epochs[1]  # set_epoch reseeds the draws
    assert shards.classes == files.classes


def test_augmentations_apply_to_shard_items_as_to_file_items(shard_dir, synthetic_corpus):
    augment = AugmentConfig(flip=False, crop_scale=(0.5, 1.0), freq_mask=0)
    shards = ShardDataset(shard_dir, seed=5, augment=augment, **TINY)
    files = ClipDataset(synthetic_corpus / "train.csv", seed=5, augment=augment, probe_cache=False, **TINY)
    assert shards.augmentations() == files.augmentations() == augment.describe()
    items = list(shards)
    assert_same_items(items, files)
    default = ClipDataset(synthetic_corpus / "train.csv", seed=5, probe_cache=False, **TINY)
    assert any(not torch.equal(item["video"], default[item["index"]]["video"]) for item in items[:4])


def test_segments_multi_label_and_several_items_per_video(tmp_path, synthetic_corpus):
    videos = sorted(synthetic_corpus.glob("*/*.mp4"))
    write_manifest([
        ManifestEntry(str(videos[0]), labels=("a", "b")),
        ManifestEntry(str(videos[1]), labels=("b",), start=0.5, end=2.5),
        ManifestEntry(str(videos[1]), labels=("c",), start=1.0),
        ManifestEntry(str(videos[9]), labels=("a", "c"), start=2.9),  # one short padded window
    ], tmp_path / "m.csv")
    write_shards(tmp_path / "m.csv", tmp_path / "shards", shard_size="1MB", probe_cache=False)
    args = dict(sampler="uniform", clip_duration=0.75, num_frames=2, frame_size=32, train=False, seed=1)
    shards = ShardDataset(tmp_path / "shards", shuffle=False, **args)
    files = ClipDataset(tmp_path / "m.csv", probe_cache=False, **args)
    items = list(shards)
    assert len(items) == len(files) == 4 + 3 + 3 + 1
    assert [i["index"] for i in items] == list(range(len(files)))
    assert_same_items(items, files)
    assert items[0]["label"].tolist() == [1.0, 1.0, 0.0]


def _members(tar_path):
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_cli_packs_original_bytes_reports_the_corrupt_file_and_splits(tmp_path, synthetic_corpus, capsys):
    source = tmp_path / "videos"
    for name in ("circle_low", "square_mid"):
        (source / name).mkdir(parents=True)
        for i in range(3):
            shutil.copy(synthetic_corpus / name / f"{i}.mp4", source / name / f"{i}.mp4")
    (source / "square_mid" / "broken.mkv").write_bytes(b"not a video, " * 500)
    out = tmp_path / "shards"
    assert main(["shard", str(source), "--out", str(out), "--shard-size", "100KB", "--no-cache"]) == 0
    printed = capsys.readouterr().out
    assert "6 videos in" in printed and "1 rejected" in printed and "broken.mkv" in printed
    index = json.loads((out / INDEX_NAME).read_text())
    assert index["total"] == 6 and index["classes"] == ["circle_low", "square_mid"]
    assert [r["path"].endswith("broken.mkv") for r in index["rejected"]] == [True]
    assert len(index["shards"]) > 1 and sum(s["videos"] for s in index["shards"]) == 6
    assert sorted(p.name for p in out.iterdir()) == sorted([INDEX_NAME] + [s["name"] for s in index["shards"]])
    packed = {}
    for shard in index["shards"]:
        members = _members(out / shard["name"])
        assert len(members) == 2 * shard["videos"]
        assert shard["bytes"] <= parse_size("100KB") or shard["videos"] == 1
        for name, data in members.items():
            key, ext = name.split(".", 1)
            if ext == "json":
                meta = json.loads(data)
                assert members[f"{key}.mp4"] == Path(meta["path"]).read_bytes()  # not re-encoded
                assert meta["probe"]["ok"] and meta["probe"]["has_audio"]
                assert meta["duration"] == pytest.approx(3, abs=0.1)
                packed[meta["index"]] = (key, meta["label"])
    assert sorted(packed) == list(range(6)) and len({k for k, _ in packed.values()}) == 6
    assert [label for _, label in sorted(packed.values())] == ["circle_low"] * 3 + ["square_mid"] * 3


def test_cli_rejects_a_video_without_a_decoder_with_its_reason_and_packs_the_rest(tmp_path, synthetic_corpus,
                                                                                   capsys, monkeypatch):
    """Issue 11: an MP4 whose sample table box is renamed (a video stream without a decoder) raised
    AttributeError in the probe and `avssl shard` exited 1 with a traceback and no shards."""
    monkeypatch.setenv("AVSSL_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "videos"
    source.mkdir()
    for i in range(3):
        shutil.copy(synthetic_corpus / "circle_low" / f"{i}.mp4", source / f"{i}.mp4")
    damaged = source / "damaged.mp4"
    damaged.write_bytes((source / "0.mp4").read_bytes().replace(b"stbl", b"xtbl", 1))
    out = tmp_path / "shards"
    assert main(["shard", str(source), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"rejected: {damaged}: no decoder for the video stream" in printed and "3 videos in 1 shards" in printed
    index = json.loads((out / INDEX_NAME).read_text())
    assert index["rejected"] == [{"path": str(damaged), "reason": "no decoder for the video stream"}]
    assert index["total"] == 3 and sum(s["videos"] for s in index["shards"]) == 3
    members = _members(out / index["shards"][0]["name"])
    assert sorted(json.loads(data)["path"] for name, data in members.items() if name.endswith(".json")) == \
        [str(source / f"{i}.mp4") for i in range(3)]


def test_two_ranks_with_workers_read_disjoint_shards_covering_all(shard_dir):
    dataset = ShardDataset(shard_dir, fixed_length=False, shuffle_buffer=0, **TINY)
    dataset.set_epoch(3)
    seen, shards = [], []
    for rank in range(2):
        loader = build_loader(dataset, batch_size=3, num_workers=2, rank=rank, world_size=2, drop_last=False)
        loader.set_epoch(3)
        seen.append([i for batch in loader for i in batch["index"]])
        shards.append([s for w in range(2) for s in loader.dataset.worker_plan(w, 2)[0]])
    assert set(seen[0]).isdisjoint(seen[1]) and sorted(seen[0] + seen[1]) == list(range(24))
    assert set(shards[0]).isdisjoint(shards[1]) and sorted(shards[0] + shards[1]) == list(range(len(dataset.urls)))
    assert all(len(set(plan)) == len(plan) for plan in shards)


def test_every_rank_yields_the_same_fixed_number_of_batches(shard_dir):
    dataset = ShardDataset(shard_dir, **TINY)
    lengths, indices = [], []
    for rank in range(4):  # 6-7 shards over 4 ranks: ranks hold 1 or 2 shards, unequal items
        loader = build_loader(dataset, batch_size=2, num_workers=0, rank=rank, world_size=4, drop_last=True)
        loader.set_epoch(1)
        batches = list(loader)
        lengths.append((len(loader), len(batches), sum(len(b["index"]) for b in batches)))
        indices.append([i for b in batches for i in b["index"]])
    assert lengths == [(3, 3, 6)] * 4
    sets = [set(rank) for rank in indices]
    assert all(a.isdisjoint(b) for k, a in enumerate(sets) for b in sets[k + 1:])  # each rank reads its own shards


def test_resume_mid_epoch_skips_exactly_the_consumed_batches(shard_dir):
    dataset = ShardDataset(shard_dir, **TINY)
    loader = build_loader(dataset, batch_size=2, num_workers=2, rank=1, world_size=2, drop_last=True)
    loader.set_epoch(2)
    full = [batch["index"] for batch in loader]
    loader.set_epoch(2, start=6)
    assert len(loader) == len(full) - 3
    assert [batch["index"] for batch in loader] == full[3:]
    with pytest.raises(ValueError, match="start must be in"):
        loader.set_epoch(2, start=100)


def test_pretraining_takes_a_shard_folder_as_training_data(shard_dir, synthetic_corpus, tmp_path):
    assert is_shard_source(shard_dir) and is_shard_source(str(shard_dir / "shard-{000000..000001}.tar"))
    assert not is_shard_source(synthetic_corpus) and not is_shard_source(synthetic_corpus / "val.csv")
    cfg = PretrainConfig()
    cfg.data.train, cfg.data.val = str(shard_dir), str(synthetic_corpus / "val.csv")
    cfg.data.num_frames, cfg.data.frame_size, cfg.data.clip_duration = 2, 32, 1.0
    cfg.data.augment = AugmentConfig(flip=False)
    train, val = build_datasets(cfg, get_config("tiny"), tmp_path)
    assert isinstance(train, ShardDataset) and isinstance(val, ClipDataset)
    assert train.augmentations() == cfg.data.augment.describe() and val.augmentations() == "none"
    batch = next(iter(build_loader(train, batch_size=4, num_workers=0, rank=0, world_size=2)))
    assert batch["video"].shape == (4, 2, 3, 32, 32) and batch["label"].shape == (4,)
    cfg.data.val = ""
    with pytest.raises(ValueError, match="set data.val"):
        build_datasets(cfg, get_config("tiny"), tmp_path)


def test_sizes_parse_and_bad_ones_are_named():
    assert parse_size("1GB") == 10**9 and parse_size("500MB") == 5 * 10**8 and parse_size("64MiB") == 64 * 2**20
    assert parse_size("1.5k") == 1500 and parse_size(4096) == 4096
    for bad in ("1QB", "-5MB", "", "MB", "0"):
        with pytest.raises(ValueError, match="shard size"):
            parse_size(bad)


def test_bad_inputs_give_clear_errors(shard_dir, synthetic_corpus, tmp_path, capsys):
    assert main(["shard", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "video source not found" in capsys.readouterr().err
    assert main(["shard", str(synthetic_corpus), "--out", str(tmp_path / "o"), "--shard-size", "lots"]) == 2
    assert "'lots' is not a size" in capsys.readouterr().err
    assert main(["shard", str(synthetic_corpus / "val.csv"), "--out", str(shard_dir)]) == 2
    assert "already holds shards" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="shard not found"):
        ShardDataset(tmp_path / "missing" / "shard-000000.tar")
    with pytest.raises(FileNotFoundError, match="no shard index"):
        ShardDataset(_lonely_shard(shard_dir, tmp_path))
    with pytest.raises(ValueError, match="cannot be split across 9 ranks"):
        ShardDataset(shard_dir, world_size=9, rank=0)
    renamed = tmp_path / "shard-000099.tar"
    shutil.copy(shard_dir / "shard-000000.tar", renamed)
    with pytest.raises(ValueError, match="not one of the .* shards listed"):
        ShardDataset(renamed, index=shard_dir / INDEX_NAME)


def _lonely_shard(shard_dir, tmp_path):
    """A copy of a shard in a folder without index.json."""
    (tmp_path / "lonely").mkdir()
    return shutil.copy(shard_dir / "shard-000000.tar", tmp_path / "lonely" / "shard-000000.tar")


READER = '''
import json, os, sys
import torch.distributed as dist
from avssl.data.loader import build_loader
from avssl.data.shards import ShardDataset
from avssl.train.distributed import cleanup, init_distributed

ctx = init_distributed("cpu")
dataset = ShardDataset(sys.argv[1], fixed_length=False, num_frames=2, clip_duration=1.0, frame_size=32)
loader = build_loader(dataset, batch_size=2, num_workers=2, rank=ctx.rank, world_size=ctx.world_size)
loader.set_epoch(1)
read = sorted(i for batch in loader for i in batch["index"])
everyone = [None] * ctx.world_size
dist.all_gather_object(everyone, read)
if ctx.rank == 0:
    with open(sys.argv[2], "w") as out:
        json.dump(everyone, out)
cleanup()
sys.stdout.flush()
os._exit(0)
'''


@pytest.mark.slow
def test_two_torchrun_processes_read_disjoint_shards(shard_dir, tmp_path):
    script, result = tmp_path / "read_shards.py", tmp_path / "read.json"
    script.write_text(READER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(shard_dir), str(result)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = json.loads(result.read_text())
    assert first and second and set(first).isdisjoint(second)
    assert sorted(first + second) == list(range(24))


def test_a_video_that_fails_to_decode_keeps_positions_so_resume_is_exact(shard_dir, monkeypatch):
    from avssl.data.decode import DecodeError

    dataset = ShardDataset(shard_dir, **TINY)
    loader = build_loader(dataset, batch_size=2, num_workers=0, drop_last=True)
    loader.set_epoch(0)
    normal = [i for batch in loader for i in batch["index"]]
    broken = normal[3]
    original = ShardDataset._load

    def failing_load(self, sample, meta, index, item):
        if index == broken:
            raise DecodeError(f"video {index} is unreadable")
        return original(self, sample, meta, index, item)

    monkeypatch.setattr(ShardDataset, "_load", failing_load)
    loader.set_epoch(0)
    full = [i for batch in loader for i in batch["index"]]
    assert len(full) == len(normal) and full[3] == full[4] == normal[4] and broken not in full
    loader.set_epoch(0, start=4)  # resumed after two batches, the failed position among them
    assert [i for batch in loader for i in batch["index"]] == full[4:]
