"""Pretraining step throughput of the audio-visual model, per model size, and against CAV-MAE's step.

For each size: time of one forward + backward + AdamW step on synthetic inputs at the config's clip
size, samples/s, FLOPs per sample (counted by torch.utils.flop_counter on one step), the device's
dense matmul throughput measured in the same run (bf16 on CUDA, fp32 on CPU) and the model FLOP
utilisation MFU = achieved FLOP/s / measured matmul FLOP/s. CUDA steps run under bf16 autocast.

`--vs-cavmae`: avssl's training step against `CavMaeReference`, CAV-MAE's pretraining step written
here from its description at equal shapes (`CAVMAE_SHAPES`), timed in alternating rounds in the same
process, fp32. avssl's step is the trainer's: forward, backward, gradient clipping, its AdamW.

    python benchmarks/train_step.py --sizes tiny small --steps 5
    python benchmarks/train_step.py --sizes base --device cuda --batch-size 32 --grad-checkpointing
    python benchmarks/train_step.py --vs-cavmae --rounds 5 --profile
    python benchmarks/train_step.py --vs-cavmae --compile --rounds 12 --steps 1   # + avssl under torch.compile
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from avssl.models.av_model import AVModel
from avssl.models.config import ModelConfig
from avssl.models.factory import create_model
from avssl.models.pos_embed import sincos_2d
from avssl.train.config import TrainConfig
from avssl.train.optim import adamw, param_groups

DEFAULT_BATCH = {"cpu": {"tiny": 8, "small": 2, "base": 1}, "cuda": {"tiny": 128, "small": 32, "base": 16}}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device) -> float:
    """Measured dense matmul FLOP/s: bf16 4096^3 on CUDA, fp32 2048^3 on CPU (best of several)."""
    size, dtype, repeats = (4096, torch.bfloat16, 50) if device.type == "cuda" else (2048, torch.float32, 5)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(3):
        a @ b
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * size ** 3 / best


def training_step(model: AVModel, batch: int, device: torch.device, compile: bool = False) -> Callable[[], None]:
    """The trainer's optimizer step for `model` on fixed random inputs of its config's clip shape (every
    clip with sound, so, as in `avssl.recipes.pretrain`, without a `has_audio` mask):
    forward (bf16 autocast on CUDA; `compile`: through `torch.compile`, as `train.compile=true` runs it),
    backward, gradient clipping at TrainConfig's default norm, its AdamW."""
    cfg, train = model.config, TrainConfig()
    video = torch.randn(batch, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size, device=device)
    audio = torch.randn(batch, cfg.audio_frames, cfg.num_mel_bins, device=device)
    optimizer = adamw(param_groups(model, train.weight_decay), lr=train.lr, betas=train.betas, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    forward = torch.compile(model) if compile else model

    def step() -> None:
        with autocast:
            loss = forward(video, audio)["loss"]  # every clip has sound: no has_audio, as the trainer
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def seconds_per_step(step: Callable[[], None], steps: int, device: torch.device, warm_up: bool = True) -> float:
    """Mean wall time of `steps` calls of `step`, after one untimed warm-up call (`warm_up`)."""
    if warm_up:
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def bench_size(name: str, batch: int, steps: int, device: torch.device, checkpointing: bool) -> dict[str, float]:
    """Step time, throughput and FLOPs of one model size."""
    torch.manual_seed(0)
    model = create_model(name).to(device).train()
    model.set_grad_checkpointing(checkpointing)
    step = training_step(model, batch, device)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = seconds_per_step(step, steps, device)
    return {
        "params_m": model.num_parameters() / 1e6,
        "batch": batch,
        "step_s": seconds,
        "samples_s": batch / seconds,
        "gflops_sample": flops / batch / 1e9,
        "achieved_tflops": flops / seconds / 1e12,
        "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan"),
    }


# ---- CAV-MAE's pretraining step at equal shapes, written from its description (shared/DESIGN.md) ----

