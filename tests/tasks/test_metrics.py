"""Retrieval metrics on hand-built similarity structures with known ranks."""
from __future__ import annotations

import torch

from avssl.tasks.metrics import cross_modal_retrieval, recall_metrics, retrieval_ranks


def test_ranks_match_known_values():
    queries = torch.eye(4)
    # candidate i is query i, except candidates are permuted so ranks are known
    candidates = torch.tensor(
        [[1.0, 0.0, 0.0, 0.0], [0.9, 0.5, 0.0, 0.0], [0.0, 0.0, 0.2, 0.9], [0.0, 0.0, 0.0, 0.1]]
    )
    ranks = retrieval_ranks(queries, candidates)
    # q0: c0=1.0 vs c1=0.9 -> rank 1; q1: c1=0.5 best -> 1; q2: c2=0.2 only one -> 1; q3: c2=0.9 > c3=0.1 -> 2
    assert ranks.tolist() == [1, 1, 1, 2]


def test_ties_count_against_the_query_and_chunking_is_exact():
    torch.manual_seed(0)
    constant = torch.ones(50, 8)
    assert (retrieval_ranks(constant, constant) == 50).all()
    q, c = torch.randn(300, 16), torch.randn(300, 16)
    assert torch.equal(retrieval_ranks(q, c, chunk=7), retrieval_ranks(q, c, chunk=1000))
    rows = [q[i] @ c.T for i in range(300)]
    reference = torch.tensor([int((row >= row[i]).sum()) for i, row in enumerate(rows)])
    assert torch.equal(retrieval_ranks(q, c), reference)


def test_recall_and_both_directions():
    metrics = recall_metrics(torch.tensor([1, 2, 6, 11]), ks=(1, 5, 10))
    assert metrics == {"R@1": 25.0, "R@5": 50.0, "R@10": 75.0, "median_rank": 4.0, "mean_rank": 5.0}
    emb = torch.nn.functional.normalize(torch.randn(20, 8), dim=1)
    perfect = cross_modal_retrieval(emb, emb, ks=(1,))
    assert perfect["v2a_R@1"] == 100.0 and perfect["a2v_R@1"] == 100.0


def test_median_rank_of_an_even_count_is_the_mean_of_the_middle_pair():
    """numpy's (and CAV-MAE's evaluation's) median: 2.5 for [1, 2, 3, 4], not torch.median's lower 2."""
    import numpy as np
    assert recall_metrics(torch.tensor([1, 2, 3, 4]), ks=(1,))["median_rank"] == 2.5
    ranks = torch.randint(1, 100, (10,))
    assert recall_metrics(ranks, ks=(1,))["median_rank"] == float(np.median(ranks.numpy()))
    assert recall_metrics(torch.tensor([3, 1, 2]), ks=(1,))["median_rank"] == 2.0
