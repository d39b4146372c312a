"""Which alignment objective, with or without synchronisation? Each of infonce, barlow, vicreg and swav,
with and without the sync task, on the hard (sparse) and the easy synthetic corpus, over seeds.

For every (corpus, objective, sync, seed), through the documented CLI, `benchmarks/learning.py`'s
`run_one` (pretrain with the tiny recipe and the variant's overrides, `avssl evaluate retrieval` on
held-out clips, `avssl finetune` with 10 labels per class), then with sync `avssl evaluate sync` on
the same held-out clips; the pretraining run's last validation gives the collapse diagnostics
(effective rank of the embeddings, collapse warnings still raised). Wall time and peak memory of one
training step are measured per variant in a fresh process on random inputs of the recipe's shape
(peak RSS on CPU, peak allocated memory on CUDA). Prints one table and writes `results.json`.

The alignment term's weight is set per objective so that each starts near InfoNCE's scale (ln B at
batch 8 is about 2): Barlow Twins' loss starts near proj_dim (64), VICReg's near 25-50, so they get
model.contrastive_weight 1/32 and 1/25; SwAV keeps the recipe's 1.0 with 128 prototypes (the
paper's 3000 are for 4096-clip batches).

    python benchmarks/objectives.py --out runs/objectives --seeds 0 1 2            # the full run
    python benchmarks/objectives.py --out /tmp/obj --quick --seeds 0 --epochs 2    # smoke: minutes
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from avssl.config import load_config
from avssl.data.synthetic import make_corpus
from avssl.models.factory import create_model
from avssl.recipes.pretrain import PretrainConfig
from avssl.train.observe import read_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import (CORPORA, PRETRAIN, add_run_options, avssl, parse_run_options, run_one,  # noqa: E402
                      split_files, summarise)

OBJECTIVES = {  # objective -> its pretraining overrides on top of the tiny recipe
    "infonce": [],
    "barlow": ["model.contrastive_weight=0.03125"],
    "vicreg": ["model.contrastive_weight=0.04"],
    "swav": ["model.swav_prototypes=128"],
}
SYNC = ["model.sync_weight=0.5"]  # 9 offsets in +-0.8 s (the defaults): chance 11.1 %


def variant_overrides(objective: str, sync: bool, batch_size: int) -> list[str]:
    """The pretraining overrides of one variant."""
    return [f"model.alignment={objective}", f"data.batch_size={batch_size}", *OBJECTIVES[objective],
            *(SYNC if sync else [])]


def measure_step(overrides: list[str], steps: int) -> dict[str, float]:
    """Seconds per training step (forward, backward, AdamW) and peak memory in MB of the recipe's model
    with `overrides`, on random inputs of its clip shape; run it in a fresh process (`--measure-step`)."""
    cfg = load_config(PretrainConfig, PRETRAIN, overrides + ["data.train=unused"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = create_model(cfg.model).to(device).train()
    m, batch = model.config, cfg.data.batch_size
    video = torch.randn(batch, m.num_frames, 3, m.frame_size, m.frame_size, device=device)
    audio = torch.randn(batch, m.audio_frames, m.num_mel_bins, device=device)
    sync = {"sync_audio": torch.randn_like(audio), "sync_offset": torch.randint(0, m.sync_offsets, (batch,), device=device)}
    inputs = sync if m.sync_weight > 0 else {}
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)

    def step() -> None:
        model(video, audio, **inputs)["loss"].backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"step_s": seconds, "peak_mb": peak}


def step_figures(overrides: list[str], steps: int) -> dict[str, float]:
    """`measure_step` in a fresh Python process, so that peak memory is this variant's alone."""
    done = subprocess.run([sys.executable, __file__, "--measure-step", json.dumps(overrides), "--step-count",
                           str(steps)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def diagnostics(run: Path) -> dict[str, float]:
    """The collapse diagnostics of a pretraining run's last validation: mean effective rank of the two
    towers' embeddings and the collapse warnings it raised."""
    last = read_metrics(run, "val")[-1]
    return {"emb_rank": (last["video_emb_rank"] + last["audio_emb_rank"]) / 2,
            "warnings": last.get("collapse_warnings", math.nan)}


def run_variant(name: str, corpus: Path, objective: str, sync: bool, seed: int, out: Path,
                args: argparse.Namespace) -> dict[str, float]:
    """One (corpus, objective, sync, seed): learning.py's row plus sync accuracy and diagnostics."""
    variant = argparse.Namespace(**{**vars(args), "set": variant_overrides(objective, sync, args.batch_size) + args.set})
    row = run_one(name, corpus, seed, out, variant)
    row.update(diagnostics(out / "pretrain"))
    if sync:
        result = out / "sync.json"
        avssl("evaluate", "sync", "--checkpoint", str(out / "pretrain"), str(split_files(corpus, name)["test"]),
              "--seed", str(seed), "--json", str(result), log=out / "commands.log")
        metrics = json.loads(result.read_text())
        row.update(sync_acc=metrics["offset_accuracy"], sync_chance=metrics["chance_accuracy"])
    return row


COLUMNS = ("v2a_R@1", "a2v_R@1", "gallery_R@1", "class_P@1", "ft_pretrained", "ft_scratch", "sync_acc",
           "sync_chance", "video_emb_cos", "audio_emb_cos", "emb_rank", "warnings", "step_s", "peak_mb", "pretrain_s")


def print_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    """One markdown row per (corpus, variant): the mean +- std over seeds (the value with one seed)."""
    columns = [c for c in COLUMNS if any(c in row for rows in results.values() for row in rows.values())]
    print("| corpus | objective | sync | " + " | ".join(columns) + " |")
    print("|" + " --- |" * (len(columns) + 3))
    for key, rows in results.items():
        corpus, objective, sync = key.split("/")
        if len(rows) > 1:
            cells = summarise(list(rows.values()))
        else:
            (row,) = rows.values()
            cells = {c: f"{row[c]:.3f}" if "cos" in c or c == "step_s" else f"{row[c]:.1f}" for c in row}
        print(f"| {corpus} | {objective} | {sync} | " + " | ".join(cells.get(c, "-") for c in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/objectives"))
    parser.add_argument("--corpora", nargs="+", choices=tuple(CORPORA), default=["sparse", "easy"])
    parser.add_argument("--objectives", nargs="+", choices=tuple(OBJECTIVES), default=list(OBJECTIVES))
    parser.add_argument("--sync", nargs="+", choices=("off", "on"), default=["off", "on"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=8, help="pretraining batch (default 8, the issue's)")
    add_run_options(parser)
    parser.add_argument("--step-count", type=int, default=5, help="timed training steps per variant")
    parser.add_argument("--measure-step", metavar="JSON", help=argparse.SUPPRESS)  # the child of step_figures
    args = parse_run_options(parser)
    if args.measure_step:
        print(json.dumps(measure_step(json.loads(args.measure_step), args.step_count)))
        return
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in args.corpora:
        corpus = args.out / f"corpus-{name}"
        if not (corpus / "train.csv").is_file():
            make_corpus(corpus, seed=args.corpus_seed, **CORPORA[name][args.quick])
        for objective in args.objectives:
            for sync in args.sync:
                overrides = variant_overrides(objective, sync == "on", args.batch_size) + args.set
                step = step_figures(overrides, args.step_count)
                key = f"{name}/{objective}/{sync}"
                results[key] = {}
                for seed in args.seeds:
                    out = args.out / f"{name}-{objective}-sync_{sync}-seed{seed}"
                    row = run_variant(name, corpus, objective, sync == "on", seed, out, args)
                    results[key][str(seed)] = {**row, **step}
                (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
