"""Does pretraining learn? The tiny recipe on the easy and the hard synthetic corpus, over seeds.

For each corpus and seed, as a new user would, through the documented CLI:
1. `avssl pretrain -c tiny` on the training videos (no labels; the easy corpus
   gets its val.csv as `data.val`, the hard one a held-out part of its training folder);
2. `avssl evaluate retrieval` on the held-out test clips: R@1 both ways, class precision@1 (content
   classes); from `avssl embed` of them, the spread of the test embeddings (mean pairwise cosine per
   modality) and R@1 within galleries of 24 test clips averaged over galleries (`gallery_recall`);
3. `avssl finetune -c tiny` with 10 labels per class, from the pretrained
   checkpoint and from scratch (the same architecture: the pretraining recipe's model section),
   scored on the test clips (hard corpus: motion labels, flip off;
   easy corpus: its class labels), checkpoint chosen on 10 other labelled training clips per class.
Prints one table (mean +- std over seeds under each corpus) and writes `results.json`.

    python benchmarks/learning.py --out runs/learning                     # both corpora, seeds 0 1 2
    python benchmarks/learning.py --out runs/learning --corpora sparse --seeds 0 --no-finetune
    python benchmarks/learning.py --out /tmp/quick --quick                # the reduced version CI runs
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from avssl.data.synthetic import make_corpus
from avssl.recipes.builtin import resolve_config
from avssl.tasks.embed import Embeddings
from avssl.tasks.metrics import cross_modal_retrieval
from avssl.train.collapse import mean_pairwise_cosine

PRETRAIN = resolve_config("tiny", "pretrain")  # the files `avssl pretrain -c tiny` and `avssl finetune -c tiny` read
FINETUNE = resolve_config("tiny", "finetune")
# corpus name -> make_corpus arguments (full, quick)
CORPORA = {
    "easy": ({"kind": "easy", "num_classes": 4, "videos_per_class": 30, "val_fraction": 0.2},
             {"kind": "easy", "num_classes": 4, "videos_per_class": 10, "val_fraction": 0.2}),
    # quick: 192 test clips, 8 galleries of 24 for `gallery_recall` (CI's learning test reads it)
    "sparse": ({"kind": "sparse"}, {"kind": "sparse", "train_videos": 240, "test_videos": 192}),
}
GALLERY = 24  # clips per gallery of `gallery_recall`: chance R@1 4.2 %


def avssl(*args: str, log: Path) -> None:
    """Run an avssl command (as `python -m avssl`), its output appended to `log`; raise on failure."""
    with open(log, "a") as handle:
        handle.write(f"$ avssl {' '.join(args)}\n")
        handle.flush()
        done = subprocess.run([sys.executable, "-m", "avssl", *args], stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"avssl {args[0]} failed (exit {done.returncode}); see {log}")


def split_files(corpus: Path, name: str) -> dict[str, Path]:
    """Where each corpus keeps its pretraining source, test clips and fine-tuning labels."""
    if name == "easy":
        return {"pretrain": corpus / "train.csv", "val": corpus / "val.csv", "test": corpus / "val.csv",
                "labels": corpus / "train.csv", "test_labels": corpus / "val.csv"}
    return {"pretrain": corpus / "train", "val": None, "test": corpus / "test.csv",
            "labels": corpus / "train_motion.csv", "test_labels": corpus / "test_motion.csv"}


def labelled_subsets(labels: Path, out: Path, per_class: int) -> tuple[Path, Path]:
    """Two disjoint manifests of `per_class` clips per class (training labels, validation labels),
    the first clips of each class in manifest order; paths made absolute."""
    with open(labels, newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen: dict[str, list[list[dict[str, str]]]] = {}
    for row in rows:
        parts = chosen.setdefault(row["label"], [[], []])
        for part in parts:
            if len(part) < per_class:
                part.append(row)
                break
    short = sorted(label for label, parts in chosen.items() if not parts[1])
    if short:
        raise ValueError(f"{labels}: classes {', '.join(short)} have too few clips for {per_class} training "
                         "labels plus validation ones; lower --labels-per-class")
    files = []
    for i, name in enumerate(("few_train.csv", "few_val.csv")):
        path = out / name
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            for parts in chosen.values():
                writer.writerows([str((labels.parent / r["path"]).resolve()), r["label"]] for r in parts[i])
        files.append(path)
    return files[0], files[1]


def gallery_recall(video: torch.Tensor, audio: torch.Tensor, size: int = GALLERY) -> float:
    """R@1 (percent) within disjoint galleries of `size` consecutive test clips, averaged over both
    directions and over the galleries (a remainder smaller than `size` is left out); NaN for fewer
    than `size` clips.

    Chance is 100 / size whatever the test set's size. R@1 over one gallery is a handful of hits (on
    the hard corpus, about 5 whether it holds 24 or 160 clips: the clips whose event starts within a
    frame of the query's are what it confuses), so one gallery's figure moves by whole hits between
    reruns; the mean over many galleries is steady enough to test against."""
    if len(video) < size:
        return math.nan
    figures = []
    for start in range(0, len(video) - size + 1, size):
        metrics = cross_modal_retrieval(video[start:start + size], audio[start:start + size], ks=(1,))
        figures.append((metrics["v2a_R@1"] + metrics["a2v_R@1"]) / 2)
    return statistics.fmean(figures)


def held_out_embeddings(run: Path, test: Path, log: Path) -> dict[str, float]:
    """From `avssl embed` of the test clips: the mean pairwise cosine of each modality's embeddings
    (1.0 = collapsed to a point) and `gallery_recall` (`gallery_R@1`)."""
    emb_path = run / "test_embeddings.pt"
    avssl("embed", "--checkpoint", str(run), str(test), "--out", str(emb_path), log=log)
    emb = Embeddings.load(emb_path)
    figures = {f"{m}_emb_cos": mean_pairwise_cosine(getattr(emb, f"{m}_emb")) for m in ("video", "audio")}
    figures["gallery_R@1"] = gallery_recall(emb.video_emb, emb.audio_emb)
    return figures


def recipe_architecture() -> list[str]:
    """The pretraining recipe's model section as `model.KEY=VALUE` overrides, so that fine-tuning from
    scratch trains what fine-tuning from the checkpoint trains (frames, pooling, input normalisation)."""
    section = yaml.safe_load(PRETRAIN.read_text())["model"]
    return [f"model.{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in section.items()]


def finetune_top1(run_dir: Path, init: str, train: Path, val: Path, test: Path, flip: bool, log: Path,
                  seed: int, epochs: int | None) -> float:
    """Test top-1 of `avssl finetune` from `init` (a run folder, or "none": from scratch, with the
    pretraining recipe's architecture)."""
    args = ["finetune", "-c", str(FINETUNE), f"init={init}", f"data.train={train}", f"data.val={val}",
            f"data.test={test}", f"out={run_dir}", f"seed={seed}", f"data.augment.flip={str(flip).lower()}"]
    if epochs:
        args.append(f"train.epochs={epochs}")
    if init == "none":
        args += recipe_architecture()
    avssl(*args, log=log)
    return json.loads((run_dir / "eval" / "metrics.json").read_text())["top1"]


def run_one(name: str, corpus: Path, seed: int, out: Path, args: argparse.Namespace) -> dict[str, float]:
    """Pretrain, evaluate and fine-tune one (corpus, seed); returns its row of figures."""
    files = split_files(corpus, name)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    run = out / "pretrain"
    pretrain = ["pretrain", "-c", str(PRETRAIN), f"data.train={files['pretrain']}", f"out={run}", f"seed={seed}"]
    if files["val"]:
        pretrain.append(f"data.val={files['val']}")
    if args.epochs:
        pretrain.append(f"train.epochs={args.epochs}")
    pretrain += args.set
    start = time.perf_counter()
    avssl(*pretrain, log=log)
    row = {"pretrain_s": time.perf_counter() - start}
    avssl("evaluate", "retrieval", "--checkpoint", str(run), str(files["test"]), "--json", str(out / "retrieval.json"),
          log=log)
    metrics = json.loads((out / "retrieval.json").read_text())
    row.update({key: metrics[key] for key in ("v2a_R@1", "a2v_R@1", "chance_R@1")})
    row["class_P@1"] = (metrics.get("v2a_class_P@1", math.nan) + metrics.get("a2v_class_P@1", math.nan)) / 2
    row.update(held_out_embeddings(run, files["test"], log))
    if not args.no_finetune:
        few_train, few_val = labelled_subsets(files["labels"], out, args.labels_per_class)
        flip = name != "sparse"  # motion labels depend on direction
        for init_name, init in (("pretrained", str(run)), ("scratch", "none")):
            row[f"ft_{init_name}"] = finetune_top1(out / f"finetune-{init_name}", init, few_train, few_val,
                                                   files["test_labels"], flip, log, seed, args.finetune_epochs)
    return row


def summarise(rows: list[dict[str, float]]) -> dict[str, str]:
    """mean +- std (population over seeds) of every column."""
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        spread = statistics.pstdev(values) if len(values) > 1 else 0.0
        digits = 3 if "cos" in key else 1
        out[key] = f"{statistics.fmean(values):.{digits}f} +- {spread:.{digits}f}"
    return out


COLUMNS = ("v2a_R@1", "a2v_R@1", "chance_R@1", "gallery_R@1", "class_P@1", "video_emb_cos", "audio_emb_cos",
           "ft_pretrained", "ft_scratch", "pretrain_s")


def print_table(results: dict[str, dict[int, dict[str, float]]]) -> None:
    columns = [c for c in COLUMNS if any(c in row for rows in results.values() for row in rows.values())]
    print("| corpus | seed | " + " | ".join(columns) + " |")
    print("|" + " --- |" * (len(columns) + 2))
    for name, rows in results.items():
        for seed, row in rows.items():
            print(f"| {name} | {seed} | " + " | ".join(f"{row[c]:.3f}" if "cos" in c else f"{row[c]:.1f}"
                                                     for c in columns) + " |")
        if len(rows) > 1:
            summary = summarise(list(rows.values()))
            print(f"| **{name}** | mean +- std | " + " | ".join(summary[c] for c in columns) + " |")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of `run_one` (corpus size, epochs, labels, overrides), for every benchmark built on it."""
    parser.add_argument("--quick", action="store_true", help="smaller corpora (the CI smoke test)")
    parser.add_argument("--epochs", type=int, help="pretraining epochs (default: the recipe's)")
    parser.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs (default: the recipe's)")
    parser.add_argument("--labels-per-class", type=int, help="fine-tuning labels (default 10; 4 with --quick)")
    parser.add_argument("--no-finetune", action="store_true", help="retrieval only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a pretraining override on top of the recipe (repeatable), e.g. model.time_bins=6")
    parser.add_argument("--corpus-seed", type=int, default=0,
                        help="seed of the generated corpora: 0 for reported figures, another for tuning")


def parse_run_options(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The command line, with `add_run_options`'s defaults that depend on other options filled in."""
    args = parser.parse_args()
    args.labels_per_class = args.labels_per_class or (4 if args.quick else 10)
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/learning"))
    parser.add_argument("--corpora", nargs="+", choices=tuple(CORPORA), default=list(CORPORA))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    add_run_options(parser)
    args = parse_run_options(parser)
    results: dict[str, dict[int, dict[str, float]]] = {}
    for name in args.corpora:
        corpus = args.out / f"corpus-{name}"
        if not (corpus / "train.csv").is_file():
            make_corpus(corpus, seed=args.corpus_seed, **CORPORA[name][args.quick])
        results[name] = {seed: run_one(name, corpus, seed, args.out / f"{name}-seed{seed}", args)
                         for seed in args.seeds}
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
