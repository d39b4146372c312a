"""Learning from few labels: top-1 against labels per class on the hard synthetic corpus.

Per seed, through the documented CLI (the tiny recipes; motion labels, flip off, as benchmarks/
learning.py, whose helpers this script imports): pretrain once, then for each number of labels per
class K (K training + K validation clips per class, `learning.labelled_subsets`):

- scratch: `avssl finetune init=none` on the K labels;
- pretrained: `avssl finetune init=PRETRAINED`;
- pseudo: the same plus `data.unlabeled=` the rest of the training clips (one noisy-student round);
- select-<strategy>: `avssl select` picks K more clips per class (a budget of K x classes) from the
  rest with the pretrained fine-tune as the model, their true labels are added, and the model is
  fine-tuned again from the pretrained checkpoint (so these rows use 2K labels per class; compare
  the strategies with select-random, not with the other rows).

Scored on the held-out test clips. Prints one table (mean +- std over seeds), writes results.json
and label_efficiency.png (top-1 against K, one line per method).

    python benchmarks/label_efficiency.py --out runs/label-efficiency --seeds 0 1 2          # full
    python benchmarks/label_efficiency.py --out /tmp/le --quick --seeds 0                    # smoke
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import CORPORA, FINETUNE, PRETRAIN, avssl, finetune_top1, labelled_subsets  # noqa: E402

from avssl.data.synthetic import make_corpus  # noqa: E402
from avssl.tasks.charts import save_line_png  # noqa: E402
from avssl.tasks.select import STRATEGIES  # noqa: E402

QUICK_CORPUS = {"kind": "sparse", "train_videos": 96, "test_videos": 24}


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[tuple[str, str]], header: tuple[str, ...] = ("path", "label")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def pool_manifest(labels: Path, used: list[Path], out: Path) -> Path:
    """The training clips of `labels` not in any of the `used` manifests, without labels."""
    taken = {r["path"] for manifest in used for r in read_rows(manifest)}
    rest = [str((labels.parent / r["path"]).resolve()) for r in read_rows(labels)]
    return write_rows(out, [(p,) for p in rest if p not in taken], header=("path",))


def with_true_labels(few_train: Path, chosen: Path, labels: Path, out: Path) -> Path:
    """`few_train` plus the `chosen` clips (an `avssl select` manifest) with their labels from `labels`."""
    truth = {str((labels.parent / r["path"]).resolve()): r["label"] for r in read_rows(labels)}
    rows = [(r["path"], r["label"]) for r in read_rows(few_train)]
    rows += [(str(Path(r["path"]).resolve()), truth[str(Path(r["path"]).resolve())]) for r in read_rows(chosen)]
    return write_rows(out, rows)


def eval_top1(run_dir: Path) -> float:
    return json.loads((run_dir / "eval" / "metrics.json").read_text())["top1"]


def run_labels(corpus: Path, pretrained: Path, per_class: int, seed: int, out: Path, args: argparse.Namespace
               ) -> dict[str, float]:
    """Every method's test top-1 with `per_class` labels per class."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    labels, test = corpus / "train_motion.csv", corpus / "test_motion.csv"
    few_train, few_val = labelled_subsets(labels, out, per_class)
    pool = pool_manifest(labels, [few_train, few_val], out / "pool.csv")
    common = (few_val, test, False, log, seed, args.finetune_epochs)
    row = {"scratch": finetune_top1(out / "scratch", "none", few_train, *common),
           "pretrained": finetune_top1(out / "pretrained", str(pretrained), few_train, *common)}
    pseudo = ["finetune", "-c", str(FINETUNE), f"init={pretrained}", f"data.train={few_train}",
              f"data.val={few_val}", f"data.test={test}", f"data.unlabeled={pool}", f"pseudo_label.truth={labels}",
              f"pseudo_label.threshold={args.threshold}", "data.augment.flip=false", f"seed={seed}",
              f"out={out / 'pseudo'}"] + ([f"train.epochs={args.finetune_epochs}"] if args.finetune_epochs else [])
    avssl(*pseudo, log=log)
    row["pseudo"] = eval_top1(out / "pseudo" / "round1")
    budget = per_class * len({r["label"] for r in read_rows(few_train)})
    for strategy in STRATEGIES:
        chosen = out / f"select-{strategy}.csv"
        avssl("select", "--checkpoint", str(out / "pretrained"), "--pool", str(pool), "--budget", str(budget),
              "--strategy", strategy, "--seed", str(seed), "--out", str(chosen), "--sheet-limit", "0", log=log)
        train = with_true_labels(few_train, chosen, labels, out / f"train-{strategy}.csv")
        row[f"select-{strategy}"] = finetune_top1(out / f"ft-{strategy}", str(pretrained), train, *common)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/label-efficiency"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--labels", nargs="+", type=int, help="labels per class (default 2 5 10 20; --quick 2 4)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 96 training clips, 1 epoch each")
    parser.add_argument("--epochs", type=int, help="pretraining epochs (default: the recipe's; --quick 1)")
    parser.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs (default: the recipe's; --quick 1)")
    parser.add_argument("--threshold", type=float, default=0.5, help="pseudo_label.threshold (default 0.5)")
    args = parser.parse_args()
    per_class = args.labels or ([2, 4] if args.quick else [2, 5, 10, 20])
    if args.quick:
        args.epochs, args.finetune_epochs = args.epochs or 1, args.finetune_epochs or 1
    corpus = args.out / "corpus"
    if not (corpus / "train.csv").is_file():
        make_corpus(corpus, **(QUICK_CORPUS if args.quick else CORPORA["sparse"][0]))
    results: dict[int, dict[int, dict[str, float]]] = {}
    for seed in args.seeds:
        pretrained = args.out / f"seed{seed}" / "pretrain"
        if not (pretrained / "checkpoints").is_dir():
            avssl("pretrain", "-c", str(PRETRAIN), f"data.train={corpus / 'train'}", f"out={pretrained}",
                  f"seed={seed}", *([f"train.epochs={args.epochs}"] if args.epochs else []),
                  log=args.out / "commands.log")
        results[seed] = {k: run_labels(corpus, pretrained, k, seed, args.out / f"seed{seed}" / f"labels{k}", args)
                         for k in per_class}
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    methods = list(next(iter(next(iter(results.values())).values())))
    cells = {m: {k: [results[s][k][m] for s in args.seeds] for k in per_class} for m in methods}
    print("| method | " + " | ".join(f"{k} labels/class" for k in per_class) + " |")
    print("|" + " --- |" * (len(per_class) + 1))
    for method in methods:
        print(f"| {method} | " + " | ".join(
            f"{statistics.fmean(v):.1f} +- {statistics.pstdev(v):.1f}" for v in cells[method].values()) + " |")
    png = save_line_png({m: [(k, statistics.fmean(v)) for k, v in cells[m].items()] for m in methods},
                        args.out / "label_efficiency.png", title=f"hard corpus, motion labels, seeds {args.seeds}",
                        xlabel="labels per class", ylabel="test top-1 (%)")
    print(f"results: {args.out / 'results.json'}, plot: {png}")


if __name__ == "__main__":
    main()
