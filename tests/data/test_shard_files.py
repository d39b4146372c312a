"""Shard folders on disk: index entries that must stay file names, malformed samples and truncated
shards skipped and counted, and the files' permissions."""
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from avssl.data.shard_writer import INDEX_NAME, write_shards
from avssl.data.shards import ShardDataset

TINY = dict(num_frames=2, clip_duration=1.0, frame_size=32)


def _copy_shards(shard_dir, tmp_path):
    """A writable copy of the module's shard folder."""
    return Path(shutil.copytree(shard_dir, tmp_path / "shards"))


def _rewrite_shard(path, keep):
    """Rewrite tar `path` with `keep(member, data)`'s (member, data) pairs (None drops a member)."""
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for member, data in members:
            kept = keep(member, data)
            if kept is not None:
                member, data = kept
                tar.addfile(member, io.BytesIO(data) if data is not None else None)


def test_index_names_are_file_names_never_commands(shard_dir, tmp_path, monkeypatch):
    shards = _copy_shards(shard_dir, tmp_path)
    index = json.loads((shards / INDEX_NAME).read_text())
    marker = tmp_path / "ran"
    first = index["shards"][0]["name"]
    index["shards"][0]["name"] = f"pipe:touch {marker}; cat {first}"
    (shards / INDEX_NAME).write_text(json.dumps(index))
    monkeypatch.chdir(shards)  # `data.train=.` inside the folder: the name alone would be the URL
    with pytest.raises(ValueError, match="not a plain file name"):
        list(ShardDataset(".", shuffle=False, **TINY))
    for bad in ("../other.tar", "/etc/passwd", "http://host/x.tar"):
        index["shards"][0]["name"] = bad
        (shards / INDEX_NAME).write_text(json.dumps(index))
        with pytest.raises(ValueError, match="not a plain file name"):
            ShardDataset(shards, **TINY)
    assert not marker.exists()


def test_a_folder_whose_name_looks_like_a_url_is_read_as_files(shard_dir, tmp_path, monkeypatch):
    (tmp_path / "pipe:x").mkdir()
    shutil.copytree(shard_dir, tmp_path / "pipe:x" / "y")
    monkeypatch.chdir(tmp_path)
    dataset = ShardDataset("pipe:x/y", fixed_length=False, shuffle=False, **TINY)
    assert len(list(dataset)) == 24 and dataset.skipped_samples == 0


def _malformed(shard_dir, tmp_path, damage):
    """The copied shards with shard-000000.tar damaged by `damage(path)`; (dataset, videos left intact)."""
    shards = _copy_shards(shard_dir, tmp_path)
    index = json.loads((shards / INDEX_NAME).read_text())
    damage(shards / "shard-000000.tar")
    dataset = ShardDataset(shards, fixed_length=False, shuffle=False, **TINY)
    return dataset, index["shards"][0]["indices"]


def _drop_json_of_first(path):
    first = []
    def keep(member, data):
        key, ext = member.name.split(".", 1)
        first.append(first[0] if first else key)
        return None if (key, ext) == (first[0], "json") else (member, data)
    _rewrite_shard(path, keep)


def _link_video_of_first(path):
    first = []
    def keep(member, data):
        key, ext = member.name.split(".", 1)
        first.append(first[0] if first else key)
        if key == first[0] and ext == "mp4":
            link = tarfile.TarInfo(member.name)
            link.type, link.linkname = tarfile.SYMTYPE, "elsewhere.mp4"
            return link, None
        return member, data
    _rewrite_shard(path, keep)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])


@pytest.mark.parametrize("damage, lost", [(_drop_json_of_first, 1), (_link_video_of_first, 1), (_truncate, None)])
def test_malformed_samples_and_truncated_shards_are_skipped_and_counted(shard_dir, tmp_path, caplog, damage, lost):
    dataset, first_shard = _malformed(shard_dir, tmp_path, damage)
    items = list(dataset)
    seen = {item["index"] for item in items}
    assert "skipped unreadable data" in caplog.text
    assert set(range(24)) - seen <= set(first_shard)  # only the damaged shard's videos are missing
    if lost is not None:
        assert len(seen) == 24 - lost and dataset.skipped_samples == lost
    else:  # the truncated tar, and the sample it cuts, skipped; the intact front of the shard is read
        assert 24 - len(first_shard) < len(seen) < 24 and dataset.skipped_samples >= 1


def test_training_streams_go_on_past_malformed_samples_but_stop_when_nothing_is_readable(shard_dir, tmp_path):
    dataset, _ = _malformed(shard_dir, tmp_path, _drop_json_of_first)
    training = ShardDataset(dataset.urls[0].rsplit("/", 1)[0], **TINY)
    assert len(list(training)) == len(training) == 24  # fixed length: the other items fill the epoch
    for url in training.urls:
        Path(url).write_bytes(b"not a tar")
    with pytest.raises(RuntimeError, match="no readable samples"):
        list(training)


def test_shards_and_index_get_the_umask_mode(synthetic_corpus, tmp_path):
    old = os.umask(0o022)
    try:
        write_shards(synthetic_corpus / "val.csv", tmp_path / "out", shard_size="100KB", probe_cache=False)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert len(modes) > 2 and set(modes.values()) == {0o644}, modes
