"""Pseudo-labelling on 2 gloo ranks (the `gloo_ranks` harness, as torchrun runs it): both ranks choose
the labels one process chooses from the same teacher, each trains on its share of the student set,
their weights stay equal, and OUT's files are written once, by rank 0."""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import avssl.recipes.finetune as finetune_module
import avssl.recipes.pseudo_label as pseudo_label_module
import avssl.tasks.pool_predictions as pool_predictions
from avssl.config import load_config
from avssl.models.classifier import AVClassifier
from avssl.models.factory import create_model
from avssl.recipes.finetune import FinetuneConfig
from avssl.recipes.pseudo_label import run_pseudo_label, teacher_labels, write_pseudo_labels
from avssl.tasks.pool_predictions import predict_pool
from avssl.train.observe import read_metrics
from gloo_ranks import run_ranks
from test_pseudo_labels import TINY, TINY_YAML, _few_labels, _shards

BATCH = 2


def _record_rank(cfg: FinetuneConfig, rank: int) -> dict[str, Any]:
    """`run_pseudo_label(cfg)` on this rank (run by `run_ranks`), watched: each training run's final
    weights, steps per epoch and steps; the pseudo labels handed to the student; the CSVs this rank wrote."""
    seen: dict[str, Any] = {"fits": [], "student_labels": [], "csv_writes": 0}
    fit, run_finetune, write = (finetune_module.Trainer.fit, pseudo_label_module.run_finetune,
                                pseudo_label_module.write_pseudo_labels)

    def watched_fit(trainer: finetune_module.Trainer) -> finetune_module.FitResult:
        result = fit(trainer)
        weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        seen["fits"].append({"weights": weights, "steps_per_epoch": trainer.steps_per_epoch,
                             "step": result.position.step})
        return result

    def watched_run(student_cfg: FinetuneConfig, pseudo=None) -> finetune_module.FinetuneResult:
        if pseudo is not None:  # a student (round 0 is the plain fine-tune)
            seen["student_labels"].append((list(pseudo.paths), pseudo.targets.clone()))
        return run_finetune(student_cfg, pseudo)

    def watched_write(*args: Any) -> Path:
        seen["csv_writes"] += 1
        return write(*args)

    # a spawned process of its own, left with os._exit: nothing to restore
    finetune_module.Trainer.fit = watched_fit
    pseudo_label_module.run_finetune = watched_run
    pseudo_label_module.write_pseudo_labels = watched_write
    seen["status"] = run_pseudo_label(cfg).status
    return seen


@pytest.mark.parametrize("pool, world", [("files", 2), ("shards", 2), ("files", 8)])
def test_the_ranks_blocks_scored_apart_give_the_pools_predictions_in_its_order(synthetic_corpus, tmp_path,
                                                                              monkeypatch, pool, world) -> None:
    _few_labels(synthetic_corpus, tmp_path, pool_size=6)  # its shards mix the pool's order (shuffle_seed)
    source = tmp_path / "unlabeled.csv" if pool == "files" else _shards(tmp_path / "unlabeled.csv", tmp_path / "pool")
    torch.manual_seed(0)
    model = AVClassifier(create_model("tiny", num_frames=TINY["num_frames"]), 4)
    views = dict(model_config=model.config, batch_size=4, num_workers=0, **TINY)
    alone = predict_pool(model, source, **views)
    blocks: list[Any] = []
    others = (alone.values[:0], alone.targets[:0], [])  # the other ranks' blocks, stood in for by an empty one
    monkeypatch.setattr(pool_predictions, "gather_objects", lambda mine: blocks.append(mine) or [mine, others])
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: world)
    for rank in range(world):  # each rank's block, as `world` processes would score them
        monkeypatch.setattr(torch.distributed, "get_rank", lambda: rank)
        predict_pool(model, source, **views)
    scored = [block for block in blocks if not isinstance(block, str)]  # 8 ranks: 2 have no video
    assert len(scored) == min(world, 6) and len(alone.paths) == 6
    assert [path for block in scored for path in block[2]] == alone.paths
    torch.testing.assert_close(torch.cat([block[0] for block in scored]), alone.values)


@pytest.mark.slow
def test_two_ranks_choose_one_processs_labels_and_train_their_shares(synthetic_corpus, tmp_path) -> None:
    args, _ = _few_labels(synthetic_corpus, tmp_path, pool_size=8)
    out = tmp_path / "pl"
    cfg = load_config(FinetuneConfig, TINY_YAML, args[3:] + [f"data.batch_size={BATCH}", "pseudo_label.top_k=2",
                                                              "pseudo_label.labels=soft", f"out={out}"])
    (tmp_path / "ranks").mkdir()
    ranks = run_ranks(functools.partial(_record_rank, cfg), 2, tmp_path / "ranks")

    assert [r["status"] for r in ranks] == ["finished", "finished"]
    (paths, targets), (other_paths, other_targets) = (r["student_labels"][0] for r in ranks)
    assert paths == other_paths and torch.equal(targets, other_targets)  # one choice on every rank
    for teacher_or_student, sizes in enumerate((8, 8 + len(paths))):
        first, second = (r["fits"][teacher_or_student] for r in ranks)
        assert torch.equal(first["weights"], second["weights"])  # gradients were all-reduced
        steps_per_epoch = math.ceil(sizes / 2) // BATCH  # each rank its half of the set
        assert first["steps_per_epoch"] == second["steps_per_epoch"] == steps_per_epoch
        assert first["step"] == steps_per_epoch * cfg.train.epochs
    assert [r["csv_writes"] for r in ranks] == [1, 0] and (out / "pseudo_labels" / "round1.pt").is_file()
    assert [r["step"] for r in read_metrics(out, "pseudo_label")] == [1, 2]  # one row per round: rank 0's
    assert read_metrics(out / "round1", "ranks")[-1]["weight_spread"] == 0.0

    # one process, the same teacher: the same pool scores and labels as the two ranks' blocks gave
    labels, classes, pool_paths = teacher_labels(cfg, out / "round0", torch.device("cpu"))
    alone = write_pseudo_labels(tmp_path / "alone.csv", pool_paths, labels, classes)
    assert alone.read_text() == (out / "pseudo_labels" / "round1.csv").read_text()
    assert labels.paths == paths and torch.allclose(labels.targets, targets, atol=1e-6)
