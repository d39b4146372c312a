"""Export the two embedding functions of an `AVModel` as graphs that run without avssl's Python code:
`embed_video` (B, T, 3, H, W) -> (B, proj_dim) and `embed_audio` (B, frames, mel) -> (B, proj_dim),
L2-normalised, with the batch size free and the clip shape of the model's config.

- "pt2": `torch.export` programs (`video.pt2`, `audio.pt2`), read back with `torch.export.load(path).module()`;
  needs nothing beyond torch.
- "onnx": ONNX models (`video.onnx`, `audio.onnx`; input "video" / "audio", output "embedding") through
  torch's dynamo exporter; needs the `onnx` and `onnxscript` packages, and `onnxruntime` to check the
  result (all three in `pip install 'avssl[export]'`).

Every export is checked against the eager model on a random batch of another batch size than the one
traced; `ExportedGraph.max_abs_diff` says by how much they differ (ValueError above `tolerance`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from avssl.models.av_model import AVModel

log = logging.getLogger(__name__)

GraphFormat = Literal["pt2", "onnx"]
Runner = Callable[[torch.Tensor], torch.Tensor]  # an exported function, run on one input
FORMATS: tuple[str, ...] = ("pt2", "onnx")
MODALITIES: tuple[str, ...] = ("video", "audio")


class EmbeddingFunction(nn.Module):
    """One modality's `AVModel.embed_<modality>` as a module of one tensor, the form exporters trace."""

    def __init__(self, model: AVModel, modality: str) -> None:
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, f"embed_{self.modality}")(x)


@dataclass
class ExportedGraph:
    """One exported embedding function: where it is and how far it is from the eager model."""

    modality: str
    path: Path
    max_abs_diff: float


def example_input(model: AVModel, modality: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A random input of the model's clip shape: (batch, T, 3, S, S) frames or (batch, frames, mel) log-mel."""
    cfg = model.config
    shape = ((batch, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size) if modality == "video"
             else (batch, cfg.audio_frames, cfg.num_mel_bins))
    device = next(model.parameters()).device
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)


def _pt2(function: EmbeddingFunction, x: torch.Tensor, path: Path) -> Runner | None:
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(function, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return torch.export.load(str(path)).module()


def _onnx(function: EmbeddingFunction, x: torch.Tensor, path: Path) -> Runner | None:
    try:
        import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)
    except ImportError:
        raise ValueError("--format onnx needs the onnx and onnxscript packages: pip install 'avssl[export]' "
                         "(or use --format pt2, which needs nothing beyond torch)") from None
    torch.onnx.export(function, (x,), str(path), dynamo=True, input_names=[function.modality],
                      output_names=["embedding"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    try:
        import onnxruntime
    except ImportError:
        log.warning("onnxruntime is not installed: %s is not checked against the eager model", path)
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda y: torch.from_numpy(session.run(None, {function.modality: y.cpu().numpy()})[0])


def export_embedding_functions(model: AVModel, out: str | Path, fmt: GraphFormat = "pt2",
                               tolerance: float = 1e-4) -> list[ExportedGraph]:
    """Write `out/video.<fmt>` and `out/audio.<fmt>` and check each against the eager model on a batch
    of 3 (traced with 2); ValueError when they differ by more than `tolerance`. An onnx export without
    onnxruntime installed is written unchecked (max_abs_diff NaN)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not isinstance(model, AVModel):
        raise ValueError(f"{type(model).__name__}: graphs are exported for a pretraining AVModel's embeddings")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    exported = []
    for modality in MODALITIES:
        function = EmbeddingFunction(model, modality).eval()
        path = out / f"{modality}.{fmt}"
        with torch.no_grad():
            run = (_pt2 if fmt == "pt2" else _onnx)(function, example_input(model, modality), path)
            check = example_input(model, modality, batch=3, seed=1)
            diff = float("nan") if run is None else float((run(check).to(check.device) - function(check)).abs().max())
        if diff > tolerance:
            raise ValueError(f"{path}: the exported {modality} embedding differs from the eager model by {diff:.2e} "
                             f"(more than {tolerance:g})")
        log.info("%s embedding -> %s (max |difference| to eager %.2e)", modality, path, diff)
        exported.append(ExportedGraph(modality, path, diff))
    return exported
