"""Collapse diagnostics: the spread measures on sets with known answers, the monitor's warnings, and
the diagnostics of a real pretraining run in its metrics.jsonl and log."""
from __future__ import annotations

import math

import pytest
import torch

from avssl.train import collapse
from avssl.train.collapse import (
    CollapseMonitor,
    alignment,
    collapse_metrics,
    effective_rank,
    mean_pairwise_cosine,
    normalized_std,
    read_warnings,
    spread,
    summarize_warnings,
    uniformity,
)
from avssl.train.observe import read_metrics
from avssl.recipes.pretrain import run_pretrain
from test_pretrain import tiny_config

SPREAD_KEYS = {f"{m}_{stage}_{stat}" for m in ("video", "audio") for stage in ("feat", "emb")
               for stat in ("cos", "std", "rank")}


def test_identical_vectors_have_no_spread():
    x = torch.randn(1, 16).repeat(6, 1) * 3.7
    measures = spread(x)
    assert measures["cos"] == pytest.approx(1.0, abs=1e-9)
    assert measures["std"] == pytest.approx(0.0, abs=1e-9)
    assert measures["rank"] == 1.0
    assert uniformity(x) == pytest.approx(0.0, abs=1e-9)


def test_orthonormal_vectors():
    x = torch.eye(8)
    assert mean_pairwise_cosine(x) == pytest.approx(0.0, abs=1e-9)
    # centring leaves 7 equal directions; each dimension holds one 1 among 8 rows
    assert effective_rank(x) == pytest.approx(7.0, rel=1e-6)
    assert normalized_std(x) == pytest.approx(math.sqrt(1 / 8 - 1 / 64), rel=1e-6)
    assert uniformity(x) == pytest.approx(-4.0, rel=1e-6)  # every squared distance is 2


def test_random_vectors_spread_as_the_sphere_predicts():
    dim = 32
    x = torch.randn(4000, dim, generator=torch.Generator().manual_seed(0))
    assert mean_pairwise_cosine(x) == pytest.approx(0.0, abs=0.01)
    assert normalized_std(x) == pytest.approx(1 / math.sqrt(dim), rel=0.03)
    assert 0.95 * dim < effective_rank(x) <= dim


def test_effective_rank_counts_directions_and_weights_them():
    axes = torch.eye(16)[:3]
    assert effective_rank(torch.cat([axes, -axes]) * 5) == pytest.approx(3.0, rel=1e-6)
    # singular values 3 : 1 -> entropy of (3/4, 1/4)
    x = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(x) == pytest.approx(expected, rel=1e-6)


def test_alignment_known_values():
    v = torch.eye(4)
    assert alignment(v, v * 3) == pytest.approx(0.0, abs=1e-12)  # rows are normalised first
    assert alignment(v, -v) == pytest.approx(4.0)
    assert alignment(v, v.roll(1, dims=1)) == pytest.approx(2.0)  # orthogonal pairs


def test_uniformity_known_value():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])  # squared distances 2, 4, 2
    expected = math.log((2 * math.exp(-4) + math.exp(-8)) / 3)
    assert uniformity(x) == pytest.approx(expected, rel=1e-9)
    assert uniformity(x, t=1.0) == pytest.approx(math.log((2 * math.exp(-2) + math.exp(-4)) / 3), rel=1e-9)


def test_collapse_metrics_names_and_values():
    gen = torch.Generator().manual_seed(0)
    features = {"video": torch.randn(10, 12, generator=gen), "audio": torch.randn(10, 12, generator=gen)}
    collapsed_audio = torch.nn.functional.normalize(torch.ones(10, 6), dim=-1)
    embeddings = {"video": torch.nn.functional.normalize(torch.randn(10, 6, generator=gen), dim=-1),
                  "audio": collapsed_audio}
    metrics = collapse_metrics(features, embeddings)
    assert set(metrics) == SPREAD_KEYS | {"alignment", "video_uniformity", "audio_uniformity"}
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["audio_emb_cos"] == pytest.approx(1.0) and metrics["video_emb_cos"] < 0.5
    assert metrics["video_feat_rank"] == pytest.approx(effective_rank(features["video"]))
    assert metrics["alignment"] == pytest.approx(alignment(embeddings["video"], collapsed_audio))
    assert metrics["audio_uniformity"] == pytest.approx(0.0, abs=1e-9)
    assert collapse_metrics({"video": features["video"][:1]}, {"video": embeddings["video"][:1]}) == {}
    assert "alignment" not in collapse_metrics({"video": features["video"]}, {"video": embeddings["video"]})


def healthy(**changes: float) -> dict[str, float]:
    """Validation metrics of a run that is learning, with `changes` applied."""
    metrics = {"val_loss_contrastive": 1.2, "val_contrastive_chance": math.log(8),
               "video_emb_cos": 0.3, "audio_emb_cos": 0.4, "video_emb_rank": 5.0, "audio_emb_rank": 4.0}
    return {**metrics, **changes}


def test_monitor_names_the_collapsed_modality(caplog):
    monitor = CollapseMonitor(warmup_epochs=0)
    assert monitor.check(1, healthy()) == []
    with caplog.at_level("WARNING", logger="avssl.train.collapse"):
        messages = monitor.check(1, healthy(audio_emb_cos=0.99))
    assert len(messages) == 1 and "the audio embeddings have collapsed" in messages[0]
    assert "video" not in messages[0]
    assert "contrastive_weight" in messages[0] and "silent" in messages[0]  # says what to try
    assert [r.getMessage() for r in caplog.records] == [f"epoch 1: {messages[0]}"]


