"""benchmarks/objectives.py runs a variant end to end through the CLI and reports its columns (a smoke
run: the easy corpus, one epoch, one objective with sync, no fine-tuning)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_objectives_benchmark_reports_sync_and_diagnostics(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "objectives.py"), "--quick", "--corpora", "easy", "--seeds", "0",
         "--objectives", "barlow", "--sync", "on", "--epochs", "1", "--no-finetune", "--step-count", "1",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = json.loads((tmp_path / "results.json").read_text())["easy/barlow/on"]["0"]
    assert {"v2a_R@1", "class_P@1", "sync_acc", "sync_chance", "emb_rank", "warnings", "step_s", "peak_mb"} <= set(row)
    assert row["sync_chance"] == pytest.approx(100 / 9)
    assert math.isnan(row.pop("gallery_R@1"))  # 8 test clips: too few for galleries of 24
    assert row["step_s"] > 0 and row["peak_mb"] > 0 and all(math.isfinite(v) for v in row.values())
    assert "| easy | barlow | on |" in done.stdout
    config = (tmp_path / "easy-barlow-sync_on-seed0" / "pretrain" / "config.yaml").read_text()
    assert "alignment: barlow" in config and "sync_weight: 0.5" in config
