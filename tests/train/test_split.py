"""The held-out split used when no validation data is given."""
from __future__ import annotations

from collections import Counter

from avssl.data.manifest import ManifestEntry
from avssl.recipes.pretrain import held_out_files


def test_single_label_data_is_split_within_each_class_whatever_the_order():
    entries = [ManifestEntry(f"{c}/{i}.mp4", label=c) for c in "abcd" for i in range(8)]
    held = held_out_files(entries, seed=0, fraction=0.2)
    assert Counter(p.split("/")[0] for p in held) == {c: 2 for c in "abcd"}  # round(8 x 0.2) of each
    assert held_out_files(entries[::-1], seed=0, fraction=0.2) == held
    assert held_out_files(entries, seed=1, fraction=0.2) != held


def test_unlabelled_data_holds_out_about_the_fraction_and_segments_stay_together():
    entries = [ManifestEntry(f"v{i}.mp4", start=s, end=s + 10) for i in range(400) for s in (0.0, 10.0)]
    held = held_out_files(entries, seed=0, fraction=0.25)
    assert len(held) == 100
    assert {e.path for e in entries if e.path in held} == held  # a file's segments are on one side
    multi = [ManifestEntry(f"m{i}.mp4", labels=("x", "y")) for i in range(400)]
    assert len(held_out_files(multi, seed=0, fraction=0.25)) == 100
    few = [ManifestEntry(f"f{i}.mp4") for i in range(3)]
    assert len(held_out_files(few, seed=0, fraction=0.1)) == 1  # at least one file when there are two or more
    assert held_out_files(few, seed=0, fraction=0.0) == set()
