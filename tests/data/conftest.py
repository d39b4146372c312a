"""Fixtures shared by the shard tests."""
import pytest

from avssl.data.shard_writer import write_shards


@pytest.fixture(scope="module")
def shard_dir(synthetic_corpus, tmp_path_factory):
    """train.csv of the synthetic corpus (24 videos of ~40 KB) in 6-7 shuffled shards."""
    out = tmp_path_factory.mktemp("shards")
    write_shards(synthetic_corpus / "train.csv", out, shard_size="150KB", shuffle_seed=0, probe_cache=False)
    return out