def test_monitor_warns_on_chance_loss_only_after_warm_up(caplog):
    at_chance = healthy(val_loss_contrastive=math.log(8) * 1.01)
    monitor = CollapseMonitor(warmup_epochs=1.5)  # rounded up: epochs 1 and 2 are warm-up
    assert monitor.check(1, at_chance) == [] and monitor.check(2, at_chance) == []
    with caplog.at_level("WARNING", logger="avssl.train.collapse"):
        messages = monitor.check(3, at_chance)
    assert len(messages) == 1 and "the contrastive loss is at chance (ln B)" in messages[0]
    assert "epoch 3" in caplog.text and "B = 8" in caplog.text
    assert monitor.check(3, healthy(val_loss_contrastive=math.log(8) * 0.97)) == []  # learning, 3 % below


def test_monitor_records_warnings_and_rewrites_repeated_epochs(tmp_path):
    monitor = CollapseMonitor(warmup_epochs=0, run_dir=tmp_path)
    (tmp_path / collapse.WARNINGS_FILE).write_text("7\tfrom an older run in this folder\n")
    assert monitor.after_validation(1, healthy(video_emb_cos=0.99, audio_emb_cos=0.98)) == {"collapse_warnings": 2.0}
    assert monitor.after_validation(2, healthy()) == {"collapse_warnings": 0.0}
    monitor.check(3, healthy(video_emb_cos=0.99))
    assert [e for e, _ in read_warnings(tmp_path)] == [1, 1, 3]
    monitor.check(2, healthy(audio_emb_cos=0.99))  # a resumed run repeats epoch 2: later lines are stale
    warnings = read_warnings(tmp_path)
    assert [e for e, _ in warnings] == [1, 1, 2] and "audio" in warnings[-1][1]


def test_summary_line():
    warnings = [(2, "a"), (3, "b"), (3, "c"), (4, "d"), (7, "e")]
    assert summarize_warnings(warnings, 9) == ("5 collapse warning(s) in epochs 2-4, 7; "
                                               "none at the last validation (epoch 9)")
    assert summarize_warnings(warnings, 7).endswith("still warned at the last validation (epoch 7)")
    assert summarize_warnings([], 3) == "no collapse warnings"


def test_pretraining_records_diagnostics_and_warns_in_its_log(synthetic_corpus, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(collapse, "COLLAPSED_COS", -1.0)  # every tower counts as collapsed: warnings for sure
    run = tmp_path / "run"
    # one optimizer step on the 8 held-out clips is enough to exercise the wiring
    cfg = tiny_config(synthetic_corpus, run, f"data.train={synthetic_corpus / 'val.csv'}", "train.epochs=1",
                      "train.warmup_epochs=0")
    with caplog.at_level("WARNING"):
        assert run_pretrain(cfg).status == "finished"
    (val,) = read_metrics(run, "val")
    assert SPREAD_KEYS | {"alignment", "video_uniformity", "audio_uniformity", "val_contrastive_chance"} <= set(val)
    clips = round(100 / val["chance_R@1"])  # every clip has sound; validation batches hold batch_size
    size = cfg.data.batch_size
    batches = [size] * (clips // size) + [clips % size] * (clips % size > 0)
    assert val["val_contrastive_chance"] == pytest.approx(sum(map(math.log, batches)) / len(batches))
    assert -1 <= val["video_emb_cos"] <= 1 and 1 <= val["audio_emb_rank"] <= clips - 1
    assert 0 <= val["alignment"] <= 4 and val["video_uniformity"] <= 0
    warnings = read_warnings(run)
    assert val["collapse_warnings"] == len(warnings) >= 2
    assert {"video", "audio"} <= {m.split()[1] for _, m in warnings if "embeddings have collapsed" in m}
    logged = [r for r in caplog.records if r.name == "avssl.train.collapse"]
    assert len(logged) == len(warnings) and all(r.levelname == "WARNING" for r in logged)
    assert "collapse warning(s) in epochs 1; still warned" in caplog.text  # the end-of-run summary


def test_chance_rule_follows_the_objective():
    # InfoNCE at ln B and SwAV at ln K (its prototypes) carry no information; Barlow Twins and VICReg have
    # no such level, so only their spread is watched
    monitor = CollapseMonitor(warmup_epochs=0, objective="swav")
    messages = monitor.check(1, healthy(val_loss_contrastive=math.log(30), val_contrastive_chance=math.log(30)))
    assert len(messages) == 1 and "the SwAV loss is at chance (ln K)" in messages[0] and "K = 30" in messages[0]
    assert "model.swav_queue" in messages[0]  # what to try for this objective comes first
    infonce = CollapseMonitor(warmup_epochs=0).check(1, healthy(val_loss_contrastive=math.log(8),
                                                                val_contrastive_chance=math.log(8)))
    assert "swav_queue" not in infonce[0]
    for objective in ("barlow", "vicreg"):
        monitor = CollapseMonitor(warmup_epochs=0, objective=objective)
        assert monitor.check(1, healthy(val_loss_contrastive=math.log(8))) == []
        assert "the video embeddings have collapsed" in monitor.check(1, healthy(video_emb_cos=0.99))[0]
