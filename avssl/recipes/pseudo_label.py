"""Pseudo-labelling (noisy student): `avssl finetune ... data.unlabeled=SOURCE` learns from few labels
and many unlabeled clips.

Round 0 is the plain fine-tuning recipe on the labelled clips: the first teacher. Each round then
(1) scores every unlabeled clip with the teacher (data.eval_clips x data.eval_crops views averaged),
(2) keeps the confident ones as pseudo labels (`pseudo_label.threshold` / `top_k` per class, `hard`
or `soft`; `avssl.tasks.pseudo_labels`), and (3) fine-tunes a student from the same initialisation
(`init`, the teacher's architecture) on labelled + pseudo-labelled clips with more noise than the
teacher had: mixup, drop-path, harder crops and SpecAugment (Xie et al., CVPR 2020). The student is
the next round's teacher. Every round is a run of `run_finetune` in OUT/round<r>/; OUT/ itself holds
config.yaml, metrics.jsonl (split "pseudo_label": each round's teacher top-1 and pseudo-label
statistics), pseudo_labels/round<r>.csv and report.html.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path

from avssl.config import save_config
from avssl.data.shards import is_shard_source
from avssl.models.config import ModelConfig
from avssl.models.factory import load_classifier
from avssl.recipes.finetune import FinetuneConfig, FinetuneResult, run_finetune
from avssl.tasks.charts import line_chart
from avssl.tasks.markup import Markup, join, tag
from avssl.tasks.pseudo_labels import (
    PseudoLabels,
    choose_pseudo_labels,
    pseudo_label_stats,
    true_targets,
)
from avssl.tasks.report import table_html, write_page
from avssl.tasks.video_eval import multi_view_dataset, predict_videos
from avssl.train.distributed import pick_device
from avssl.train.observe import MetricsLogger, read_metrics

log = logging.getLogger(__name__)

SPLIT = "pseudo_label"  # the metrics.jsonl split of each round's statistics


def student_config(cfg: FinetuneConfig, round_dir: Path) -> FinetuneConfig:
    """The student's recipe: `cfg` in `round_dir` with the pseudo_label section's noise on top: its
    mixup and drop-path where larger than the recipe's, its crop scale and SpecAugment masks."""
    pl = cfg.pseudo_label
    model = ModelConfig.from_config_section(cfg.model.name, **{**cfg.model.changes(),
                                                               "drop_path": max(pl.drop_path, cfg.model.drop_path)})
    augment = dataclasses.replace(cfg.data.augment, crop_scale=pl.crop_scale, freq_mask=pl.freq_mask,
                                  time_mask=pl.time_mask)
    return dataclasses.replace(cfg, out=str(round_dir), model=model,
                               data=dataclasses.replace(cfg.data, augment=augment),
                               head=dataclasses.replace(cfg.head, mixup=max(pl.mixup, cfg.head.mixup)))


def teacher_labels(cfg: FinetuneConfig, teacher_run: Path) -> tuple[PseudoLabels, list[str], list[str]]:
    """The best checkpoint of `teacher_run` scores every clip of `data.unlabeled`: (pseudo labels,
    classes, the pool's files)."""
    teacher = load_classifier(teacher_run, pick_device(cfg.train.device))
    data = cfg.data
    pool = multi_view_dataset(data.unlabeled, model_config=teacher.config, clips=data.eval_clips,
                              crops=1 if teacher.mode == "audio" else data.eval_crops, num_frames=data.num_frames,
                              frame_size=data.frame_size, clip_duration=data.clip_duration, seed=cfg.seed,
                              short=data.short_videos)
    outputs = predict_videos(teacher, pool, batch_size=data.val_batch_size or data.batch_size,
                             num_workers=data.num_workers)
    labels = choose_pseudo_labels(outputs.values, outputs.paths, cfg.pseudo_label, teacher.multi_label)
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


def _round(cfg: FinetuneConfig, round_: int, teacher: FinetuneResult, metrics: MetricsLogger) -> FinetuneResult:
    """One round: the teacher's pseudo labels, their statistics (logged, and written to
    OUT/pseudo_labels/round<r>.csv), then the student's run."""
    out = Path(cfg.out)
    labels, classes, pool_paths = teacher_labels(cfg, teacher.run_dir)
    truth = true_targets(cfg.pseudo_label.truth, pool_paths, classes) if cfg.pseudo_label.truth else None
    stats = pseudo_label_stats(labels, classes, truth)
    metrics.log(SPLIT, round_, {"teacher_top1": teacher.top1, **stats})
    write_pseudo_labels(out / "pseudo_labels" / f"round{round_}.csv", pool_paths, labels, classes)
    log.info("round %d: teacher top-1 %.2f, %d of %d unlabeled clips pseudo-labelled%s", round_, teacher.top1,
             int(stats["kept"]), int(stats["pool"]),
             f", {stats['agreement_kept']:.1f} % agree with the truth" if truth is not None else "")
    if not labels.paths:
        log.warning("round %d: no clip reached the confidence threshold %g: the student trains on the labelled "
                    "clips only", round_, cfg.pseudo_label.threshold)
    return run_finetune(student_config(cfg, out / f"round{round_}"), labels if labels.paths else None)


def run_pseudo_label(cfg: FinetuneConfig) -> FinetuneResult:
    """Round 0's teacher, then `pseudo_label.rounds` students (see the module's docstring); returns
    the last student's result."""
    if not cfg.data.unlabeled:
        raise ValueError("pseudo-labelling needs data.unlabeled=SOURCE (folder, CSV) of unlabeled clips")
    for key in ("train", "unlabeled"):
        if is_shard_source(getattr(cfg.data, key)):
            raise ValueError(f"data.{key}={getattr(cfg.data, key)}: pseudo-labelling reads files, folders or CSV "
                             "manifests (training on shards plus pseudo labels is not supported yet)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    result = run_finetune(dataclasses.replace(cfg, out=str(out / "round0")))
    metrics = MetricsLogger(out, loggers=())
    try:
        for round_ in range(1, cfg.pseudo_label.rounds + 1):
            if result.status != "finished":
                break
            result = _round(cfg, round_, result, metrics)
        else:  # the last student, scored as the teacher of a round that is not run
            metrics.log(SPLIT, cfg.pseudo_label.rounds + 1, {"teacher_top1": result.top1})
    finally:
        metrics.close()
    pseudo_label_report(out)
    return result


def pseudo_label_report(run_dir: str | Path) -> Path:
    """OUT/report.html of a pseudo-labelling run: each round's teacher top-1 and agreement with the
    truth (chart and table), clips kept, per-class counts and the confidence histogram."""
    rounds = read_metrics(run_dir, SPLIT)
    keys = sorted({k for r in rounds for k in r} - {"split", "step", "time"})
    groups = {prefix: [k for k in keys if k.startswith(prefix)] for prefix in ("count/", "confidence_hist/")}
    headline = [k for k in ("teacher_top1", "kept", "kept_fraction", "mean_confidence_kept", "agreement_kept",
                            "agreement_all") if k in keys]

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
