"""`avssl evaluate retrieval --per-class N --seed S` end to end on the tiny checkpoint of the retrieval
CLI tests (its `setup` fixture: 2 classes x 3 videos)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from test_retrieval_cli import setup  # noqa: F401  (the fixture: tiny checkpoint + corpus)

from avssl.cli import main
from avssl.data.manifest import read_source, write_manifest
from avssl.tasks.evaluate import evaluate_retrieval


def test_per_class_protocol_json_and_subset(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    out, subset = setup["root"] / "protocol" / "metrics.json", setup["root"] / "protocol" / "subset.csv"
    code = main(["evaluate", "retrieval", "--checkpoint", str(setup["checkpoint"]), str(setup["corpus"]),
                 "--per-class", "2", "--seed", "3", "--json", str(out), "--subset-csv", str(subset),
                 "--num-workers", "0"])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["protocol"] == {"name": "per_class", "per_class": 2, "seed": 3, "num_clips": 4, "num_classes": 2,
                                   "classes_below_per_class": 0, "source_clips": 6, "unusable_clips": 0}
    assert metrics["num_clips"] == 4 and metrics["chance_R@1"] == 25.0 and 0 <= metrics["v2a_R@1"] <= 100
    drawn = read_source(subset)
    assert sorted(Counter(e.label for e in drawn).values()) == [2, 2]
    assert "per_class=2, seed=3" in capsys.readouterr().out
    # the Python entry point, on a manifest listing the same videos in reverse order: the same clips
    reversed_csv = setup["root"] / "protocol" / "reversed.csv"
    write_manifest(read_source(setup["corpus"])[::-1], reversed_csv)
    again = evaluate_retrieval(setup["checkpoint"], reversed_csv, per_class=2, seed=3,
                               subset_csv=setup["root"] / "protocol" / "again.csv", num_workers=0,
                               show_progress=False)
    assert again["protocol"] == metrics["protocol"] and again["v2a_R@1"] == metrics["v2a_R@1"]
    assert [e.path for e in read_source(setup["root"] / "protocol" / "again.csv")] == [e.path for e in drawn]


def test_protocol_user_errors(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    common = ["evaluate", "retrieval", "--checkpoint", str(setup["checkpoint"]), str(setup["corpus"]),
              "--num-workers", "0"]
    assert main([*common, "--per-class", "0"]) == 2
    assert "per_class must be a positive whole number of clips, got 0" in capsys.readouterr().err
    assert main([*common, "--subset-csv", str(setup["root"] / "x.csv")]) == 2
    assert "give --per-class N too" in capsys.readouterr().err
    unlabelled = ["evaluate", "retrieval", "--checkpoint", str(setup["checkpoint"]),
                  str(setup["corpus"] / "circle_low"), "--per-class", "1"]
    assert main(unlabelled) == 2
    assert "needs labelled clips" in capsys.readouterr().err
