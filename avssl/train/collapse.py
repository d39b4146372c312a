"""Collapse diagnostics: is each tower still spreading its clips out, and is the contrastive term learning?

A collapsed tower maps every clip to (nearly) one point; its retrieval falls to chance and the
alignment loss sits at its no-information level (InfoNCE's ln(B), SwAV's ln(K); Barlow Twins and
VICReg have none, so only the spread warnings watch them), while the reconstruction terms can keep falling, so the loss curve
alone hides it. The pure functions here measure the spread of a set of vectors (torch tensors in,
floats out); `collapse_metrics` gathers them into the flat dict each validation records, and
`CollapseMonitor` turns that dict into warnings in the log and in the run folder's
`collapse_warnings.txt`.

References: effective rank, Roy & Vetterli (EUSIPCO 2007); alignment and uniformity on the
hypersphere, Wang & Isola (ICML 2020); per-dimension std of normalised outputs as a collapse
signal, Chen & He (SimSiam, CVPR 2021).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

COLLAPSED_COS = 0.95  # mean pairwise cosine of a modality's embeddings above this: that tower has collapsed
CHANCE_TOLERANCE = 0.02  # an alignment loss within 2 % of its no-information level is at chance
# what each objective's no-information level (`val_contrastive_chance`, from the loss's chance_level) is;
# objectives without one (Barlow Twins, VICReg) get no chance warning
CHANCE_LEVELS = {"infonce": ("contrastive loss", "B", "clips per validation batch"),
                 "swav": ("SwAV loss", "K", "SwAV prototypes")}
# what to try first when an objective's loss sits at its level, before the general TRAINING_ADVICE
CHANCE_ADVICE = {"swav": ("SwAV's predictions are uniform over its prototypes, where cross-modal swapped prediction "
                          "can stay (benchmarks/README.md, objectives.py): with small batches set model.swav_queue "
                          "(about 15 batches of clips); when what picture and sound share is faint, "
                          "model.alignment=infonce or vicreg; ")}
WARNINGS_FILE = "collapse_warnings.txt"
TRAINING_ADVICE = ("when the shared event is small or brief (most pixels and most of the spectrogram are "
                   "nuisance), the tiny recipe's model.input_norm=clip, model.contrastive_view=full, "
                   "model.time_bins and model.proj_norm=batch (the pretrain/tiny recipe); else try a larger "
                   "model.contrastive_weight, a lower train.lr or a longer train.warmup_epochs "
                   "(benchmarks/README.md)")
MODALITIES = ("video", "audio")


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Mean cosine similarity between distinct rows of x (N, D), N >= 2.

    1 when every row points the same way (collapse); about 0 for rows spread over the sphere.
    """
    unit = F.normalize(x.double(), dim=-1)
    n = unit.shape[0]
    total = unit.sum(dim=0).square().sum()  # sum over all (i, j) of cos(x_i, x_j), diagonal included
    diagonal = unit.square().sum()
    return float((total - diagonal) / (n * (n - 1)))


def normalized_std(x: torch.Tensor) -> float:
    """Per-dimension standard deviation of the L2-normalised rows of x (N, D), averaged over dimensions.

    0 when every row is the same point; about 1/sqrt(D) for rows spread uniformly over the sphere
    (SimSiam's collapse signal), so it compares across widths once multiplied by sqrt(D).
    """
    unit = F.normalize(x.double(), dim=-1)
    return float(unit.std(dim=0, correction=0).mean())


