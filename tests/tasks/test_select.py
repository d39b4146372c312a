"""Active selection: the strategies' math on hand-made points, chunking, determinism, and `avssl select`
end to end on tiny generated videos with tiny saved models."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from avssl.cli import main
from avssl.models.classifier import AVClassifier
from avssl.models.factory import create_model
from avssl.tasks.select import (
    Points,
    badge,
    k_center_greedy,
    nearest_sq_distances,
    random_choice,
    top_scores,
    uncertainty,
)


def test_coreset_picks_the_points_farthest_from_the_labelled_ones() -> None:
    # three clusters on a line; the labelled clip sits in the first one
    features = torch.tensor([[0.0, 0], [0.1, 0], [0.2, 0], [10.0, 0], [10.1, 0], [20.0, 0]])
    indices, distances = k_center_greedy(features, 2, labelled=torch.tensor([[0.0, 0.0]]))
    assert indices.tolist() == [5, 3]  # 20 first (20 away), then 10 (10 away from 0 and from 20)
    assert distances.tolist() == pytest.approx([20.0, 10.0])
    # the labelled clip is in the pool: it is a centre and never chosen
    inside = k_center_greedy(features, 3, exclude=torch.tensor([True, False, False, False, False, False]))[0]
    assert inside.tolist()[:2] == [5, 3] and 0 not in inside.tolist()


def test_chunked_distances_equal_the_unchunked_ones() -> None:
    torch.manual_seed(0)
    h, a = torch.randn(53, 6), torch.randn(53, 4)
    for points in (Points(h), Points(h, a)):
        centers = points.rows(slice(40, 53))
        whole = nearest_sq_distances(points, centers, chunk_size=1000)
        explicit = torch.cdist(_flat(points), _flat(centers)).square().min(dim=1).values
        assert whole == pytest.approx(explicit, abs=1e-8)
        assert nearest_sq_distances(points, centers, chunk_size=7) == pytest.approx(whole, abs=1e-9)
    probs = torch.randn(53, 4).softmax(dim=1)
    for select in (lambda c: k_center_greedy(h, 9, seed=3, chunk_size=c), lambda c: badge(h, probs, 9, seed=3,
                                                                                             chunk_size=c)):
        small, large = select(5), select(10_000)
        assert torch.equal(small[0], large[0]) and small[1] == pytest.approx(large[1])


def _flat(points: Points) -> torch.Tensor:
    """The rows as explicit vectors (outer products for gradient embeddings)."""
    if points.a is None:
        return points.h.double()
    return torch.einsum("nc,nd->ncd", points.a.double(), points.h.double()).flatten(1)


def test_badge_starts_at_the_largest_gradient_and_is_deterministic_for_a_seed() -> None:
    torch.manual_seed(1)
    features = torch.randn(40, 5)
    probs = torch.full((40, 3), 0.01)
    probs[:, 0] = 0.98  # confident: tiny gradients ...
    probs[7] = torch.tensor([0.34, 0.33, 0.33])  # ... except one clip
    indices, scores = badge(features, probs, 6, seed=0)
    assert indices[0] == 7 and len(set(indices.tolist())) == 6
    assert torch.equal(badge(features, probs, 6, seed=0)[0], indices)
    draws = {tuple(badge(features, probs, 6, seed=s)[0].tolist()) for s in range(5)}
    assert len(draws) > 1  # the k-means++ draws follow the seed
    excluded = torch.zeros(40, dtype=torch.bool)
    excluded[7] = True
    assert 7 not in badge(features, probs, 6, exclude=excluded)[0].tolist()


def test_uncertainty_ranks_the_least_sure_first() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0], [0.98, 0.01, 0.01]])
    assert top_scores(uncertainty(probs, "entropy"), 2)[0].tolist() == [1, 2]
    assert top_scores(uncertainty(probs, "margin"), 2)[0].tolist() == [2, 1]  # a tie at the top: gap 0
    multi = torch.tensor([[0.9, 0.1], [0.55, 0.99], [0.3, 0.01]])
    assert top_scores(uncertainty(multi, "margin", multi_label=True), 1)[0].tolist() == [1]
    assert top_scores(uncertainty(multi, "entropy", multi_label=True), 1)[0].tolist() == [1]
    with pytest.raises(ValueError, match="budget 5 is more than the 4"):
        top_scores(uncertainty(probs), 5)


def test_random_choice_is_seeded_and_skips_excluded_rows() -> None:
    exclude = torch.arange(20) < 5
    first = random_choice(20, 8, exclude=exclude, seed=4)[0]
    assert torch.equal(first, random_choice(20, 8, exclude=exclude, seed=4)[0])
    assert not torch.equal(first, random_choice(20, 8, exclude=exclude, seed=5)[0])
    assert min(first.tolist()) >= 5 and len(set(first.tolist())) == 8


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny pretrained model and a tiny 4-class classifier on it, saved as `save_pretrained` folders."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = create_model("tiny")
    model.save_pretrained(root / "pretrained")
    classifier = AVClassifier(create_model("tiny"), 4, mode="av",
                              classes=["circle_low", "diamond_buzz", "square_mid", "triangle_high"])
    classifier.save_pretrained(root / "classifier")
    return {"pretrained": root / "pretrained", "classifier": root / "classifier"}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("strategy", ["uncertainty", "coreset", "badge", "random"])
def test_select_cli_writes_a_manifest_to_label_and_a_contact_sheet(strategy, synthetic_corpus, models, tmp_path):
    labelled = synthetic_corpus / "val.csv"  # 8 labelled clips, outside the pool (train.csv, 24 clips)
    out = tmp_path / "to_label.csv"
    args = ["select", "--checkpoint", str(models["classifier"]), "--pool", str(synthetic_corpus / "train.csv"),
            "--budget", "5", "--strategy", strategy, "--labelled", str(labelled), "--out", str(out),
            "--num-workers", "0", "--seed", "1"]
    assert main(args) == 0
    rows = _rows(out)
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5"] and len({r["path"] for r in rows}) == 5
    assert all(r["label"] == "" and Path(r["path"]).is_file() and float(r["end"]) > float(r["start"]) for r in rows)
    assert all(r["predicted"] in {"circle_low", "diamond_buzz", "square_mid", "triangle_high"} for r in rows)
    pool = {str((synthetic_corpus / r["path"]).resolve()) for r in _rows(synthetic_corpus / "train.csv")}
    assert {str(Path(r["path"]).resolve()) for r in rows} <= pool
    page = out.with_suffix(".html").read_text()
    assert page.count('<img class="thumb"') == 5 and page.count("<audio controls") == 5
    again = tmp_path / "again.csv"
    assert main(args[:-5] + [str(again)] + args[-4:]) == 0
    assert _rows(again) == rows  # deterministic for a seed


def test_select_skips_labelled_pool_clips_and_reads_embeddings_files(synthetic_corpus, models, tmp_path):
    gallery = tmp_path / "pool.pt"
    assert main(["embed", "--checkpoint", str(models["pretrained"]), str(synthetic_corpus / "train.csv"),
                 "--out", str(gallery), "--num-workers", "0"]) == 0
    labelled = tmp_path / "labelled.csv"
    pool_rows = _rows(synthetic_corpus / "train.csv")
    labelled.write_text("path,label\n" + "".join(f"{synthetic_corpus / r['path']},{r['label']}\n"
                                                  for r in pool_rows[:20]))
    out = tmp_path / "chosen.csv"
    assert main(["select", "--pool", str(gallery), "--budget", "4", "--strategy", "coreset", "--labelled",
                 str(labelled), "--out", str(out)]) == 0
    chosen = {str(Path(r["path"]).resolve()) for r in _rows(out)}
    assert chosen == {str((synthetic_corpus / r["path"]).resolve()) for r in pool_rows[20:]}  # the 4 left
    assert main(["select", "--pool", str(gallery), "--budget", "2", "--strategy", "badge", "--out",
                 str(tmp_path / "x.csv")]) == 2  # BADGE needs a classifier's predictions
