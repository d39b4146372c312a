"""Pseudo-labelling (noisy student): `avssl finetune ... data.unlabeled=SOURCE` learns from few labels
and many unlabeled clips.

Round 0 is the plain fine-tuning recipe on the labelled clips: the first teacher. Each round then
(1) scores every unlabeled clip with the teacher (data.eval_clips x data.eval_crops views averaged),
(2) keeps the confident ones as pseudo labels (`pseudo_label.threshold` / `top_k` per class, `hard`
or `soft`; `avssl.tasks.pseudo_labels`), and (3) fine-tunes a student on labelled + pseudo-labelled
clips with more noise than the teacher had: mixup, drop-path, harder crops and SpecAugment (Xie et
al., CVPR 2020). Labelled and unlabeled clips may each be files or shards (a pool of shards is
streamed as it is, narrowed to the kept clips). The student is the next round's teacher. Its
architecture is the teacher's or, with `pseudo_label.student_model`, a larger one; its weights are
the run's `init` while it keeps the teacher's weight shapes, else random, or
`pseudo_label.student_init` (`student_plan`, decided before round 0 so that an impossible student
fails at once). Every round is a run of `run_finetune` in OUT/round<r>/; OUT/ itself holds
config.yaml, metrics.jsonl (split "pseudo_label": each round's teacher top-1, teacher and student
sizes and pseudo-label statistics), pseudo_labels/round<r>.csv (and .pt: the labels themselves, for a
resumed run) and report.html.

Under torchrun all rounds share one process group: each rank scores a block of the pool and the
blocks are gathered, so every rank chooses the same pseudo labels and trains on its share of the
student set; rank 0 writes OUT's files. `train.resume=true` continues a stopped run: finished rounds
are not redone, a round's saved pseudo labels are reused, the interrupted run resumes from its checkpoint.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from avssl.config import save_config
from avssl.data.shards import is_shard_source
from avssl.models.config import MODEL_CONFIGS, ModelConfig, get_config
from avssl.models.factory import create_model, load_backbone, load_classifier
from avssl.recipes.finetune import FinetuneConfig, FinetuneResult, finished_result, run_finetune
from avssl.tasks.charts import line_chart
from avssl.tasks.markup import Markup, join, tag
from avssl.tasks.pool_predictions import predict_pool
from avssl.tasks.pseudo_labels import (
    PseudoLabels,
    choose_pseudo_labels,
    load_pseudo_labels,
    pseudo_label_stats,
    save_pseudo_labels,
    true_targets,
)
from avssl.tasks.report import table_html, write_page
from avssl.train import distributed as distr
from avssl.train.observe import MetricsLogger, read_metrics

log = logging.getLogger(__name__)

SPLIT = "pseudo_label"  # the metrics.jsonl split of each round's statistics


@dataclass
class StudentPlan:
    """What every round's student is: the `init` and `model:` section of its fine-tuning run, and the
    encoder parameters of it and of round 0's teacher (the run's model)."""

    init: str
    model: ModelConfig
    parameters: int
    teacher_parameters: int


def _weights(config: ModelConfig) -> tuple[dict[str, torch.Size], int]:
    """The weight shapes and parameter count of `config`'s encoders, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = create_model(config)
    return {k: v.shape for k, v in model.state_dict().items()}, model.num_parameters()


