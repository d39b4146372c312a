"""Damaged and odd video files: each is accepted and decodes, or is rejected with a reason.

The files come from benchmarks/fuzz.py (which runs thousands; see its docstring for the verdicts),
derived with a fixed seed from tiny valid videos in every container: byte flips, truncations,
zeroed headers and ranges, renamed and resized MP4 boxes, containers under another suffix, and
files that must be rejected. Each file is checked in a worker process with a timeout, so a hang
fails the test instead of stopping the suite.
"""
from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

from avssl.data.probe import probe_file

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("avssl_fuzz_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


fuzz = _load_benchmark()


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return fuzz.write_bases(tmp_path_factory.mktemp("fuzz_bases"))


def test_every_fuzzed_file_is_accepted_and_decodes_or_rejected_with_a_reason(bases, tmp_path):
    cases = fuzz.make_cases(bases, tmp_path, 60, seed=0)
    assert {case.kind for case in cases} == {fuzz.VALID, fuzz.REJECT, fuzz.CORRUPT}
    wrong = [f"{verdict}: {case.path.name} ({case.kind}, {case.how}): {answer['detail']}"
             for case, answer, verdict in fuzz.run_cases(cases, timeout=20.0) if verdict != "fine"]
    assert wrong == []


@pytest.mark.parametrize("name", ["h264.mp4", "h264.mov"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_absurd_video_clock_is_rejected(bases, tmp_path, name, seed):
    # timescale 1 and a huge sample delta: this probed "ok" at 1e11 s, and samplers cut windows per second
    path = tmp_path / name
    path.write_bytes(fuzz.absurd_clock(bases[name].read_bytes(), random.Random(seed)))
    info = probe_file(path)
    assert not info.ok and info.reason.startswith("absurd duration ("), info


def test_a_file_without_an_answer_in_time_counts_as_a_hang_and_the_worker_is_replaced(bases, tmp_path):
    first, second = fuzz.make_cases(bases, tmp_path, 2, seed=0)
    worker = fuzz._Worker()
    try:
        assert worker.check(first, timeout=0.0)["outcome"] == "hang"
        assert worker.check(second, timeout=20.0)["outcome"] in ("accepted", "rejected")
    finally:
        worker.close()


def test_the_benchmark_judges_outcomes_as_documented():
    assert fuzz.judge(fuzz.VALID, "rejected") == "wrongly rejected"
    assert fuzz.judge(fuzz.REJECT, "accepted") == "wrongly accepted"
    assert fuzz.judge(fuzz.CORRUPT, "undecodable") == "wrongly accepted"
    assert fuzz.judge(fuzz.CORRUPT, "rejected") == fuzz.judge(fuzz.CORRUPT, "accepted") == "fine"
    assert fuzz.judge(fuzz.VALID, "hang") == "hang" and fuzz.judge(fuzz.CORRUPT, "crash") == "crash"
