"""The retrieval protocol subset: N clips per class, drawn with a fixed seed.

CAV-MAE (Gong et al., ICLR 2023) reports audio-visual retrieval not over whole test sets but over
subsets of 5 clips per class: one of the AudioSet eval set and one of the VGGSound test set (309
classes, 1,545 clips), released as fixed lists beside `src/retrieval.py` in its repository
(`audioset_eval_5_per_class_for_retrieval_cleaned.json`, `vgg_test_5_per_class_for_retrieval_cleaned.json`);
the code that drew them is not published. R@k depends on how many candidates a query is ranked
among, so figures over a whole test set (about 15,000 VGGSound clips) are not comparable with
those. `per_class_subset` draws a subset of that shape, reproducibly:

- Every clip gets a key: SHA-256 of the seed and the clip's identity (its path relative to the
  folder all the source's videos share, plus its segment). The same seed picks the same clips
  whatever the order of the manifest, on any machine, wherever the dataset folder is.
- Single-label data: the N clips of each class with the smallest keys (all of them when a class
  has fewer than N).
- Multi-label data (AudioSet): a clip counts for every class it carries. Classes are filled from
  the rarest to the most common (ties by name); each takes the smallest-key clips carrying it
  until N of the chosen clips carry it. Every class then holds at least min(N, its clips) clips;
  common classes often hold more (clips drawn for rarer classes carry them too), and the subset
  stays near N x classes clips.

`draw_protocol_subset` applies this to a source after setting aside the clips retrieval cannot
score (files the probe rejects, clips without sound), as CAV-MAE's "cleaned" lists did, so the
per-class counts hold for the clips actually evaluated.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from avssl.data.manifest import ManifestEntry, read_source
from avssl.data.scan import label_names, scan_entries


def entry_classes(entry: ManifestEntry) -> tuple[str, ...]:
    """The classes a manifest entry counts for: its labels (multi-label) or its one label."""
    return label_names(entry, multi_label=True)


def clip_identities(entries: Sequence[ManifestEntry]) -> list[str]:
    """A name for each clip that does not depend on where the dataset folder lies: the path relative
    to the folder all entries share, and the segment (start/end) when the entry has one."""
    if not entries:
        return []
    root = os.path.commonpath([os.path.dirname(e.path) for e in entries])
    return [f"{Path(os.path.relpath(e.path, root)).as_posix()}|{'' if e.start is None else repr(e.start)}|"
            f"{'' if e.end is None else repr(e.end)}" for e in entries]


def check_per_class(per_class: int) -> None:
    """Raise ValueError unless `per_class` is a positive whole number of clips."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive whole number of clips, got {per_class!r}")


def _draw_key(seed: int, identity: str) -> tuple[int, str]:
    digest = hashlib.sha256(f"{seed}|{identity}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big"), identity


def per_class_subset(entries: Sequence[ManifestEntry], per_class: int, seed: int = 0,
                     identities: Sequence[str] | None = None) -> list[ManifestEntry]:
    """At least min(`per_class`, available) clips of every class, exactly that many for single-label
    data, drawn by `seed` (see the module docstring for the rule); in a fixed order (by identity).

    identities: the name each entry's draw is keyed on (default `clip_identities(entries)`); pass
    the identities computed over a larger source to draw from a part of it consistently.
    Entries without a label belong to no class and are never drawn.
    """
    check_per_class(per_class)
    identities = list(identities) if identities is not None else clip_identities(entries)
    if len(identities) != len(entries):
        raise ValueError(f"{len(identities)} identities given for {len(entries)} entries")
    keys = [_draw_key(seed, identity) for identity in identities]
    members: dict[str, list[int]] = {}  # class -> its clips, smallest key first
    for k in sorted(range(len(entries)), key=keys.__getitem__):
        for cls in set(entry_classes(entries[k])):
            members.setdefault(cls, []).append(k)
    chosen: set[int] = set()
    held: Counter = Counter()
    for cls in sorted(members, key=lambda c: (len(members[c]), c)):
        for k in members[cls]:
            if held[cls] >= per_class:
                break
            if k not in chosen:
                chosen.add(k)
                held.update(set(entry_classes(entries[k])))
    return [entries[k] for k in sorted(chosen, key=identities.__getitem__)]


@dataclass
class ProtocolSubset:
    """The clips `draw_protocol_subset` chose and the facts that define them, for a results file."""

    entries: list[ManifestEntry]
    per_class: int
    seed: int
    num_classes: int  # classes among the clips that could be drawn
    classes_below: int  # classes with fewer than per_class usable clips (all of theirs were drawn)
    source_clips: int  # entries of the source
    unusable_clips: int  # rejected by the probe, without sound, or without a label

    def record(self) -> dict[str, Any]:
        """The protocol as JSON-ready facts: N, seed, clip and class counts."""
        return {"name": "per_class", "per_class": self.per_class, "seed": self.seed,
                "num_clips": len(self.entries), "num_classes": self.num_classes,
                "classes_below_per_class": self.classes_below, "source_clips": self.source_clips,
                "unusable_clips": self.unusable_clips}


def draw_protocol_subset(source: str | Path, per_class: int, seed: int = 0, *,
                         probe_cache: str | Path | bool | None = None) -> ProtocolSubset:
    """`per_class_subset` of the labelled clips of `source` (class folders or CSV manifest) that
    retrieval can score: readable by the probe, with sound, with a segment inside the file.
    probe_cache: the probe's cache file (None: its default, False: none)."""
    check_per_class(per_class)
    entries = read_source(source)
    if not any(entry_classes(e) for e in entries):
        raise ValueError(f"{source}: the per-class protocol needs labelled clips (class folders, or a CSV "
                         "manifest with a label or labels column)")
    identities = clip_identities(entries)
    scanned = scan_entries(entries, name=str(source), probe_cache=probe_cache).entries  # as datasets judge them
    usable = [k for k, s in enumerate(scanned) if entry_classes(s.entry) and s.ok and s.info.has_audio]
    candidates = [entries[k] for k in usable]
    chosen = per_class_subset(candidates, per_class, seed, identities=[identities[k] for k in usable])
    counts = Counter(c for e in candidates for c in set(entry_classes(e)))
    return ProtocolSubset(chosen, per_class, seed, num_classes=len(counts),
                          classes_below=sum(1 for n in counts.values() if n < per_class),
                          source_clips=len(entries), unusable_clips=len(entries) - len(usable))