def effective_rank(x: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of x (N, D) after centring (Roy & Vetterli 2007).

    How many directions the set really uses: between 1 and min(N - 1, D). Scale-invariant, so read it
    with `normalized_std`: tiny noise around one point still scores high. A set with no spread at all
    (centred matrix zero at float precision) scores 1, the measure's floor.
    """
    x = x.double()
    centred = x - x.mean(dim=0, keepdim=True)
    singular = torch.linalg.svdvals(centred)
    if float(singular.sum()) <= 1e-9 * max(float(x.norm()), 1e-300):
        return 1.0
    p = singular / singular.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def spread(x: torch.Tensor) -> dict[str, float]:
    """The three spread measures of x (N, D), N >= 2: "cos", "std" and "rank"."""
    return {"cos": mean_pairwise_cosine(x), "std": normalized_std(x), "rank": effective_rank(x)}


def alignment(video_emb: torch.Tensor, audio_emb: torch.Tensor) -> float:
    """Mean squared distance between paired L2-normalised rows (Wang & Isola 2020, alpha = 2).

    video_emb, audio_emb: (N, D), row i of each is a pair (normalised here again). 0 when each pair
    coincides, 2 for orthogonal pairs, 4 for opposite ones: lower means better aligned pairs.
    """
    v, a = F.normalize(video_emb.double(), dim=-1), F.normalize(audio_emb.double(), dim=-1)
    return float((v - a).square().sum(dim=-1).mean())


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """log mean over pairs i != j of exp(-t ||x_i - x_j||^2) of the L2-normalised rows of x (N, D), N >= 2
    (Wang & Isola 2020).

    0 when every row is the same point (collapse); more negative means spread more evenly over the
    sphere (-2t for mutually orthogonal rows, as squared distances are then 2).
    """
    unit = F.normalize(x.double(), dim=-1)
    distances = torch.pdist(unit).square()  # each unordered pair once: the mean over i != j is the same
    return float(torch.logsumexp(-t * distances, dim=0) - math.log(distances.numel()))


def collapse_metrics(features: Mapping[str, torch.Tensor], embeddings: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The diagnostics of one validation as one flat dict of floats (empty with fewer than 2 clips).

    features: modality ("video", "audio") -> (N, D) pooled features before the projection;
    embeddings: modality -> (N, P) L2-normalised embeddings after it; row i of every tensor is clip i.
    Keys: `<m>_feat_cos|std|rank`, `<m>_emb_cos|std|rank` and `<m>_uniformity` per modality, and
    `alignment` of the paired embeddings when both modalities are given. Features and embeddings
    are both measured because a projection can collapse over features that still differ, and the
    other way round.
    """
    if min(len(x) for x in (*features.values(), *embeddings.values())) < 2:
        return {}
    metrics: dict[str, float] = {}
    for stage, vectors in (("feat", features), ("emb", embeddings)):
        for modality, x in vectors.items():
            metrics.update({f"{modality}_{stage}_{name}": value for name, value in spread(x).items()})
    for modality, x in embeddings.items():
        metrics[f"{modality}_uniformity"] = uniformity(x)
    if all(m in embeddings for m in MODALITIES):
        metrics["alignment"] = alignment(embeddings["video"], embeddings["audio"])
    return metrics


def chance_warning(metrics: Mapping[str, float], objective: str = "infonce") -> str | None:
    """The warning for a validation alignment loss at chance, or None (always for an objective without
    a no-information level, `CHANCE_LEVELS`).

    Reads `val_loss_contrastive` and `val_contrastive_chance` (the mean over validation batches of the
    loss when its scores carry no information: InfoNCE's ln(B), B the clips of the batch that have
    sound; SwAV's ln(K), K its prototypes).
    """
    loss, chance = metrics.get("val_loss_contrastive"), metrics.get("val_contrastive_chance")
    if objective not in CHANCE_LEVELS or loss is None or chance is None or chance <= 0 \
            or abs(loss - chance) > CHANCE_TOLERANCE * chance:
        return None
    name, count, counted = CHANCE_LEVELS[objective]
    return (f"the {name} is at chance (ln {count}): val_loss_contrastive {loss:.3f} vs ln {count} {chance:.3f} "
            f"({count} = {math.exp(chance):.0f} {counted}), so video and audio are not being matched; "
            f"{CHANCE_ADVICE.get(objective, '')}{TRAINING_ADVICE}, and check that the clips have sound and that each clip's picture and sound "
            "show the same event")


def spread_warning(metrics: Mapping[str, float], modality: str) -> str | None:
    """The warning for a collapsed tower (`<modality>_emb_cos` above `COLLAPSED_COS`), or None."""
    cos = metrics.get(f"{modality}_emb_cos")
    if cos is None or cos <= COLLAPSED_COS:
        return None
    advice = ("check that the audio is not silent or near-silent (`avssl probe`) and that its clips hold the "
              "sound of the shared event" if modality == "audio" else
              "check that the frames are not blank or static and that they show the shared event")
    return (f"the {modality} embeddings have collapsed: mean pairwise cosine {cos:.3f} > {COLLAPSED_COS} "
            f"(effective rank {metrics.get(f'{modality}_emb_rank', float('nan')):.2f}), so every clip maps "
            f"to nearly one point; {advice}; also {TRAINING_ADVICE}")


def read_warnings(run_dir: str | Path) -> list[tuple[int, str]]:
    """The (epoch, message) pairs in a run folder's collapse_warnings.txt (none when it is missing)."""
    path = Path(run_dir) / WARNINGS_FILE
    if not path.is_file():
        return []
    pairs = (line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)
    return [(int(epoch), message) for epoch, message in pairs]


def _epoch_ranges(epochs: Iterable[int]) -> str:
    """Sorted epochs as compact ranges: 2, 3, 4, 7 -> "2-4, 7"."""
    runs: list[list[int]] = []
    for epoch in sorted(set(epochs)):
        if runs and epoch == runs[-1][-1] + 1:
            runs[-1].append(epoch)
        else:
            runs.append([epoch])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def summarize_warnings(warnings: Sequence[tuple[int, str]], last_epoch: int | None) -> str:
    """One line on a run's collapse warnings (`read_warnings`), saying whether the last validation
    (`last_epoch`) still raised any: early warnings a run recovered from read differently from a
    run that ended collapsed."""
    if not warnings:
        return "no collapse warnings"
    epochs = {epoch for epoch, _ in warnings}
    line = f"{len(warnings)} collapse warning(s) in epochs {_epoch_ranges(epochs)}"
    if last_epoch is None:
        return line
    state = "still warned" if last_epoch in epochs else "none"
    return f"{line}; {state} at the last validation (epoch {last_epoch})"


class CollapseMonitor:
    """Looks at each validation's metrics and warns about collapse, after the warm-up.

    Checks start with the first validation after epoch ceil(warmup_epochs): while the learning
    rate is still rising a loss near ln(B) and bunched embeddings are normal. `objective` (the model's
    `alignment`) says which chance rule applies (`chance_warning`); the spread warnings apply to all. Each warning is
    logged (module logger, WARNING) and, with `run_dir`, written to `collapse_warnings.txt` as
    `epoch<TAB>message` lines. metrics.jsonl holds only floats, so the count of each validation
    goes there (`after_validation`) and the text goes to the file.
    """

    def __init__(self, warmup_epochs: float, run_dir: str | Path | None = None, objective: str = "infonce") -> None:
        self.first_epoch = math.ceil(warmup_epochs) + 1
        self.objective = objective
        self.path = None if run_dir is None else Path(run_dir) / WARNINGS_FILE

    def check(self, epoch: int, metrics: Mapping[str, float]) -> list[str]:
        """The warnings for the validation after `epoch` epochs (logged, and recorded with `run_dir`)."""
        found = [chance_warning(metrics, self.objective)] + [spread_warning(metrics, m) for m in MODALITIES]
        messages = [m for m in found if m is not None] if epoch >= self.first_epoch else []
        for message in messages:
            log.warning("epoch %d: %s", epoch, message)
        if self.path is not None:
            self._record(epoch, messages)
        return messages

    def after_validation(self, epoch: int, metrics: Mapping[str, float]) -> dict[str, float]:
        """`check` as a Trainer hook: the number of warnings, recorded with the validation's metrics."""
        return {"collapse_warnings": float(len(self.check(epoch, metrics)))}

    def _record(self, epoch: int, messages: list[str]) -> None:
        # rewritten each time: lines of this epoch or later are from an earlier attempt (a resumed
        # run repeats epochs after its checkpoint, a fresh run in an old folder starts over)
        kept = [(e, m) for e, m in read_warnings(self.path.parent) if e < epoch]
        lines = [f"{e}\t{m}\n" for e, m in kept + [(epoch, m) for m in messages]]
        self.path.write_text("".join(lines))