CAVMAE_SHAPES = dict(dim=192, heads=3, depth=11, decoder_dim=128, decoder_depth=2, decoder_heads=4,
                     audio_frames=256, mel_bins=128, image=112, patch=16, mask_ratio=0.75)


class _RefAttention(nn.Module):
    """Self-attention as CAV-MAE's pinned timm (0.4.5) computes it: explicit scores, softmax, values."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, d))


class _RefBlock(nn.Module):
    """Pre-norm block; like CAV-MAE's every block holds LayerNorms for the joint ("") and the audio
    ("a") and video ("v") streams, used by its shared layer."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = _RefAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.norms = nn.ModuleDict({f"{i}{s}": nn.LayerNorm(dim) for i in "12" for s in ("", "a", "v")})

    def forward(self, x: torch.Tensor, stream: str = "") -> torch.Tensor:
        x = x + self.attn(self.norms[f"1{stream}"](x))
        return x + self.mlp(self.norms[f"2{stream}"](x))


def _ref_masking(tokens: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's random masking: rows shuffled by sorting noise; (kept tokens, mask 1 = hidden, restore ids)."""
    b, n, d = tokens.shape
    keep = int(n * (1 - ratio))
    shuffle = torch.rand(b, n, device=tokens.device).argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    kept = tokens.gather(1, shuffle[:, :keep, None].expand(-1, -1, d))
    mask = torch.ones(b, n, device=tokens.device)
    mask[:, :keep] = 0
    return kept, mask.gather(1, restore), restore


def _ref_patchify(image: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, p * p * C), MAE's target layout."""
    b, c, h, w = image.shape
    x = image.reshape(b, c, h // patch, patch, w // patch, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def _ref_mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalised-pixel MSE on the hidden patches."""
    mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1e-6) ** 0.5
    return (((pred - target) ** 2).mean(dim=-1) * mask).sum() / mask.sum()


class CavMaeReference(nn.Module):
    """CAV-MAE's pretraining forward (Gong et al., ICLR 2023) at `CAVMAE_SHAPES`: patch-embed each whole
    input, add fixed sin-cos positions and modality embeddings, mask 75 % at random, 11 blocks per
    modality, the shared block run three ways (joint, audio alone, video alone) with its own norms,
    a decoder over both modalities with one mask token, normalised-pixel MAE losses and 0.01 x InfoNCE
    (video to audio, temperature 0.05, with its accuracy) on the mean-pooled single-stream outputs.
    The masked-token count is read on the host from the first row, as CAV-MAE does."""

    def __init__(self, dim: int, heads: int, depth: int, decoder_dim: int, decoder_depth: int, decoder_heads: int,
                 audio_frames: int, mel_bins: int, image: int, patch: int, mask_ratio: float) -> None:
        super().__init__()
        self.patch, self.mask_ratio = patch, mask_ratio
        self.patch_a, self.patch_v = nn.Conv2d(1, dim, patch, patch), nn.Conv2d(3, dim, patch, patch)
        grid_a, grid_v = (mel_bins // patch, audio_frames // patch), (image // patch, image // patch)
        self.num_audio = grid_a[0] * grid_a[1]
        self.register_buffer("pos_a", sincos_2d(dim, *grid_a)[None])
        self.register_buffer("pos_v", sincos_2d(dim, *grid_v)[None])
        self.register_buffer("decoder_pos", torch.cat([sincos_2d(decoder_dim, *grid_a), sincos_2d(decoder_dim, *grid_v)])[None])
        self.modality_a, self.modality_v = (nn.Parameter(torch.randn(1, 1, dim) * 0.02) for _ in range(2))
        self.blocks_a = nn.ModuleList(_RefBlock(dim, heads) for _ in range(depth))
        self.blocks_v = nn.ModuleList(_RefBlock(dim, heads) for _ in range(depth))
        self.joint = _RefBlock(dim, heads)
        self.norm, self.norm_a, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.randn(1, 1, decoder_dim) * 0.02)
        self.decoder_modality_a, self.decoder_modality_v = (nn.Parameter(torch.randn(1, 1, decoder_dim) * 0.02)
                                                            for _ in range(2))
        self.decoder_blocks = nn.ModuleList(_RefBlock(decoder_dim, decoder_heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.pred_a, self.pred_v = nn.Linear(decoder_dim, patch * patch), nn.Linear(decoder_dim, patch * patch * 3)

    def _unshuffle(self, kept: torch.Tensor, mask: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        hidden = int(mask[0].sum())
        full = torch.cat([kept, self.mask_token.repeat(kept.shape[0], hidden, 1)], dim=1)
        return full.gather(1, restore[:, :, None].expand(-1, -1, kept.shape[2]))

    def forward(self, audio: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """audio (B, frames, mel), image (B, 3, H, W) -> the total loss."""
        spectrogram = audio.unsqueeze(1).transpose(2, 3)  # (B, 1, mel, frames)
        a = self.patch_a(spectrogram).flatten(2).transpose(1, 2) + self.pos_a + self.modality_a
        v = self.patch_v(image).flatten(2).transpose(1, 2) + self.pos_v + self.modality_v
        a, mask_a, restore_a = _ref_masking(a, self.mask_ratio)
        v, mask_v, restore_v = _ref_masking(v, self.mask_ratio)
        for block in self.blocks_a:
            a = block(a)
        for block in self.blocks_v:
            v = block(v)
        x = self.norm(self.joint(torch.cat([a, v], dim=1)))
        pooled_a, pooled_v = self.norm_a(self.joint(a, "a")).mean(dim=1), self.norm_v(self.joint(v, "v")).mean(dim=1)

        x = self.decoder_embed(x)
        kept_a = a.shape[1]
        x = torch.cat([self._unshuffle(x[:, :kept_a], mask_a, restore_a),
                       self._unshuffle(x[:, kept_a:], mask_v, restore_v)], dim=1) + self.decoder_pos
        x = torch.cat([x[:, :self.num_audio] + self.decoder_modality_a, x[:, self.num_audio:] + self.decoder_modality_v], 1)
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_norm(x)
        loss_mae = (_ref_mae_loss(self.pred_a(x[:, :self.num_audio]), _ref_patchify(spectrogram, self.patch), mask_a)
                    + _ref_mae_loss(self.pred_v(x[:, self.num_audio:]), _ref_patchify(image, self.patch), mask_v))

        scores = F.normalize(pooled_a, dim=-1) @ F.normalize(pooled_v, dim=-1).T / 0.05
        log_p = scores.log_softmax(dim=0)
        nce = -log_p.diagonal().mean()
        accuracy = (log_p.argmax(dim=0) == torch.arange(len(scores), device=scores.device)).float().mean()
        return loss_mae + 0.01 * nce + 0.0 * accuracy


def avssl_at_cavmae_shapes() -> ModelConfig:
    """avssl's model configured as `CavMaeReference`: one 112 px frame (1 x 16 x 16 tubelets), 256 x 128
    fbank, random masking of both at 0.75, contrastive from the masked forward, video to audio only,
    local negatives, weight 0.01 at temperature 0.05, LayerNorm eps 1e-5 (torch's, CAV-MAE's)."""
    c = CAVMAE_SHAPES
    return ModelConfig(
        name="cavmae-shapes", embed_dim=c["dim"], depth=c["depth"], joint_depth=1, num_heads=c["heads"],
        norm_eps=1e-5, num_frames=1, frame_size=c["image"], tubelet=(1, c["patch"], c["patch"]),
        num_mel_bins=c["mel_bins"], audio_frames=c["audio_frames"], audio_patch=c["patch"],
        decoder_dim=c["decoder_dim"], decoder_depth=c["decoder_depth"], decoder_heads=c["decoder_heads"],
        video_mask_ratio=c["mask_ratio"], audio_mask_ratio=c["mask_ratio"], video_masking="random",
        contrastive_view="masked", contrastive_directions="video_to_audio", contrastive_gather="local",
        contrastive_weight=0.01, temperature=0.05,
    )


def reference_step(batch: int) -> Callable[[], None]:
    """One training step of `CavMaeReference` (forward, backward, torch's default AdamW) on random inputs."""
    c = CAVMAE_SHAPES
    model = CavMaeReference(**c).train()
    audio, image = torch.randn(batch, c["audio_frames"], c["mel_bins"]), torch.randn(batch, 3, c["image"], c["image"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        model(audio, image).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def vs_cavmae(batch: int, rounds: int, steps: int, profile: bool, compile: bool = False) -> None:
    """Print avssl's and the reference's step times from `rounds` alternating rounds of `steps` steps each
    (after a warm-up step of each): per round, the fastest and the median round of each, and the median
    of the per-round ratios (the figure to quote on a shared machine: each compares neighbouring steps).
    `compile`: also avssl's step with its forward through `torch.compile`, in the same rounds (the
    reference stays eager, as CAV-MAE runs)."""
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    steps_of = {"avssl": training_step(create_model(avssl_at_cavmae_shapes()).train(), batch, cpu)}
    if compile:
        steps_of["avssl compiled"] = training_step(create_model(avssl_at_cavmae_shapes()).train(), batch, cpu, True)
    steps_of["reference"] = reference_step(batch)
    ours = [name for name in steps_of if name != "reference"]
    print(f"CAV-MAE shapes {CAVMAE_SHAPES}, batch {batch}, fp32 CPU, {torch.get_num_threads()} threads")
    for step in steps_of.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps_of}
    for round_ in range(rounds):
        for name, step in steps_of.items():
            times[name].append(seconds_per_step(step, steps, cpu, warm_up=False))
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {t[-1]:.3f} s/step" for name, t in times.items()))
    for name in ours:
        for label, pick in (("fastest", min), ("median", statistics.median)):
            avssl, reference = pick(times[name]), pick(times["reference"])
            print(f"{label} round: {name} {avssl:.3f} s/step, CAV-MAE reference {reference:.3f} s/step "
                  f"({avssl / reference:.2f}x)")
        ratios = [a / r for a, r in zip(times[name], times["reference"])]  # each from back-to-back steps
        print(f"median of the rounds' ratios: {name} takes {statistics.median(ratios):.2f}x the reference's step time")
    if profile:
        for name, step in steps_of.items():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                step()
            print(f"--- {name}: one step, top operators by self CPU time")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per size (after one warm-up)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per size and device")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--vs-cavmae", action="store_true", help="avssl's step against CAV-MAE's at equal shapes")
    parser.add_argument("--rounds", type=int, default=5, help="--vs-cavmae: alternating rounds of --steps steps each")
    parser.add_argument("--profile", action="store_true", help="--vs-cavmae: torch.profiler table of one step of each")
    parser.add_argument("--compile", action="store_true", help="--vs-cavmae: avssl's forward through torch.compile")
    args = parser.parse_args()
    if args.vs_cavmae:
        vs_cavmae(args.batch_size or 16, args.rounds, args.steps, args.profile, args.compile)
        return
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    peak = matmul_peak(device)
    kind = "bf16" if device.type == "cuda" else "fp32"
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {label}; measured {kind} matmul peak {peak / 1e12:.3f} TFLOP/s")
    print(f"{'size':6} {'params':>8} {'batch':>5} {'step s':>8} {'samples/s':>10} {'GFLOP/sample':>12} "
          f"{'TFLOP/s':>8} {'MFU':>6} {'mem GB':>7}")
    for name in args.sizes:
        batch = args.batch_size or DEFAULT_BATCH[device.type][name]
        r = bench_size(name, batch, args.steps, device, args.grad_checkpointing)
        mfu = r["achieved_tflops"] * 1e12 / peak
        print(f"{name:6} {r['params_m']:7.1f}M {batch:5d} {r['step_s']:8.3f} {r['samples_s']:10.2f} "
              f"{r['gflops_sample']:12.1f} {r['achieved_tflops']:8.3f} {mfu:6.1%} {r['peak_mem_gb']:7.2f}")


if __name__ == "__main__":
    main()
