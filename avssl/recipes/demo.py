"""The demo recipe (`avssl demo`): the whole story on a CPU in minutes, with nothing to download.

1. write a labelled synthetic audio-visual corpus (`avssl.data.synthetic.make_corpus`);
2. pretrain the tiny model on its training split (`run_pretrain`);
3. cross-modal retrieval on the held-out split: pretrained vs. a randomly initialised model of
   the same shape;
4. fine-tune action recognition with the same few labels from the pretrained weights and from
   scratch (`run_finetune`), and fit a linear probe on each one's frozen features (`linear_probe`);
5. write `<out>/report.html` and `<out>/results.json`.

The settings are `DemoConfig`'s defaults (avssl/configs/demo.yaml repeats them, commented), so the demo
runs from an installed package as well as from the repository. Every stage is timed; the default
sizes were chosen so the whole run stays well under ten minutes on a 2-core CPU (see `budget_s`).
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

import torch

from avssl.config import NON_EMPTY, SEED, Check, Range, above, at_least, save_config, validate_config
from avssl.data.augment import PretrainAugmentConfig
from avssl.data.synthetic import CLASSES, make_corpus
from avssl.models.config import ModelConfig
from avssl.models.factory import create_model, load_model
from avssl.models.weights import resolve_checkpoint
from avssl.tasks.embed import Embeddings, embed_source
from avssl.tasks.evaluate import retrieval_metrics, write_json
from avssl.recipes.finetune import FinetuneConfig, FinetuneDataConfig, FinetuneResult, HeadConfig, run_finetune
from avssl.tasks.linear_probe import linear_probe
from avssl.tasks.report import RetrievalExample, demo_page
from avssl.tasks.retrieval import RetrievalIndex
from avssl.train.config import TrainConfig
from avssl.recipes.pretrain import DataConfig, PretrainConfig, run_pretrain

log = logging.getLogger(__name__)


@dataclass
class CorpusConfig:
    """The synthetic corpus (`make_corpus` arguments)."""

    num_classes: int = 4
    videos_per_class: int = 30
    duration: float = 3.0
    size: int = 64
    fps: int = 16
    val_fraction: float = 0.2

    RANGES: ClassVar[dict[str, Check]] = {  # checked by avssl.config.validate_config
        "num_classes": Range(1, len(CLASSES)), "videos_per_class": at_least(2), "duration": above(0.0),
        "size": at_least(16), "fps": at_least(1), "val_fraction": Range(0.0, 1.0, low_open=True, high_open=True),
    }


def _pretrain_defaults() -> PretrainConfig:
    # the pretrain/tiny recipe at batch 16 (the demo's corpus is larger); data sources and
    # `out` are filled in by the demo; SpecAugment on, as tiny.yaml sets it (pretraining's default: off)
    return PretrainConfig(
        model=ModelConfig.from_config_section("tiny", contrastive_weight=1.0, temperature=0.1),
        data=DataConfig(batch_size=16, num_workers=1, augment=PretrainAugmentConfig(freq_mask=48, time_mask=0.2)),
        train=TrainConfig(epochs=30, lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95), warmup_epochs=1.0, log_every=2),
    )


def _finetune_defaults() -> FinetuneConfig:
    # video-only action recognition; `init`, data sources and `out` are filled in by the demo
    return FinetuneConfig(
        model=ModelConfig.from_config_section("tiny"),
        mode="video",
        data=FinetuneDataConfig(batch_size=4, num_workers=1, eval_clips=2, eval_crops=1),
        train=TrainConfig(epochs=15, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05, warmup_epochs=1.0, log_every=3),
        head=HeadConfig(label_smoothing=0.1, layer_decay=0.75),
    )


@dataclass
class DemoConfig:
    """Everything `avssl demo` reads (`-c demo`, a YAML file and dotted overrides are optional)."""

    out: str = "runs/demo"
    seed: int = 0
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    labels_per_class: int = 3  # labelled training videos per class both fine-tuning runs get
    examples: int = 3  # retrieval examples shown in the report
    top_k: int = 3  # matches per example
    budget_s: float = 600.0  # a warning is logged when the run takes longer
    pretrain: PretrainConfig = field(default_factory=_pretrain_defaults)
    finetune: FinetuneConfig = field(default_factory=_finetune_defaults)

    RANGES: ClassVar[dict[str, Check]] = {
        "out": NON_EMPTY, "seed": SEED, "labels_per_class": at_least(1), "examples": at_least(0),
        "top_k": at_least(1), "budget_s": above(0.0),
    }


@dataclass
class DemoResult:
    """Where the report is and the numbers it leads with."""

    report: Path
    retrieval: dict[str, dict[str, float]]  # "pretrained" / "random init" -> metrics
    finetune: dict[str, dict[str, float]]  # "pretrained" / "scratch" -> top1, top5, probe_top1
    timings: dict[str, float]  # stage -> seconds
    wall_time: float

    def headline(self) -> list[str]:
        """The numbers the demo prints: retrieval R@1 and fine-tuning top-1, each against its baseline."""
        pre, rnd = self.retrieval["pretrained"], self.retrieval["random init"]
        ft, scratch = self.finetune["pretrained"], self.finetune["scratch"]
        return [
            f"retrieval on held-out clips, pretrained vs random init: R@1 video->audio {pre['v2a_R@1']:.1f} vs "
            f"{rnd['v2a_R@1']:.1f} %, audio->video {pre['a2v_R@1']:.1f} vs {rnd['a2v_R@1']:.1f} % "
            f"(chance {pre['chance_R@1']:.1f} %); top match of the query's class "
            f"{_class_p1(pre):.1f} vs {_class_p1(rnd):.1f} %",
            f"action recognition top-1 with the same few labels: fine-tuned from pretrained {ft['top1']:.1f} %, "
            f"from scratch {scratch['top1']:.1f} %; linear probe on frozen features {ft['probe_top1']:.1f} % "
            f"vs {scratch['probe_top1']:.1f} %",
            f"wall time {self.wall_time:.0f} s",
        ]


def _class_p1(metrics: dict[str, float]) -> float:
    """Same-class precision at 1, averaged over both directions (NaN for unlabelled data)."""
    return (metrics.get("v2a_class_P@1", float("nan")) + metrics.get("a2v_class_P@1", float("nan"))) / 2


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    log.info("demo: %s ...", name)
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start
    log.info("demo: %s took %.1f s", name, timings[name])


def few_labels(train_csv: Path, out_csv: Path, per_class: int) -> Path:
    """The first `per_class` training videos of each class, as a manifest beside the corpus' paths."""
    with open(train_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if len(kept.setdefault(row["label"], [])) < per_class:
            kept[row["label"]].append(row)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for label_rows in kept.values():
            writer.writerows([str((train_csv.parent / r["path"]).resolve()), r["label"]] for r in label_rows)
    return out_csv


def retrieval_examples(embeddings: Embeddings, count: int, k: int) -> list[RetrievalExample]:
    """Nearest sounds for the frames of one held-out clip per class (up to `count` clips)."""
    index = RetrievalIndex(embeddings)
    label_of = {p: int(l) for p, l in zip(embeddings.paths, embeddings.labels.tolist())}
    names = embeddings.classes

    def name(label: int) -> str:
        return names[label] if 0 <= label < len(names) else "?"

    examples, seen = [], set()
    for row, label in enumerate(embeddings.labels.tolist()):
        if label in seen or len(examples) == count:
            continue
        seen.add(label)
        matches = index.search(embeddings.video_emb[row], k, target="audio")
        examples.append(RetrievalExample(
            embeddings.paths[row], float(embeddings.clip_start[row]), float(embeddings.clip_end[row]), name(label),
            matches, [name(label_of[m.path]) for m in matches],
        ))
    return examples


def _finetune(cfg: DemoConfig, init: str, train_csv: Path, val_csv: Path, out: Path) -> FinetuneResult:
    data = dataclasses.replace(cfg.finetune.data, train=str(train_csv), val=str(val_csv))
    run = dataclasses.replace(cfg.finetune, out=str(out), init=init, seed=cfg.seed, data=data)
    return run_finetune(run)


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run the five stages into `cfg.out`; returns the report path, the numbers and the timings."""
    validate_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "demo_config.yaml")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    c = cfg.corpus

    with _stage(timings, "synthetic corpus"):
        corpus = make_corpus(out / "corpus", num_classes=c.num_classes, videos_per_class=c.videos_per_class,
                             duration=c.duration, size=c.size, fps=c.fps, seed=cfg.seed, val_fraction=c.val_fraction)
        train_csv, val_csv = corpus / "train.csv", corpus / "val.csv"

    with _stage(timings, "pretraining"):
        data = dataclasses.replace(cfg.pretrain.data, train=str(train_csv), val=str(val_csv))
        pre_cfg = dataclasses.replace(cfg.pretrain, out=str(out / "pretrain"), seed=cfg.seed, data=data)
        fit = run_pretrain(pre_cfg)
        if fit.status != "finished":
            raise RuntimeError(f"pretraining stopped early ({fit.status}); see {pre_cfg.out}")
        # the last checkpoint, not the best: "best" was chosen on the held-out clips reported below
        checkpoint = resolve_checkpoint(pre_cfg.out, "last")

    workers = cfg.pretrain.data.num_workers
    with _stage(timings, "retrieval evaluation"):
        pretrained = load_model(checkpoint).eval()
        torch.manual_seed(cfg.seed)
        random_init = create_model(pretrained.config).eval()
        embedded = {name: embed_source(model, val_csv, num_workers=workers, show_progress=False)
                    for name, model in (("pretrained", pretrained), ("random init", random_init))}
        retrieval = {name: retrieval_metrics(emb) for name, emb in embedded.items()}
        examples = retrieval_examples(embedded["pretrained"], cfg.examples, cfg.top_k)

    labelled = few_labels(train_csv, out / "few_labels.csv", cfg.labels_per_class)
    runs: dict[str, FinetuneResult] = {}
    for name, init in (("pretrained", str(checkpoint)), ("scratch", "none")):
        with _stage(timings, f"fine-tuning from {name}"):
            runs[name] = _finetune(cfg, init, labelled, val_csv, out / f"finetune-{name}")
    with _stage(timings, "linear probes"):
        probes = {name: linear_probe(backbone, labelled, val_csv, mode=cfg.finetune.mode, num_workers=workers)
                  for name, backbone in (("pretrained", pretrained), ("scratch", random_init))}
    finetune = {name: {"top1": r.top1, "top5": r.top5, "probe_top1": probes[name]["top1"]}
                for name, r in runs.items()}

    with _stage(timings, "report"):
        wall = time.perf_counter() - start
        result = DemoResult(out / "report.html", retrieval, finetune, timings, wall)
        demo_page(
            result.report, summary=result.headline()[:2] + [_settings(cfg, labelled)], pretrain_run=pre_cfg.out,
            retrieval=retrieval, examples=examples, finetune=finetune,
            finetune_runs={name: r.run_dir for name, r in runs.items()},
            confusion_png=runs["pretrained"].confusion_png, timings=timings,
            audio_rate=pretrained.config.audio_rate, pretrain_augment=pre_cfg.data.augment.describe(),
            finetune_augment=cfg.finetune.data.augment.describe(),
        )
    result.wall_time = time.perf_counter() - start
    write_json({"retrieval": retrieval, "finetune": finetune, "timings": timings, "wall_time": result.wall_time,
                "report": str(result.report)}, out / "results.json")
    if result.wall_time > cfg.budget_s:
        log.warning("the demo took %.0f s, over its %.0f s budget", result.wall_time, cfg.budget_s)
    return result


def _settings(cfg: DemoConfig, labelled: Path) -> str:
    c = cfg.corpus
    with open(labelled) as handle:
        count = sum(1 for _ in handle) - 1
    return (f"{c.num_classes} classes x {c.videos_per_class} synthetic videos of {c.duration:g} s; tiny model "
            f"pretrained {cfg.pretrain.train.epochs} epochs; fine-tuned {cfg.finetune.train.epochs} epochs "
            f"on {count} labelled videos ({cfg.labels_per_class} per class), mode {cfg.finetune.mode}")

