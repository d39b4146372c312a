"""What shards hold, read without their videos (`avssl.data.shard_index`), and a corpus narrowed to some
of its files (`ShardDataset.only_videos`): the clips of a ClipDataset of just those files."""
from __future__ import annotations

import csv
import os

import pytest

from avssl.data.datasets import ClipDataset
from avssl.data.shard_index import labels_by_file, packed_videos_of, shard_metadata
from avssl.data.shard_writer import write_shards
from avssl.data.shards import ShardDataset

TINY = dict(num_frames=2, clip_duration=1.0, frame_size=32)


@pytest.fixture(scope="module")
def shard_dir(synthetic_corpus, tmp_path_factory):
    """train.csv of the synthetic corpus (24 videos) in 6-7 shuffled shards."""
    out = tmp_path_factory.mktemp("shards")
    write_shards(synthetic_corpus / "train.csv", out, shard_size="150KB", shuffle_seed=0, probe_cache=False)
    return out


def _rows(corpus) -> list[dict[str, str]]:
    with (corpus / "train.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_metadata_and_labels_are_read_from_the_shards(shard_dir, synthetic_corpus):
    dataset = ShardDataset(shard_dir, **TINY)
    metadata = [meta for url in dataset.urls for meta in shard_metadata(url)]
    assert sorted(m["index"] for m in metadata) == list(range(24))
    truth = {os.path.abspath(synthetic_corpus / r["path"]): (r["label"],) for r in _rows(synthetic_corpus)}
    assert labels_by_file(shard_dir) == truth


def test_a_truncated_shard_is_skipped_with_a_warning(shard_dir, tmp_path, caplog):
    broken = tmp_path / "broken.tar"
    broken.write_bytes((shard_dir / "shard-000000.tar").read_bytes()[:1000])
    assert list(shard_metadata(str(broken))) == []
    assert "skipped unreadable shard" in caplog.text


def test_only_videos_streams_the_clips_of_a_clip_dataset_of_those_files(shard_dir, synthetic_corpus):
    rows = _rows(synthetic_corpus)
    chosen = [str(synthetic_corpus / r["path"]) for r in rows[3:20:4]]  # 5 files, in source order
    dataset = ShardDataset(shard_dir, seed=3, **TINY)
    part = dataset.only_videos(packed_videos_of(dataset.urls, chosen))
    assert part.num_videos == part.total_items == 5 and len(part.urls) < len(dataset.urls)
    assert dataset.num_videos == 24  # the corpus itself is left whole
    files = ClipDataset(chosen, seed=3, probe_cache=False, **TINY)
    for epoch in (0, 1):
        part.set_epoch(epoch)
        files.set_epoch(epoch)
        items = list(part)
        assert sorted(i["path"] for i in items) == sorted(chosen)  # each chosen file once, no other
        for item in items:
            same = files[item["index"]]  # the same clip: the index numbers it as the ClipDataset does
            assert (item["path"], item["clip_start"]) == (same["path"], same["clip_start"])
