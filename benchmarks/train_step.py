"""Pretraining step throughput of the audio-visual model, per model size.

For each size: time of one forward + backward + AdamW step on synthetic inputs at the config's clip
size, samples/s, FLOPs per sample (counted by torch.utils.flop_counter on one step), the device's
dense matmul throughput measured in the same run (bf16 on CUDA, fp32 on CPU) and the model FLOP
utilisation MFU = achieved FLOP/s / measured matmul FLOP/s. CUDA steps run under bf16 autocast.

    python benchmarks/train_step.py --sizes tiny small --steps 5
    python benchmarks/train_step.py --sizes base --device cuda --batch-size 32 --grad-checkpointing
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from avssl.models.factory import create_model

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


def training_step(model: torch.nn.Module, batch: int, device: torch.device) -> Callable[[], None]:
    """One forward + backward + AdamW step of `model` (an AVModel) on fixed random inputs of its
    config's clip shape; bf16 autocast on CUDA."""
    cfg = model.config
    video = torch.randn(batch, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size, device=device)
    audio = torch.randn(batch, cfg.audio_frames, cfg.num_mel_bins, device=device)
    has_audio = torch.ones(batch, dtype=torch.bool, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with autocast:
            loss = model(video, audio, has_audio)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def seconds_per_step(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Mean wall time of `steps` calls of `step`, after one untimed warm-up call."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per size (after one warm-up)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per size and device")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--grad-checkpointing", action="store_true")
    args = parser.parse_args()
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
