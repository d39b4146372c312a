"""`avssl evaluate sync` after a tiny pretraining run with a non-contrastive objective and the
synchronisation task, through the CLI, on the synthetic corpus's real MP4s."""
from __future__ import annotations

import json
import math

import pytest
import torch

from avssl.cli import main
from avssl.data.sync import SyncShift
from avssl.tasks.sync import sync_metrics
from avssl.train.observe import read_metrics


def test_sync_metrics_by_hand():
    shift = SyncShift(3, 0.5)  # offsets -0.5, 0, 0.5 s; class 1 in sync
    predicted, target = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 0])
    metrics = sync_metrics(predicted, target, shift)
    assert metrics["offset_accuracy"] == 50.0 and metrics["chance_accuracy"] == pytest.approx(100 / 3)
    assert metrics["within_one_accuracy"] == 75.0  # 2 vs 0 is two classes off
    assert metrics["sync_accuracy"] == 75.0  # only clip 2 (in sync, called shifted) is wrong
    assert metrics["sync_chance_accuracy"] == 50.0
    assert metrics["mean_abs_error_s"] == pytest.approx((0 + 0 + 0.5 + 1.0) / 4)
    with pytest.raises(ValueError, match="sound"):
        sync_metrics(torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64), shift)


def test_a_run_folder_is_evaluated_at_its_last_checkpoint(synthetic_corpus, tmp_path):
    # the best checkpoint is chosen on retrieval: the sync head is judged by the run's final weights.
    # The two checkpoints differ in their offset count, so the chance level says which one was read
    from avssl.models.factory import create_model
    from avssl.tasks.sync import evaluate_sync

    checkpoints = tmp_path / "run" / "checkpoints"
    for name, offsets in (("step_1", 3), ("step_2", 5)):
        create_model("tiny", sync_weight=0.5, sync_offsets=offsets).save_pretrained(checkpoints / name)
    (checkpoints / "index.json").write_text(json.dumps({"last": "step_2", "best": "step_1", "best_metric": 1.0}))
    kwargs = dict(num_workers=0, show_progress=False)
    assert evaluate_sync(tmp_path / "run", synthetic_corpus / "val.csv", **kwargs)["chance_accuracy"] == 20.0
    assert evaluate_sync(checkpoints / "step_1", synthetic_corpus / "val.csv", **kwargs)["chance_accuracy"] == \
        pytest.approx(100 / 3)


@pytest.mark.slow
def test_pretrain_with_vicreg_and_sync_then_evaluate_sync(synthetic_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "-c", "tiny", f"data.train={synthetic_corpus / 'train.csv'}",
                 f"data.val={synthetic_corpus / 'val.csv'}", f"out={run}", "data.num_workers=0",
                 "data.batch_size=8", "train.epochs=1", "model.num_frames=8", "model.time_bins=4",
                 "model.alignment=vicreg", "model.contrastive_weight=0.04", "model.sync_weight=0.5",
                 "model.sync_offsets=5"]) == 0
    train, val = read_metrics(run, "train"), read_metrics(run, "val")
    assert all(math.isfinite(row["loss_sync"]) for row in train) and "val_loss_sync" in val[-1]
    assert "val_contrastive_chance" not in val[-1]  # VICReg has no no-information level
    assert "video_emb_cos" in val[-1]  # the spread diagnostics still run

    out = tmp_path / "sync.json"
    assert main(["evaluate", "sync", "--checkpoint", str(run), str(synthetic_corpus / "val.csv"),
                 "--num-workers", "0", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["chance_accuracy"] == pytest.approx(20.0)
    assert metrics["offsets_s"] == pytest.approx([-0.8, -0.4, 0.0, 0.4, 0.8])
    assert 0 <= metrics["offset_accuracy"] <= metrics["within_one_accuracy"] <= 100
    assert metrics["num_clips"] > 0
    assert "offset_accuracy" in capsys.readouterr().out

    plain = tmp_path / "plain"
    assert main(["pretrain", "-c", "tiny", f"data.train={synthetic_corpus / 'train.csv'}",
                 f"data.val={synthetic_corpus / 'val.csv'}", f"out={plain}", "data.num_workers=0",
                 "data.batch_size=8", "train.epochs=1", "model.num_frames=8", "model.time_bins=4"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "sync", "--checkpoint", str(plain), str(synthetic_corpus / "val.csv"),
                 "--num-workers", "0"]) != 0
    assert "sync_weight=0" in capsys.readouterr().err
