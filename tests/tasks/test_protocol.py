"""The retrieval protocol subset: N clips per class, the same for a seed whatever the file order."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from avssl.data.manifest import ManifestEntry
from avssl.tasks.protocol import clip_identities, draw_protocol_subset, entry_classes, per_class_subset


def single_label(root: str = "/data/vgg", sizes: dict[str, int] | None = None) -> list[ManifestEntry]:
    """sizes[c] clips of class c, as root/<c>/<i>.mp4."""
    sizes = sizes or {"dog": 7, "rain": 4, "violin": 1}
    return [ManifestEntry(f"{root}/{c}/{i}.mp4", label=c) for c, n in sizes.items() for i in range(n)]


def class_counts(entries: list[ManifestEntry]) -> Counter:
    return Counter(c for e in entries for c in entry_classes(e))


def names(entries: list[ManifestEntry]) -> list[str]:
    return clip_identities(entries)


def test_single_label_takes_n_per_class_or_all_of_a_small_class() -> None:
    subset = per_class_subset(single_label(), 3, seed=0)
    assert class_counts(subset) == {"dog": 3, "rain": 3, "violin": 1}
    assert class_counts(per_class_subset(single_label(), 10, seed=0)) == {"dog": 7, "rain": 4, "violin": 1}


def test_multi_label_every_class_reaches_n_rarest_first() -> None:
    entries = [ManifestEntry(f"/as/{i}.mp4", labels=labels) for i, labels in enumerate(
        [("Speech",)] * 12 + [("Speech", "Dog")] * 3 + [("Dog",)] * 2 + [("Bell", "Speech")] * 2
        + [("Bell",)] + [("Music", "Speech")] * 6)]
    subset = per_class_subset(entries, 2, seed=5)
    counts = class_counts(subset)
    assert all(counts[c] >= 2 for c in ("Speech", "Dog", "Bell", "Music")), counts
    # Bell (3 clips) is filled first, then Dog (5), Music (6), Speech (23): Speech gets its 2 from the
    # clips drawn for the others as soon as two of them carry it, so nothing is drawn for it alone
    assert len(subset) <= 2 * 3 and counts["Speech"] >= 2
    for seed in range(20):  # whatever the draw, no class is short and at most N x classes clips are taken
        drawn = per_class_subset(entries, 2, seed=seed)
        assert min(class_counts(drawn)[c] for c in ("Speech", "Dog", "Bell", "Music")) >= 2
        assert len(drawn) <= 2 * 4


def test_same_seed_same_clips_whatever_the_order_or_the_folder() -> None:
    entries = single_label(sizes={"dog": 20, "rain": 20})
    first = names(per_class_subset(entries, 4, seed=7))
    shuffled = entries[:]
    random.Random(1).shuffle(shuffled)
    assert names(per_class_subset(shuffled, 4, seed=7)) == first
    moved = single_label(root="/mnt/elsewhere/vggsound", sizes={"dog": 20, "rain": 20})
    assert names(per_class_subset(moved, 4, seed=7)) == first


def test_different_seeds_draw_different_clips() -> None:
    entries = single_label(sizes={"dog": 20, "rain": 20})
    draws = {tuple(names(per_class_subset(entries, 4, seed=seed))) for seed in range(5)}
    assert len(draws) == 5


def test_segments_of_one_file_are_different_clips() -> None:
    entries = [ManifestEntry("/v/long.mp4", label="a", start=float(s), end=float(s + 10)) for s in range(0, 50, 10)]
    subset = per_class_subset(entries, 2, seed=0)
    assert len(subset) == 2 and len({e.start for e in subset}) == 2


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_per_class_must_be_a_positive_whole_number(bad) -> None:
    with pytest.raises(ValueError, match="positive whole number"):
        per_class_subset(single_label(), bad)


def test_draw_sets_aside_clips_retrieval_cannot_score(write_test_video, tmp_path: Path) -> None:
    for name in ("a/0.mp4", "a/1.mp4", "a/2.mp4", "b/0.mp4"):
        write_test_video(name)
    write_test_video("a/silent.mp4", audio=False)
    (tmp_path / "b" / "broken.mkv").write_bytes(b"not a video " * 50)
    subset = draw_protocol_subset(tmp_path, 2, seed=0, probe_cache=False)
    assert class_counts(subset.entries) == {"a": 2, "b": 1}
    assert not any(e.path.endswith(("silent.mp4", "broken.mkv")) for e in subset.entries)
    assert subset.record() == {"name": "per_class", "per_class": 2, "seed": 0, "num_clips": 3, "num_classes": 2,
                               "classes_below_per_class": 1, "source_clips": 6, "unusable_clips": 2}
    with pytest.raises(ValueError, match="needs labelled clips"):
        draw_protocol_subset(tmp_path / "a", 2, probe_cache=False)  # one folder of videos: no classes