def _differences(config: ModelConfig, base: ModelConfig) -> dict[str, object]:
    """The fields of `config` that differ from `base`'s, the name aside."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name != "name" and getattr(config, f.name) != getattr(base, f.name)}


def _section(where: str, name: str, changes: dict[str, object]) -> ModelConfig:
    """A `model:` section, its errors (fields that do not fit together) said as `where`'s."""
    try:
        return ModelConfig.from_config_section(name, **changes)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def student_plan(cfg: FinetuneConfig) -> StudentPlan:
    """The students' architecture and weights (see PseudoLabelConfig.student_model / student_init).
    The teacher is the run's model (with `init`: its weights' config and `model`'s changes); the
    student is it, or the named size `student_model.name`, with student_model's changes, or with an
    explicit `student_init` that folder's weights with them. One-line ValueErrors for a student that
    cannot be: fields that do not fit together, a `student_init` whose weights `student_model` would
    reshape or rename, a new architecture from weights of no named size."""
    pl = cfg.pseudo_label
    changes = dict(pl.student_model)
    name = changes.pop("name", None)
    teacher = cfg.model if cfg.init == "none" else load_backbone(cfg.init, cfg.model).config
    teacher_shapes, teacher_parameters = _weights(teacher)
    if pl.student_init not in ("auto", "none"):  # the weights set the architecture, as `init` does the run's
        if name is not None:
            raise ValueError(f"pseudo_label.student_init={pl.student_init} sets the students' architecture (its "
                             f"weights'), so pseudo_label.student_model.name={name} cannot: drop one of the two")
        weights = load_backbone(pl.student_init).config
        model = _section("pseudo_label.student_model", cfg.model.name, changes)  # the name is the weights'
        student = dataclasses.replace(weights, **changes)
        shapes, parameters = _weights(student)
        if shapes != _weights(weights)[0]:
            raise ValueError(f"pseudo_label.student_model={pl.student_model} changes the shapes of the weights in "
                             f"pseudo_label.student_init={pl.student_init}: set student_init=none to train that "
                             "student from random weights, or keep only shape-keeping changes (drop_path)")
        return StudentPlan(pl.student_init, model, parameters, teacher_parameters)
    try:
        student = dataclasses.replace(get_config(name) if name else teacher, **changes)
    except ValueError as err:
        raise ValueError(f"pseudo_label.student_model={pl.student_model}: {err}") from None
    shapes, parameters = _weights(student)
    if pl.student_init == "auto" and cfg.init != "none" and shapes == teacher_shapes:
        model = _section("pseudo_label.student_model", cfg.model.name,
                         {**cfg.model.changes(), **_differences(student, teacher)})
        return StudentPlan(cfg.init, model, parameters, teacher_parameters)
    if student.name not in MODEL_CONFIGS:
        raise ValueError(f"pseudo_label.student_model={pl.student_model}: the teacher's architecture ({student.name}, "
                         f"from init={cfg.init}) is no named size, so a random-weight student needs one: set "
                         f"pseudo_label.student_model.name to one of {', '.join(MODEL_CONFIGS)}")
    model = _section("pseudo_label.student_model", student.name,
                     _differences(student, MODEL_CONFIGS[student.name]))
    return StudentPlan("none", model, parameters, teacher_parameters)


def _log_plan(cfg: FinetuneConfig, plan: StudentPlan) -> None:
    """Say what the students are and where their weights come from; warn when they are smaller than the teacher."""
    if plan.init != "none":
        start = plan.init
    elif cfg.init != "none" and cfg.pseudo_label.student_init == "auto":
        start = f"random weights (init={cfg.init}'s do not fit its shapes)"
    else:
        start = "random weights"
    log.info("students: %s (%.2fM encoder parameters; the first teacher %.2fM) from %s", plan.model.config_section(),
             plan.parameters / 1e6, plan.teacher_parameters / 1e6, start)
    if plan.parameters < plan.teacher_parameters:
        log.warning("the student is smaller than the teacher: noisy student wants one at least as large "
                    "(pseudo_label.student_model)")


def student_config(cfg: FinetuneConfig, round_dir: Path, plan: StudentPlan) -> FinetuneConfig:
    """The student's recipe: `cfg` in `round_dir` with the student's init and model (`plan`) and the
    pseudo_label section's noise on top: its mixup and drop-path where larger than the recipe's, its
    crop scale and SpecAugment masks."""
    pl = cfg.pseudo_label
    model = ModelConfig.from_config_section(plan.model.name, **{**plan.model.changes(),
                                                                "drop_path": max(pl.drop_path, plan.model.drop_path)})
    augment = dataclasses.replace(cfg.data.augment, crop_scale=pl.crop_scale, freq_mask=pl.freq_mask,
                                  time_mask=pl.time_mask)
    return dataclasses.replace(cfg, out=str(round_dir), init=plan.init, model=model,
                               data=dataclasses.replace(cfg.data, augment=augment),
                               head=dataclasses.replace(cfg.head, mixup=max(pl.mixup, cfg.head.mixup)))


def teacher_labels(cfg: FinetuneConfig, teacher_run: Path, device: torch.device
                   ) -> tuple[PseudoLabels, list[str], list[str]]:
    """The best checkpoint of `teacher_run` (on `device`) scores every clip of `data.unlabeled`
    (files or shards; under torchrun each rank a block of it, `predict_pool`, every rank then
    choosing the same labels): (pseudo labels, classes, the pool's files)."""
    teacher = load_classifier(teacher_run, device)
    data = cfg.data
    outputs = predict_pool(teacher, data.unlabeled, batch_size=data.val_batch_size or data.batch_size,
                           num_workers=data.num_workers, model_config=teacher.config, clips=data.eval_clips,
                           crops=1 if teacher.mode == "audio" else data.eval_crops, num_frames=data.num_frames,
                           frame_size=data.frame_size, clip_duration=data.clip_duration, seed=cfg.seed,
                           short=data.short_videos)
    labels = choose_pseudo_labels(outputs.values, outputs.paths, cfg.pseudo_label, teacher.multi_label)
    if is_shard_source(data.unlabeled):  # the student streams the pool's shards, narrowed to the kept clips
        labels.source = data.unlabeled
    return labels, list(teacher.classes), outputs.paths


