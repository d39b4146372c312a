"""The reduced learning benchmark: the shipped tiny recipe learns on the hard synthetic corpus.

Runs `benchmarks/learning.py --quick` (a smaller hard corpus, one seed, the documented CLI end to end)
and fails when held-out retrieval is not clearly above chance: the guard against a recipe that only
learns on the easy corpus it was tuned on.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_recipe_learns_on_the_hard_corpus(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "learning.py"), "--quick", "--corpora", "sparse", "--seeds", "0",
         "--no-finetune", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = json.loads((tmp_path / "results.json").read_text())["sparse"]["0"]
    chance = row["chance_R@1"]
    assert row["v2a_R@1"] >= 3 * chance, row
    assert row["a2v_R@1"] >= 3 * chance, row
    assert row["audio_emb_cos"] < 0.95 and row["video_emb_cos"] < 0.95, row
