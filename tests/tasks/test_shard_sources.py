"""Every command reads shards as it reads files (`open_dataset`): embedding, fine-tuning and the linear
probe on WebDataset shards of the synthetic corpus give what they give on its CSV manifests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avssl.config import load_config
from avssl.data.datasets import ClipDataset, open_dataset
from avssl.data.shard_writer import write_shards
from avssl.data.shards import ShardDataset
from avssl.models.factory import create_model, load_classifier
from avssl.recipes.finetune import FinetuneConfig, run_finetune
from avssl.tasks.embed import embed_source
from avssl.tasks.linear_probe import linear_probe
from avssl.tasks.video_eval import multi_view_dataset, predict_videos


@pytest.fixture(scope="module")
def shards(synthetic_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train.csv (24 videos) and val.csv (8 videos) of the synthetic corpus, each in several shards,
    the training ones in a shuffled order."""
    out = tmp_path_factory.mktemp("shards")
    write_shards(synthetic_corpus / "train.csv", out / "train", shard_size="150KB", shuffle_seed=0, probe_cache=False)
    write_shards(synthetic_corpus / "val.csv", out / "val", shard_size="100KB", probe_cache=False)
    return {"train": out / "train", "val": out / "val"}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("tiny").eval()


def test_open_dataset_picks_the_dataset_of_the_source(shards, synthetic_corpus):
    files = open_dataset(synthetic_corpus / "val.csv", train=False, probe_cache=False, num_frames=2, frame_size=32)
    packed = open_dataset(shards["val"], train=False, num_frames=2, frame_size=32)
    assert isinstance(files, ClipDataset) and isinstance(packed, ShardDataset)
    assert (packed.shuffle, packed.fixed_length) == (False, False)  # evaluation: each clip once, in order
    training = open_dataset(shards["train"], num_frames=2, frame_size=32)
    assert (training.shuffle, training.fixed_length) == (True, True)
    assert packed.classes == files.classes and packed.num_videos == files.num_videos == 8
    assert [packed.video_of(i) for i in range(len(files))] == [files.video_of(i) for i in range(len(files))]
    with pytest.raises(ValueError, match="crops=3 are evaluation views"):
        open_dataset(shards["val"], crops=3)  # train=True by default


def test_embedding_shards_gives_the_rows_of_the_files(shards, synthetic_corpus, model):
    files = embed_source(model, synthetic_corpus / "train.csv", num_workers=0, batch_size=5, show_progress=False)
    packed = embed_source(model, shards["train"], num_workers=2, batch_size=5, show_progress=False)
    assert len(packed) == len(files) == 24
    assert packed.paths == files.paths and packed.classes == files.classes
    assert torch.equal(packed.labels, files.labels) and torch.equal(packed.clip_start, files.clip_start)
    assert torch.allclose(packed.video_emb, files.video_emb, atol=1e-5)
    assert torch.allclose(packed.audio_emb, files.audio_emb, atol=1e-5)


def test_linear_probe_on_shards_scores_as_on_files(shards, synthetic_corpus, model):
    args = dict(num_workers=0, device="cpu", max_iter=50)
    files = linear_probe(model, synthetic_corpus / "train.csv", synthetic_corpus / "val.csv", **args)
    packed = linear_probe(model, shards["train"], shards["val"], **args)
    assert (packed["num_train"], packed["num_val"]) == (files["num_train"], files["num_val"]) == (24, 8)
    assert packed["top1"] == files["top1"]


def test_finetuning_from_shards(shards, synthetic_corpus, tmp_path):
    overrides = [f"out={tmp_path / 'ft'}", f"data.train={shards['train']}", f"data.val={shards['val']}",
                 "init=none", "train.device=cpu", "train.epochs=1", "data.eval_clips=2", "data.eval_crops=1",
                 "data.num_workers=0", "data.batch_size=8"]
    result = run_finetune(load_config(FinetuneConfig, None, overrides))
    assert result.status == "finished"
    assert result.fit.position.step == 3  # 24 training videos in batches of 8, as from the files
    assert result.classes == ["circle_low", "diamond_buzz", "square_mid", "triangle_high"]
    assert int(result.confusion.sum()) == 8 and result.metrics["chance_top1"] == 25.0
    assert len((tmp_path / "ft" / "eval" / "predictions.csv").read_text().splitlines()) == 9
    assert (tmp_path / "ft" / "rejected.txt").read_text() == ""
    # the fine-tuned classifier scores the shards' videos exactly as the files they were packed from
    classifier = load_classifier(tmp_path / "ft")
    views = dict(model_config=classifier.config, clips=2, classes=classifier.classes)
    from_files = predict_videos(classifier, multi_view_dataset(synthetic_corpus / "val.csv", **views), num_workers=0)
    from_shards = predict_videos(classifier, multi_view_dataset(shards["val"], **views), num_workers=2)
    assert from_shards.paths == from_files.paths
    assert torch.equal(from_shards.targets, from_files.targets)
    assert torch.allclose(from_shards.values, from_files.values, atol=1e-5)
