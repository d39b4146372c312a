"""Which class a mirrored clip shows: labels that survive a horizontal flip.

A mirror turns a clip of something moving left into one moving right, and clockwise into
counterclockwise; up, down and most classes ("dog barking") are unchanged. Rather than turning the
flip off for such labels, training can swap them on every mirrored clip, so a clip of "swipe left"
also teaches "swipe right" (mmaction2's Flip calls this a flip label map).

`MirrorLabels` pairs the classes of a dataset: by name (``flip_labels: auto``: "left" <-> "right",
"clockwise" <-> "counterclockwise" / "anticlockwise", as whole words in any case or separator), plus
explicit `pairs` for names it cannot read. A class whose name has a direction but whose mirror
class is not in the dataset is never mirrored; a class without one is its own mirror.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch

_WORDS = re.compile(r"(?<![a-z])(counter[-_ ]?clockwise|anti[-_ ]?clockwise|clockwise|leftwards?|rightwards?|left|right)"
                    r"(?![a-z])")
_SWAP = {"clockwise": "counterclockwise", "counterclockwise": "clockwise", "left": "right", "right": "left",
         "leftward": "rightward", "rightward": "leftward", "leftwards": "rightwards", "rightwards": "leftwards"}


def _canonical(name: str) -> str:
    """Lower case, with counter-/anti-clockwise spelt "counterclockwise" (how names are compared)."""
    return re.sub(r"(counter|anti)[-_ ]?clockwise", "counterclockwise", name.lower())


def mirrored_name(name: str) -> str:
    """`name` with its horizontal directions swapped, in canonical form (lower case): "Swipe Left" ->
    "swipe right"; a name without one comes back canonical and otherwise unchanged."""
    return _WORDS.sub(lambda m: _SWAP[m.group(1)], _canonical(name))


class MirrorLabels:
    """For each class of `classes`, the class its mirrored clips show (itself when its name has no
    horizontal direction), or none when its mirror class is missing. `mode` "keep" leaves every label
    as it is (flip as if labels did not depend on direction); `pairs` adds pairs of class names (both
    ways) to those read from the names in mode "auto"."""

    def __init__(self, classes: Sequence[str], mode: str = "auto", pairs: Mapping[str, str] | None = None) -> None:
        if mode not in ("auto", "keep"):
            raise ValueError(f"flip_labels must be 'auto' or 'keep', got {mode!r}")
        pairs = dict(pairs or {})
        unknown = sorted({n for pair in pairs.items() for n in pair} - set(classes))
        if unknown:
            raise ValueError(f"flip_pairs names {unknown[0]!r}, which is not one of the {len(classes)} classes")
        self.classes = list(classes)
        index = {_canonical(c): k for k, c in enumerate(self.classes)}
        self.target: list[int | None] = list(range(len(self.classes)))
        if mode == "auto":
            self.target = [index.get(mirrored_name(c)) for c in self.classes]
        for first, second in pairs.items():
            a, b = self.classes.index(first), self.classes.index(second)
            self.target[a], self.target[b] = b, a

    @property
    def complete(self) -> bool:
        """Every class has a mirror class, so any clip may be mirrored, labelled or not."""
        return all(t is not None for t in self.target)

    def swaps(self) -> list[tuple[str, str]]:
        """The pairs of distinct classes a mirror swaps, each once."""
        return [(self.classes[k], self.classes[t]) for k, t in enumerate(self.target) if t is not None and k < t]

    def unmirrored(self) -> list[str]:
        """The classes whose clips are never mirrored (a direction without its mirror class)."""
        return [c for c, t in zip(self.classes, self.target) if t is None]

    def describe(self) -> str:
        """What a mirror does to the labels, in words, for run logs and reports ("" when nothing)."""
        parts = [f"labels swapped: {', '.join(f'{a} <-> {b}' for a, b in self.swaps())}"] if self.swaps() else []
        if self.unmirrored():
            parts.append(f"never flipped (no mirror class): {', '.join(self.unmirrored())}")
        return "; ".join(parts)

    def mirror(self, label: torch.Tensor) -> torch.Tensor | None:
        """The label of `label`'s clip mirrored, or None when it must not be mirrored. `label`: an int64
        class index (-1: not known yet, mirrored only when the pairing is `complete`) or a float (C,)
        target (multi-hot, soft), whose every class must have a mirror class."""
        if label.ndim == 0:
            k = int(label)
            if k < 0:
                return label if self.complete else None
            target = self.target[k]
            return None if target is None else torch.tensor(target, dtype=torch.int64)
        present = torch.nonzero(label).flatten().tolist()
        if any(self.target[k] is None for k in present):
            return None
        mirrored = torch.zeros_like(label)
        for k in present:
            mirrored[self.target[k]] = label[k]
        return mirrored
