"""Does the loader keep the model fed? Loader clips/s against the model's, per model size, and the share
of step time a real tiny pretraining run spends waiting for data.

1. Per model size, in one process: clips/s of the recipe's training loader (`build_loader` over its
   `ClipDataset`: decode + video transforms + log-mel fbank) with N workers, after its first batch,
   and the model's training clips/s (forward + backward + AdamW, `train_step.training_step`) at the
   recipe's clip shape. loader / model >= 1: N workers make clips faster than the model uses them
   (when they have cores of their own; here they share them with the model in a real run).
2. A real run: `avssl pretrain -c tiny` (24 frames of 64 px, batch 32, 2 workers)
   on a synthetic corpus with a row of metrics.jsonl per step: the time-weighted `data_wait_fraction`
   of the steps after the first, of each later epoch's first step (where workers used to be
   re-spawned, after each validation) and the first step's wait (the workers' start, once a run).

    python benchmarks/loader.py                                  # tiny, 0 1 2 workers, a 4-epoch run: ~2 min
    python benchmarks/loader.py --sizes tiny small --workers 2 4 --run-epochs 0
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path
from typing import Iterator

import torch

from avssl.config import load_config
from avssl.data.loader import ClipLoader, build_loader
from avssl.data.synthetic import make_corpus
from avssl.models.factory import create_model
from avssl.recipes.pretrain import PretrainConfig, build_datasets, run_pretrain
from avssl.train.observe import read_metrics
from train_step import seconds_per_step, training_step

RECIPES = Path(__file__).resolve().parents[1] / "avssl" / "configs" / "pretrain"
MODEL_BATCH = {"tiny": 32, "small": 2, "base": 1}  # CPU-sized model batches (tiny: its recipe's)


def recipe(size: str, corpus: Path, *overrides: str) -> PretrainConfig:
    """The pretraining config of a size (its recipe file when there is one) on `corpus`."""
    path = RECIPES / f"{size}.yaml"
    extra = [] if path.is_file() else [f"model.name={size}"]
    return load_config(PretrainConfig, path if path.is_file() else None,
                       [f"data.train={corpus / 'train.csv'}", f"data.val={corpus / 'val.csv'}", *extra, *overrides])


def loader_clips_per_s(cfg: PretrainConfig, workers: int, batches: int, work: Path) -> float:
    """Clips/s of the recipe's training loader with `workers` workers, timed from its first batch on
    (so worker start-up is left out) over `batches` more, epoch after epoch."""
    train, _ = build_datasets(cfg, create_model(cfg.model).config, work)
    with build_loader(train, batch_size=cfg.data.batch_size, num_workers=workers, seed=0) as loader:
        stream = epochs(loader)
        next(stream)
        start, clips = time.perf_counter(), 0
        for _ in range(batches):
            clips += len(next(stream)["video"])
        return clips / (time.perf_counter() - start)


def epochs(loader: ClipLoader) -> Iterator[dict]:
    """The loader's batches, epoch after epoch, for ever."""
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield from loader


def model_clips_per_s(cfg: PretrainConfig, batch: int, steps: int) -> float:
    """Training clips/s of the recipe's model on the CPU at batch `batch`."""
    torch.manual_seed(0)
    model = create_model(cfg.model).train()
    device = torch.device("cpu")
    return batch / seconds_per_step(training_step(model, batch, device), steps, device)


def data_waits(run: Path, steps_per_epoch: int, batch: int) -> tuple[float, float, float]:
    """From a run logged every step (batches of `batch` clips): the time-weighted data_wait_fraction of
    every step after the first and of the first steps of epochs 2, 3, ..., and the seconds the first
    step waited (the workers' start and first batches, once per run)."""
    rows = read_metrics(run, "train")
    seconds = [batch / r["clips_per_s"] for r in rows]

    def share(picked: list[int]) -> float:
        return sum(rows[i]["data_wait_fraction"] * seconds[i] for i in picked) / sum(seconds[i] for i in picked)

    epoch_starts = [i for i, r in enumerate(rows) if r["step"] % steps_per_epoch == 1 and r["step"] > 1]
    return share(list(range(1, len(rows)))), share(epoch_starts), rows[0]["data_wait_fraction"] * seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny"])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=3, help="timed loader batches per setting")
    parser.add_argument("--steps", type=int, default=2, help="timed model steps per size")
    parser.add_argument("--run-epochs", type=int, default=4, help="epochs of the real tiny run (0: none)")
    parser.add_argument("--corpus", type=Path, default=None, help="default: a synthetic corpus made here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = args.corpus or make_corpus(work / "corpus", num_classes=4, videos_per_class=40, duration=3.0,
                                            size=64, fps=12)
        print(f"corpus: {corpus}; {torch.get_num_threads()} torch threads in the main process")
        print(f"{'size':6} {'workers':>7} {'loader clips/s':>14} {'model clips/s':>13} {'loader/model':>12}")
        for size in args.sizes:
            cfg = recipe(size, corpus)
            model = model_clips_per_s(cfg, MODEL_BATCH.get(size, 1), args.steps)
            for workers in args.workers:
                clips = loader_clips_per_s(cfg, workers, args.batches, work / f"{size}-{workers}")
                print(f"{size:6} {workers:7d} {clips:14.1f} {model:13.3g} {clips / model:12.1f}")
        if args.run_epochs:
            run = work / "run"
            cfg = recipe("tiny", corpus, f"out={run}", f"train.epochs={args.run_epochs}", "train.log_every=1",
                         "data.num_workers=2")
            start = time.perf_counter()
            result = run_pretrain(cfg)
            steps_per_epoch = result.position.step // args.run_epochs
            steady, epoch_starts, start_up = data_waits(run, steps_per_epoch, cfg.data.batch_size)
            print(f"tiny run, 2 workers: {result.position.step} steps ({steps_per_epoch} per epoch) and "
                  f"{args.run_epochs} validations in {time.perf_counter() - start:.0f} s. Waiting for data: "
                  f"{steady:.1%} of the step time after the first step, {epoch_starts:.1%} of epochs' first steps "
                  f"(after a validation); the first step waited {start_up:.1f} s (workers starting)")

if __name__ == "__main__":
    main()
