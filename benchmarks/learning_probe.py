"""A fast, in-process probe of whether a model variant can learn a corpus, for comparing many variants.

`learning.py` judges the shipped recipe through the CLI (minutes per run); this probe decodes a
corpus once (several augmented views of each training clip, one evaluation clip of each test clip)
into a tensor file, then trains in-process on it, about a minute per variant on 2 cores:

    python benchmarks/learning_probe.py cache CORPUS CACHE.pt                   # train.csv + test.csv of a corpus
    python benchmarks/learning_probe.py pretrain CACHE.pt proj_norm=batch --steps 300
    python benchmarks/learning_probe.py supervised CACHE.pt --modality audio    # what a tower sees with labels

`pretrain` prints, four times, the training contrastive loss against ln(batch), held-out R@1 both
ways, class P@1 and the mean pairwise cosine of each modality's test embeddings; `supervised` trains
one tower with a linear head on the content labels and prints train / test top-1. Positional
`key=value` arguments override ModelConfig fields on top of the shipped tiny recipe's model section
(`avssl/configs/pretrain/tiny.yaml`: its frames, input normalisation, time bins...), and the cached
views get that recipe's augmentations. Results are for comparing variants, not for quoting as the
recipe's: the probe has no random windows or crops beyond its cached views.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

import avssl
from avssl.config import load_config
from avssl.data.datasets import ClipDataset
from avssl.data.loader import build_loader
from avssl.recipes.builtin import resolve_config
from avssl.recipes.pretrain import PretrainConfig
from avssl.tasks.evaluate import same_class_at_1
from avssl.tasks.metrics import cross_modal_retrieval
from avssl.train.collapse import mean_pairwise_cosine
from avssl.train.schedule import warmup_cosine
from avssl.train.trainer import param_groups

RECIPE = load_config(PretrainConfig, resolve_config("tiny", "pretrain"))  # what `avssl pretrain -c tiny` reads


def decode(source: str, train: bool, views: int) -> dict[str, torch.Tensor]:
    """`views` passes over `source` (random windows and augmentations when `train`), stacked; rows
    are ordered pass by pass, so row p * N + i is view p of clip i."""
    dataset = ClipDataset(source, num_frames=RECIPE.model.num_frames, clip_duration=2.0, frame_size=64,
                          sampler="random" if train else "constant", train=train, seed=0,
                          augment=RECIPE.data.augment)
    parts: dict[str, list[torch.Tensor]] = {"video": [], "audio": [], "label": []}
    for view in range(views):
        loader = build_loader(dataset, batch_size=8, num_workers=2, shuffle=False, drop_last=False)
        loader.set_epoch(view)
        for batch in loader:
            parts["video"].append(batch["video"].half())
            parts["audio"].append(batch["audio"].half())
            parts["label"].append(batch["label"])
    return {key: torch.cat(values) for key, values in parts.items()}


def evaluate(model: avssl.AVModel, test: dict[str, torch.Tensor]) -> dict[str, float]:
    """Held-out retrieval, class P@1 and embedding spread of the test clips."""
    model.eval()
    with torch.no_grad():
        video = torch.cat([model.embed_video(v.float()) for v in test["video"].split(64)])
        audio = torch.cat([model.embed_audio(a.float()) for a in test["audio"].split(64)])
    model.train()
    metrics = cross_modal_retrieval(video, audio, ks=(1, 5))
    labels = test["label"]
    return {"v2a_R@1": metrics["v2a_R@1"], "a2v_R@1": metrics["a2v_R@1"], "v2a_R@5": metrics["v2a_R@5"],
            "class_P@1": (same_class_at_1(video, audio, labels) + same_class_at_1(audio, video, labels)) / 2,
            "video_cos": mean_pairwise_cosine(video), "audio_cos": mean_pairwise_cosine(audio)}


def pretrain(cache: dict, overrides: dict, steps: int, batch: int, lr: float, seed: int) -> None:
    train, test, views = cache["train"], cache["test"], cache["views"]
    clips = len(train["label"]) // views
    torch.manual_seed(seed)
    model = avssl.create_model(RECIPE.model, **overrides)
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=lr, betas=(0.9, 0.95))
    schedule = warmup_cosine(optimizer, steps, max(1, steps // 20), 0.01)
    draw = torch.Generator().manual_seed(seed)
    losses, start = [], time.time()
    for step in range(1, steps + 1):
        # distinct clips in a batch (no false negatives), each in a random one of its views
        rows = torch.randint(0, views, (batch,), generator=draw) * clips + torch.randperm(clips, generator=draw)[:batch]
        out = model(train["video"][rows].float(), train["audio"][rows].float())
        optimizer.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(out["loss_contrastive"].detach()))
        if step % max(1, steps // 4) == 0:
            recent = sum(losses[-20:]) / len(losses[-20:])
            figures = " ".join(f"{k} {v:.2f}" for k, v in evaluate(model, test).items())
            print(f"step {step}: contrastive {recent:.3f} (ln B {math.log(batch):.3f}) {figures} "
                  f"[{time.time() - start:.0f} s]", flush=True)


def supervised(cache: dict, overrides: dict, modality: str, steps: int, batch: int, lr: float, seed: int) -> None:
    train, test = cache["train"], cache["test"]
    torch.manual_seed(seed)
    model = avssl.create_model(RECIPE.model, **overrides)
    head = torch.nn.Linear(model.config.embed_dim, int(train["label"].max()) + 1)
    optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=lr, weight_decay=0.05)
    draw = torch.Generator().manual_seed(seed)
    first_view = len(train["label"]) // cache["views"]  # training accuracy: each clip once, in its first view

    def logits(x: torch.Tensor) -> torch.Tensor:
        return head(model.forward_features(**{modality: x.float()})[modality])

    for step in range(1, steps + 1):
        rows = torch.randint(0, len(train["label"]), (batch,), generator=draw)
        loss = F.cross_entropy(logits(train[modality][rows]), train["label"][rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 3) == 0:
            model.eval()
            with torch.no_grad():
                accuracy = {name: float((torch.cat([logits(x) for x in split[modality][:rows].split(64)]).argmax(1)
                                         == split["label"][:rows]).float().mean() * 100)
                            for name, split, rows in (("train", train, first_view), ("test", test, len(test["label"])))}
            model.train()
            print(f"step {step}: loss {loss.item():.3f} train {accuracy['train']:.1f} test {accuracy['test']:.1f}",
                  flush=True)


def _override(item: str) -> tuple[str, object]:
    """`key=value` -> (key, value), the value read as JSON where it is (numbers, true, lists), else text."""
    key, _, value = item.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("cache", "pretrain", "supervised"))
    parser.add_argument("paths", nargs="+", help="cache: CORPUS CACHE.pt; else: CACHE.pt [key=value ...]")
    parser.add_argument("--views", type=int, default=4, help="cache: augmented views of each training clip")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modality", choices=("video", "audio"), default="audio")
    args = parser.parse_args()
    if args.command == "cache":
        corpus, out = args.paths
        torch.save({"views": args.views, "train": decode(f"{corpus}/train.csv", True, args.views),
                    "test": decode(f"{corpus}/test.csv", False, 1)}, out)
        print(f"cached {corpus} into {out}")
        return
    cache = torch.load(args.paths[0])
    overrides = dict(_override(item) for item in args.paths[1:])
    if args.command == "pretrain":
        pretrain(cache, overrides, args.steps, args.batch, args.lr, args.seed)
    else:
        supervised(cache, overrides, args.modality, args.steps, args.batch, args.lr, args.seed)


if __name__ == "__main__":
    main()