def write_pseudo_labels(path: Path, pool_paths: list[str], labels: PseudoLabels, classes: list[str]) -> Path:
    """Every pool clip's hard pseudo label (`;`-separated classes), confidence and whether it was kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels", "confidence", "kept"])
        for row, clip in enumerate(pool_paths):
            names = ";".join(classes[c] for c in labels.hard[row].nonzero().flatten().tolist())
            writer.writerow([clip, names, f"{float(labels.confidence[row]):.4f}", int(labels.kept[row])])
    return path


def _labels_file(out: Path, round_: int) -> Path:
    """Where round `round_`'s pseudo labels are kept for a resumed run (`save_pseudo_labels`)."""
    return out / "pseudo_labels" / f"round{round_}.pt"


def _new_labels(cfg: FinetuneConfig, round_: int, teacher: FinetuneResult, plan: StudentPlan,
                ctx: distr.DistContext, metrics: MetricsLogger) -> PseudoLabels:
    """The teacher's pseudo labels (the same on every rank); rank 0 logs their statistics with both
    models' sizes and writes OUT/pseudo_labels/round<r>.csv, then the labels themselves (`_labels_file`,
    last: once they are there, the round's labelling is done)."""
    out = Path(cfg.out)
    labels, classes, pool_paths = teacher_labels(cfg, teacher.run_dir, ctx.device)
    if ctx.is_main:
        truth = true_targets(cfg.pseudo_label.truth, pool_paths, classes) if cfg.pseudo_label.truth else None
        stats = pseudo_label_stats(labels, classes, truth)
        sizes = {"teacher_params_M": (plan.teacher_parameters if round_ == 1 else plan.parameters) / 1e6,
                 "student_params_M": plan.parameters / 1e6}
        metrics.log(SPLIT, round_, {"teacher_top1": teacher.top1, **sizes, **stats})
        write_pseudo_labels(out / "pseudo_labels" / f"round{round_}.csv", pool_paths, labels, classes)
        save_pseudo_labels(_labels_file(out, round_), labels)
        log.info("round %d: teacher top-1 %.2f, %d of %d unlabeled clips pseudo-labelled%s", round_, teacher.top1,
                 int(stats["kept"]), int(stats["pool"]),
                 f", {stats['agreement_kept']:.1f} % agree with the truth" if truth is not None else "")
    if not labels.paths:
        log.warning("round %d: no clip reached the confidence threshold %g: the student trains on the labelled "
                    "clips only", round_, cfg.pseudo_label.threshold)
    return labels


def _round(cfg: FinetuneConfig, round_: int, teacher: FinetuneResult, plan: StudentPlan, ctx: distr.DistContext,
           metrics: MetricsLogger, saved: bool) -> FinetuneResult:
    """One round: the teacher's pseudo labels (`saved`: those an interrupted run kept), then the
    student's run (resumed from its last checkpoint when train.resume is set)."""
    out = Path(cfg.out)
    if saved:
        labels = load_pseudo_labels(_labels_file(out, round_))
        log.info("round %d: the pseudo labels saved in %s (%d clips)", round_, _labels_file(out, round_),
                 len(labels.paths))
    else:
        labels = _new_labels(cfg, round_, teacher, plan, ctx, metrics)
    return run_finetune(student_config(cfg, out / f"round{round_}", plan), labels if labels.paths else None)


def _progress(cfg: FinetuneConfig, ctx: distr.DistContext) -> tuple[dict[int, FinetuneResult], int]:
    """What a stopped run left in OUT, as rank 0 finds it before this run writes anything, for every
    rank to act on: (the results of the rounds whose run finished, 0 being the first teacher's; how
    many rounds from round 1 on have their pseudo labels saved). Nothing without train.resume."""
    out, rounds = Path(cfg.out), cfg.pseudo_label.rounds
    done: dict[int, FinetuneResult] = {}
    labelled = 0
    if cfg.train.resume and ctx.is_main:
        results = {r: finished_result(out / f"round{r}", cfg.train.epochs) for r in range(rounds + 1)}
        done = {r: result for r, result in results.items() if result is not None}
        if done:
            log.info("resuming %s: round(s) %s finished before, read back, not redone", out,
                     ", ".join(map(str, done)))
        while labelled < rounds and _labels_file(out, labelled + 1).is_file():
            labelled += 1
    return distr.from_main((done, labelled))


