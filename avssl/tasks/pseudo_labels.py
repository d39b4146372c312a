"""Pseudo-labels: which unlabeled clips a teacher's predictions label, with what targets, and how good
they look (Lee 2013; Xie et al., "Self-training with Noisy Student", CVPR 2020).

`choose_pseudo_labels(probs, cfg)` keeps the clips the teacher is confident about (a threshold, and /
or the top-k most confident of each predicted class, which keeps the classes balanced) and gives each
a target: hard (one-hot, or multi-hot of the classes above 0.5) or soft (the probabilities).
`pseudo_label_stats` summarises a round: clips kept, per-class counts, a confidence histogram, and
agreement with the true labels where a labels file or the pool's shards say them. `pseudo_labelled`
serves the labelled clips and the pseudo-labelled ones as one training set with float targets:
`PseudoLabelled` for files, an `Interleaved` stream when either part is shards (the pool's shards are
narrowed to the kept clips, found by their files, and streamed as they are). `save_pseudo_labels` /
`load_pseudo_labels` keep a round's labels for a resumed run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from avssl.config import NON_EMPTY, Check, OneOf, Range, at_least, key_hint
from avssl.data.datasets import ClipDataset
from avssl.data.interleave import Interleaved
from avssl.data.manifest import read_source
from avssl.data.mirror import MirrorLabels
from avssl.data.shard_index import is_shard_source, labels_by_file, packed_videos_of
from avssl.data.shards import ShardDataset
from avssl.models.config import ModelConfig, config_fields, get_config
from avssl.train.distributed import rank_and_world_size

HISTOGRAM_BINS = 10  # confidence histogram: equal bins over [0, 1]


@dataclass
class PseudoLabelConfig:
    """The `pseudo_label:` section of `avssl finetune` (used when `data.unlabeled` is set): rounds of
    teacher -> pseudo labels -> noisier student (the teacher's size or larger: `student_model`), each
    student the next round's teacher."""

    rounds: int = 1  # students trained one after the other (round 0's teacher is the plain fine-tune)
    threshold: float = 0.5  # keep clips whose confidence (top probability) is at least this; 0 keeps all
    top_k: int = 0  # besides the threshold: at most the k most confident clips per predicted class; 0: no cap
    labels: Literal["hard", "soft"] = "hard"  # one-hot / multi-hot targets, or the teacher's probabilities
    # the student's noise on top of the recipe's: mixup, drop-path, harder crops and SpecAugment
    mixup: float = 0.5
    drop_path: float = 0.1
    crop_scale: tuple[float, float] = (0.2, 1.0)
    freq_mask: int = 48
    time_mask: float = 0.3
    # optional true labels of the unlabeled clips (a manifest, or shards written with labels):
    # agreement is measured, never used
    truth: str = ""
    # the students' architecture: changes to the teacher's (`depth: 3`), or a named size and changes to
    # it (`name: small`); empty: the teacher's. Its numbers are checked by ModelConfig.RANGES
    student_model: dict[str, Any] = field(default_factory=dict)
    # the students' weights: "auto" (the run's init when student_model keeps the teacher's weight shapes,
    # else none), "none" (random), or a checkpoint / run / weights folder, whose architecture the
    # students then have (student_model may only change what keeps its shapes, e.g. drop_path)
    student_init: str = "auto"

    RANGES: ClassVar[dict[str, Check]] = {  # checked by avssl.config.validate_config
        "rounds": at_least(1), "threshold": Range(0.0, 1.0), "top_k": at_least(0), "labels": OneOf(("hard", "soft")),
        "mixup": at_least(0.0), "drop_path": Range(0.0, 1.0, high_open=True), "freq_mask": at_least(0),
        "time_mask": Range(0.0, 1.0), "crop_scale": Range(0.0, 1.0, low_open=True), "student_init": NON_EMPTY,
    }

    def __post_init__(self) -> None:
        check_student_model(self.student_model)


def check_student_model(section: dict[str, Any]) -> None:
    """Raise ValueError for a `student_model` key that is no ModelConfig field, an unknown `name`, or a
    value out of its ModelConfig range; how the values fit together is checked once the teacher is known."""
    valid = config_fields()
    for key, value in section.items():
        if key not in valid:
            raise ValueError(f"student_model.{key}: unknown model config key{key_hint(key, valid)}")
        check = ModelConfig.RANGES.get(key)
        values = value if isinstance(value, (list, tuple)) else (value,)
        if check is not None and not all(check.accepts(v) for v in values):
            raise ValueError(f"student_model.{key}={value!r}: must be {check}")
    if "name" in section:
        try:
            get_config(str(section["name"]))
        except ValueError as err:
            raise ValueError(f"student_model.name: {err}") from None


@dataclass
class PseudoLabels:
    """The clips a teacher labelled: their files and targets (K, C), every pool clip's facts, and
    what the student opens to read the kept clips."""

    paths: list[str]  # the kept clips' files
    targets: torch.Tensor  # (K, C) float: hard 0/1 or the teacher's probabilities
    kept: torch.Tensor  # (N,) bool over the pool
    confidence: torch.Tensor  # (N,) the teacher's confidence of each pool clip
    hard: torch.Tensor  # (N, C) 0/1: the predicted class (multi-label: classes above 0.5)
    # the kept files (`paths`) or, for a pool of shards, its source, which `pseudo_labelled` narrows to them
    source: str | list[str]

    def by_file(self) -> dict[str, torch.Tensor]:
        """The kept clips' targets by absolute file path."""
        return {os.path.abspath(p): t for p, t in zip(self.paths, self.targets)}


def choose_pseudo_labels(probs: torch.Tensor, paths: list[str], cfg: PseudoLabelConfig,
                         multi_label: bool = False) -> PseudoLabels:
    """Pseudo labels from a teacher's probabilities (N, C) of the pool clips `paths`. Confidence: the
    top probability (multi-label: of the most probable class). A clip is kept when its confidence
    reaches `cfg.threshold` and, with `cfg.top_k`, it is among the k most confident kept clips of its
    predicted class (multi-label: of any class it is predicted to hold)."""
    probs = probs.float()
    confidence, top = probs.max(dim=1)
    hard = (probs > 0.5).float() if multi_label else F.one_hot(top, probs.shape[1]).float()
    kept = confidence >= cfg.threshold
    if cfg.top_k:
        capped = torch.zeros_like(kept)
        for c in range(probs.shape[1]):
            members = (kept & (hard[:, c] > 0)).nonzero().flatten()
            order = torch.sort(probs[members, c], descending=True, stable=True).indices[:cfg.top_k]
            capped[members[order]] = True
        kept = capped
    rows = kept.nonzero().flatten()
    targets = probs[rows] if cfg.labels == "soft" else hard[rows]
    kept_paths = [paths[k] for k in rows.tolist()]
    return PseudoLabels(kept_paths, targets, kept, confidence, hard, list(kept_paths))


def save_pseudo_labels(path: Path, labels: PseudoLabels) -> Path:
    """Write `labels` to `path` whole or not at all (aside first, then renamed in): a resumed run
    reads them back (`load_pseudo_labels`) instead of asking the teacher again, so its student
    trains on the very labels the interrupted one did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.tmp")
    torch.save({f.name: getattr(labels, f.name) for f in fields(labels)}, aside)
    os.replace(aside, path)
    return path


def load_pseudo_labels(path: Path) -> PseudoLabels:
    """The pseudo labels `save_pseudo_labels` wrote (tensors, strings and lists: no code unpickled)."""
    return PseudoLabels(**torch.load(path, weights_only=True))


def true_targets(truth: str, paths: list[str], classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) 0/1 true labels of `paths` from `truth` (a manifest, or shards written with labels),
    and (N,) bool: which paths it labels (classes it names that the classifier does not know count as none)."""
    index = {c: i for i, c in enumerate(classes)}
    by_path = labels_by_file(truth) if is_shard_source(truth) else {
        os.path.abspath(e.path): e.labels or ((e.label,) if e.label else ()) for e in read_source(truth)}
    target = torch.zeros(len(paths), len(classes))
    known = torch.zeros(len(paths), dtype=torch.bool)
    for row, path in enumerate(paths):
        names = by_path.get(os.path.abspath(path))
        if names:
            known[row] = True
            target[row, [index[n] for n in names if n in index]] = 1.0
    return target, known


def pseudo_label_stats(labels: PseudoLabels, classes: list[str], truth: tuple[torch.Tensor, torch.Tensor] | None
                       = None) -> dict[str, float]:
    """One round's numbers: clips kept (count, fraction, mean confidence), `count/<class>` of kept
    clips per class, `confidence_hist/<lo>-<hi>` (fraction of pool clips per confidence bin) and,
    with `truth` (`true_targets`), `agreement_kept` / `agreement_all`: percent of labelled clips
    whose hard pseudo label equals the truth (all classes, for multi-label), kept and all."""
    kept = labels.kept
    stats = {"pool": float(len(kept)), "kept": float(kept.sum()), "kept_fraction": float(kept.float().mean()),
             "mean_confidence_kept": float(labels.confidence[kept].mean()) if kept.any() else float("nan")}
    counts = labels.hard[kept].sum(dim=0)
    stats.update({f"count/{name}": float(n) for name, n in zip(classes, counts)})
    hist = torch.histc(labels.confidence, bins=HISTOGRAM_BINS, min=0.0, max=1.0) / max(len(kept), 1)
    stats.update({f"confidence_hist/{k / HISTOGRAM_BINS:.1f}-{(k + 1) / HISTOGRAM_BINS:.1f}": float(v)
                  for k, v in enumerate(hist)})
    if truth is not None:
        target, known = truth
        agree = (labels.hard == target).all(dim=1)
        for name, rows in (("agreement_kept", known & kept), ("agreement_all", known)):
            stats[name] = float(agree[rows].float().mean() * 100) if rows.any() else float("nan")
    return stats


class _Targets:
    """Gives an item (a dict, or a list of them with several clips) a float (C,) `label` target: with
    `by_file`, the target of its file (its mirror classes' when the clip was mirrored: `mirror`); else
    its own label as one target (one-hot; multi-hot as it is)."""

    def __init__(self, num_classes: int, multi_label: bool, by_file: dict[str, torch.Tensor] | None = None,
                 mirror: MirrorLabels | None = None) -> None:
        self.num_classes, self.multi_label, self.by_file, self.mirror = num_classes, multi_label, by_file, mirror

    def __call__(self, item: dict | list[dict]) -> dict | list[dict]:
        if isinstance(item, list):
            return [self(row) for row in item]
        if self.by_file is not None:
            target = self.by_file[os.path.abspath(item["path"])]
            if item.get("mirrored") and self.mirror is not None:
                target = self.mirror.mirror(target)
            return {**item, "label": target}
        label = item["label"]
        return {**item, "label": label if self.multi_label else F.one_hot(label, self.num_classes).float()}


class PseudoLabelled(Dataset):
    """The labelled training clips followed by the pseudo-labelled ones, as one map-style dataset whose
    every `label` is a float (C,) target (a labelled clip's one-hot or multi-hot; a pseudo-labelled
    clip's target, looked up by its file). Sizes, classes and epochs are the labelled set's."""

    def __init__(self, labelled: ClipDataset, unlabeled: ClipDataset, labels: PseudoLabels) -> None:
        self.labelled, self.unlabeled = labelled, unlabeled
        self.classes, self.multi_label = labelled.classes, labelled.multi_label
        self.rejected = labelled.rejected + unlabeled.rejected
        self.silent_videos = labelled.silent_videos + unlabeled.silent_videos
        self.num_videos = labelled.num_videos + unlabeled.num_videos
        self._own = _Targets(len(self.classes), self.multi_label)
        self._pseudo = _Targets(len(self.classes), self.multi_label, labels.by_file(), labelled.mirror)

    def augmentations(self) -> str:
        """The random augmentations of the clips (both parts share them)."""
        return self.labelled.augmentations()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of both parts."""
        self.labelled.set_epoch(epoch)
        self.unlabeled.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.labelled) + len(self.unlabeled)

    def __getitem__(self, index: int) -> dict | list[dict]:
        if index < len(self.labelled):
            return self._own(self.labelled[index])
        return self._pseudo(self.unlabeled[index - len(self.labelled)])


def pseudo_labelled(labelled: ClipDataset | ShardDataset, unlabeled: ClipDataset | ShardDataset,
                    labels: PseudoLabels) -> PseudoLabelled | Interleaved:
    """The student's training set: the labelled clips and the pseudo-labelled ones, every `label` a
    float (C,) target. `unlabeled` is `labels.source` opened as training clips: the kept files, or
    the pool's shards, narrowed here to the kept clips. Both files: a `PseudoLabelled`; else an
    `Interleaved` stream of the two, which ranks and workers split as they split shards."""
    if isinstance(unlabeled, ShardDataset):
        pool_shards = len(unlabeled.urls)
        unlabeled = unlabeled.only_videos(packed_videos_of(unlabeled.urls, labels.paths))
        ranks = rank_and_world_size()[1]
        if len(unlabeled.urls) < ranks:  # each rank streams shards of its own
            raise ValueError(f"the {len(labels.paths)} pseudo-labelled clips lie in {len(unlabeled.urls)} of the "
                             f"pool's {pool_shards} shards, fewer than the {ranks} ranks: keep more clips "
                             "(pseudo_label.threshold / top_k) or write the pool in smaller shards (avssl shard "
                             "--shard-size)")
    if labelled.mirror is not None:  # the pool's clips are mirrored as the labelled ones, by their pseudo labels
        unlabeled.pair_mirrored_classes(labelled.classes, like=labelled.mirror)
    if not isinstance(labelled, ShardDataset) and not isinstance(unlabeled, ShardDataset):
        return PseudoLabelled(labelled, unlabeled, labels)
    num_classes, multi_label = len(labelled.classes), labelled.multi_label
    return Interleaved([labelled, unlabeled], seed=labelled.seed, relabel=[
        _Targets(num_classes, multi_label), _Targets(num_classes, multi_label, labels.by_file(), labelled.mirror)])