def run_pseudo_label(cfg: FinetuneConfig) -> FinetuneResult:
    """Round 0's teacher, then `pseudo_label.rounds` students (see the module's docstring); returns
    the last student's result. Under torchrun every round runs on all ranks in one process group;
    rank 0 writes OUT's files. With train.resume=true a run that was stopped goes on where it stopped:
    finished rounds are read back, not redone, a round whose pseudo labels were saved trains its
    student on them, and the run that was cut short resumes from its last checkpoint."""
    if not cfg.data.unlabeled:
        raise ValueError("pseudo-labelling needs data.unlabeled=SOURCE (folder, CSV or shards) of unlabeled clips")
    if not isinstance(cfg.train.resume, bool):
        raise ValueError(f"train.resume={cfg.train.resume}: pseudo-labelling resumes its rounds from its own folder: "
                         f"train.resume=true with out={cfg.out}")
    plan = student_plan(cfg)
    _log_plan(cfg, plan)
    out = Path(cfg.out)
    ctx = distr.init_distributed(cfg.train.device)  # one group for all rounds: each run_finetune joins it
    try:
        done, labelled = _progress(cfg, ctx)
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out / "config.yaml")
        metrics = MetricsLogger(out, enabled=ctx.is_main, loggers=(),
                                resume_step=labelled if cfg.train.resume else None)
        try:
            result = _run_rounds(cfg, plan, ctx, metrics, done, labelled)
        finally:
            metrics.close()
        if ctx.is_main:
            pseudo_label_report(out)
        return result
    finally:
        distr.cleanup()


def _run_rounds(cfg: FinetuneConfig, plan: StudentPlan, ctx: distr.DistContext, metrics: MetricsLogger,
                done: dict[int, FinetuneResult], labelled: int) -> FinetuneResult:
    """Every round not `done` (see `_progress`), until one is stopped; the last student, once it
    finished, is scored as the teacher of a round that is not run."""
    out, rounds = Path(cfg.out), cfg.pseudo_label.rounds
    result = done.get(0) or run_finetune(dataclasses.replace(cfg, out=str(out / "round0")))
    for round_ in range(1, rounds + 1):
        if result.status != "finished":
            return result
        result = done.get(round_) or _round(cfg, round_, result, plan, ctx, metrics, saved=round_ <= labelled)
    if result.status == "finished":
        metrics.log(SPLIT, rounds + 1, {"teacher_top1": result.top1})
    return result


def pseudo_label_report(run_dir: str | Path) -> Path:
    """OUT/report.html of a pseudo-labelling run: each round's teacher top-1 and agreement with the
    truth (chart and table), clips kept, per-class counts and the confidence histogram."""
    rounds = read_metrics(run_dir, SPLIT)
    keys = sorted({k for r in rounds for k in r} - {"split", "step", "time"})
    groups = {prefix: [k for k in keys if k.startswith(prefix)] for prefix in ("count/", "confidence_hist/")}
    headline = [k for k in ("teacher_top1", "teacher_params_M", "student_params_M", "kept", "kept_fraction",
                            "mean_confidence_kept", "agreement_kept", "agreement_all") if k in keys]

    def table(columns: list[str], prefix: str = "") -> Markup:
        rows = [[r["step"]] + [float(r.get(c, float("nan"))) for c in columns] for r in rounds if
                any(c in r for c in columns)]
        return table_html(["round"] + [c.removeprefix(prefix) for c in columns], rows)

    chart = line_chart({k: [(float(r["step"]), float(r[k])) for r in rounds if k in r]
                        for k in ("teacher_top1", "agreement_kept") if k in keys},
                       title="teacher top-1 and pseudo-label agreement (%) per round", xlabel="round")
    body = join([
        tag("p", "Round r's teacher is round r-1's student (round 1: the plain fine-tune on the labelled clips); "
            "the last row's teacher is the final student. Agreement: percent of the pseudo labels equal to the "
            "truth file's (pseudo_label.truth), never used for training.", class_="muted"),
        tag("figure", chart), tag("h2", "Per round"), table(headline),
        tag("h2", "Pseudo-labelled clips per class"), table(groups["count/"], "count/"),
        tag("h2", "Teacher confidence on the unlabeled pool (fraction of clips per bin)"),
        table(groups["confidence_hist/"], "confidence_hist/"),
    ])
    return write_page(Path(run_dir) / "report.html", "avssl pseudo-labelling", body)
