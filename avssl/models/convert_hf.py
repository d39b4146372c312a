"""Import local transformers checkpoints into an `AVModel`: ViT / ViT-MAE image weights (inflated into
the video encoder's tubelets), VideoMAE into the video encoder, AST into the audio encoder.

    >>> ckpt = read_transformers("checkpoints/videomae-base")          # a local folder
    >>> model = avssl.create_model(transformers_model_config(ckpt))    # shaped after the checkpoint
    >>> print(load_transformers_weights(model, ckpt).summary())

Reads `config.json` + `model.safetensors` (or a sharded index, or `pytorch_model.bin`) as
`save_pretrained` writes them, in transformers' on-disk key layout
(`encoder.layer.N.attention.attention.query`, ...); nothing is downloaded. Layer i of the source
fills modality block i while i < `depth`, then joint block i - depth; `num_hidden_layers` must equal
`depth + joint_depth`.

What changes on the way (each recorded in the report's notes):
- CLS / distillation tokens: dropped (avssl encoders have none and mean-pool); the position
  embeddings of the patch grid are kept, resampled when the model's grid differs.
- an image kernel (D, 3, p, p) becomes a tubelet kernel repeated over t frames and divided by t,
  exact on clips whose t frames within a tubelet are equal; a 2-D position table is shared by
  every time step. For audio ("both"), the image kernel is summed over RGB (CAV-MAE's recipe).
- query/key/value are packed into `attn.qkv`; VideoMAE has no key bias, so it is zero.
- the modality embedding is set to zero (the source has none), which keeps the math identical.
- VideoMAE's positions are a fixed 1-D sinusoid table over the flattened (t, h, w) grid, rebuilt here.
The encoder then computes the same token features as the transformers model on the patch tokens
wherever the architectures coincide (tests/models/test_convert_hf.py checks this).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from avssl.models.av_model import AVModel
from avssl.models.config import ModelConfig, config_from_dict
from avssl.models.convert_utils import (ImportReport, apply_weights, image_table_for_video, inflate_kernel,
                                        place_positions, read_state_dict)

Target = Literal["auto", "video", "audio", "both"]
MODEL_TYPES: dict[str, str] = {
    "vit": "vit", "vit_mae": "vit_mae", "videomae": "videomae", "audio-spectrogram-transformer": "ast",
}
KINDS: tuple[str, ...] = tuple(MODEL_TYPES.values())
_BASE_PREFIXES = ("vit.", "videomae.", "audio_spectrogram_transformer.")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_PREPROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")
_STREAMS = {"video": ("video_encoder", "_v"), "audio": ("audio_encoder", "_a")}


@dataclass
class TransformersCheckpoint:
    """A transformers model read from disk: its kind, config.json values, backbone tensors (task
    prefixes such as `vit.` removed; heads and decoders keep their names and end up unused) and the
    values of its (video_)preprocessor_config.json when present (input mean/std)."""

    kind: str
    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    path: str
    preprocessing: dict[str, Any]


def read_transformers(path: str | Path, kind: str = "auto") -> TransformersCheckpoint:
    """Read a local transformers model folder. `kind`: one of KINDS, or "auto" (from config.json's
    `model_type`)."""
    folder = Path(path)
    if not folder.is_dir():
        hint = (" (this looks like a Hub id: download it first, e.g. `huggingface-cli download "
                f"{path} --local-dir DIR`, and pass DIR)") if "/" in str(path) and not folder.exists() else ""
        raise FileNotFoundError(f"{path}: not a local transformers model folder{hint}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found; a transformers model folder holds config.json and weights")
    config = json.loads(config_file.read_text())
    model_type = config.get("model_type", "")
    if kind == "auto":
        if model_type not in MODEL_TYPES:
            raise ValueError(f"{folder}: model_type {model_type!r} is not one of {', '.join(MODEL_TYPES)}")
        kind = MODEL_TYPES[model_type]
    elif kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; choose auto or one of {', '.join(KINDS)}")
    weights = next((folder / name for name in _WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{folder}: no weights ({' or '.join(_WEIGHT_FILES)})")
    state = read_state_dict(weights)
    for prefix in _BASE_PREFIXES:
        state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    preprocessing: dict[str, Any] = {}
    for name in _PREPROCESSOR_FILES:
        if (folder / name).is_file():
            preprocessing.update(json.loads((folder / name).read_text()))
    return TransformersCheckpoint(kind, config, state, str(folder), preprocessing)


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def source_grid(ckpt: TransformersCheckpoint) -> tuple[int, ...]:
    """Token grid the checkpoint was trained on: (rows, cols) for images, (t, rows, cols) for
    VideoMAE, (frequency, time) for AST (whose patches may overlap: strides below the patch size)."""
    cfg = ckpt.config
    if ckpt.kind == "ast":
        patch = cfg.get("patch_size", 16)
        return ((cfg.get("num_mel_bins", 128) - patch) // cfg.get("frequency_stride", 10) + 1,
                (cfg.get("max_length", 1024) - patch) // cfg.get("time_stride", 10) + 1)
    (height, width), (ph, pw) = _pair(cfg.get("image_size", 224)), _pair(cfg.get("patch_size", 16))
    if ckpt.kind == "videomae":
        return cfg.get("num_frames", 16) // cfg.get("tubelet_size", 2), height // ph, width // pw
    return height // ph, width // pw


def videomae_positions(num_positions: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed table (N, D): channel j of position p is sin (j even) or cos (j odd) of
    p / 10000^(2 * (j // 2) / D), over the flattened token index."""
    exponent = 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] / 10000 ** exponent[None, :]
    angles[:, 0::2] = angles[:, 0::2].sin()
    angles[:, 1::2] = angles[:, 1::2].cos()
    return angles.float()


def _check(ckpt: TransformersCheckpoint, model: AVModel, target: str, report: ImportReport) -> None:
    """Raise ValueError for what cannot be reconciled; note what only approximately matches."""
    cfg, mc = ckpt.config, model.config
    layers = cfg.get("num_hidden_layers", 12)
    problems = []
    if cfg.get("hidden_size") != mc.embed_dim:
        problems.append(f"hidden_size {cfg.get('hidden_size')} vs embed_dim {mc.embed_dim}")
    if cfg.get("num_attention_heads") != mc.num_heads:
        problems.append(f"num_attention_heads {cfg.get('num_attention_heads')} vs num_heads {mc.num_heads}")
    if layers != mc.depth + mc.joint_depth:
        problems.append(f"{layers} layers vs depth {mc.depth} + joint_depth {mc.joint_depth}")
    if cfg.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act {cfg.get('hidden_act')!r} (avssl blocks use exact GELU)")
    patch = _pair(cfg.get("patch_size", 16))
    if target in ("video", "both") and tuple(mc.tubelet[1:]) != patch:
        problems.append(f"patch size {patch} vs tubelet {mc.tubelet} (height, width must match)")
    if ckpt.kind == "videomae" and mc.tubelet[0] != cfg.get("tubelet_size", 2):
        problems.append(f"tubelet_size {cfg.get('tubelet_size', 2)} vs tubelet {mc.tubelet} (frames must match)")
    if target in ("audio", "both") and mc.audio_patch != patch[0]:
        problems.append(f"patch size {patch[0]} vs audio_patch {mc.audio_patch}")
    if problems:
        raise ValueError(f"{ckpt.path} ({ckpt.kind}) does not fit the model ({mc.name}): " + "; ".join(problems)
                         + ". Build the model with matching fields (see transformers_model_config).")
    eps = cfg.get("layer_norm_eps", 1e-12)
    if not math.isclose(eps, mc.norm_eps):
        report.note(f"LayerNorm eps {eps:g} in the source, {mc.norm_eps:g} in the model (build it with "
                    f"norm_eps={eps:g} for identical outputs)")


def _take(state: dict[str, torch.Tensor], used: set[str], key: str) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"checkpoint has no tensor {key!r}; is it a ViT / ViT-MAE / VideoMAE / AST encoder?")
    used.add(key)
    return state[key]


def _layer(state: dict[str, torch.Tensor], used: set[str], i: int) -> dict[str, torch.Tensor]:
    """Encoder layer i in avssl's block names (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2)."""
    src = f"encoder.layer.{i}."
    attn = src + "attention.attention."
    weights = [_take(state, used, f"{attn}{name}.weight") for name in ("query", "key", "value")]
    biases = []
    for name, short in (("query", "q"), ("key", "k"), ("value", "v")):
        key = next((k for k in (f"{attn}{name}.bias", f"{attn}{short}_bias") if k in state), None)
        biases.append(_take(state, used, key) if key else torch.zeros(weights[0].shape[0]))
    out = {"attn.qkv.weight": torch.cat(weights), "attn.qkv.bias": torch.cat(biases)}
    for ours, theirs in (("norm1", "layernorm_before"), ("norm2", "layernorm_after"),
                         ("attn.proj", "attention.output.dense"), ("mlp.fc1", "intermediate.dense"),
                         ("mlp.fc2", "output.dense")):
        for param in ("weight", "bias"):
            out[f"{ours}.{param}"] = _take(state, used, f"{src}{theirs}.{param}")
    return out


def _place_layers(weights: dict[str, torch.Tensor], layers: list[dict[str, torch.Tensor]], model: AVModel,
                  streams: list[str]) -> None:
    """Source layers into the modality blocks of each stream, then into the joint blocks: shared
    attention/MLP, plus the joint norms of the imported streams (all three norms for both streams)."""
    depth = model.config.depth
    for i, layer in enumerate(layers):
        for name, value in layer.items():
            if i < depth:
                for stream in streams:
                    weights[f"{_STREAMS[stream][0]}.blocks.{i}.{name}"] = value
                continue
            prefix = f"joint_blocks.{i - depth}."
            if not name.startswith("norm"):
                weights[prefix + name] = value
                continue
            norm, param = name.split(".")
            suffixes = [_STREAMS[s][1] for s in streams] + ([""] if len(streams) == 2 else [])
            for suffix in suffixes:
                weights[f"{prefix}{norm}{suffix}.{param}"] = value


def _patch_and_positions(ckpt: TransformersCheckpoint, model: AVModel, streams: list[str], used: set[str],
                         weights: dict[str, torch.Tensor], report: ImportReport) -> None:
    state, grid = ckpt.state, source_grid(ckpt)
    kernel = _take(state, used, "embeddings.patch_embeddings.projection.weight")
    bias = _take(state, used, "embeddings.patch_embeddings.projection.bias")
    if ckpt.kind == "videomae":
        table = videomae_positions(math.prod(grid), kernel.shape[0])
    else:
        extra = 2 if ckpt.kind == "ast" else 1  # CLS (+ distillation) rows come first
        table = _take(state, used, "embeddings.position_embeddings")[0, extra:]
        dropped = [k for k in ("embeddings.cls_token", "embeddings.distillation_token") if k in state]
        used.update(dropped)
        report.note(f"{' and '.join(k.split('.')[-1] for k in dropped)} dropped (avssl encoders have none); "
                    "patch-grid positions kept")
    strides = (ckpt.config.get("frequency_stride", 10), ckpt.config.get("time_stride", 10))
    if ckpt.kind == "ast" and min(strides) < kernel.shape[-1]:
        report.note(f"AST strides {strides} overlap its {kernel.shape[-1]}x{kernel.shape[-1]} patches; avssl "
                    "patches do not, so features differ until fine-tuned")
    if "video" in streams:
        enc = model.video_encoder
        if kernel.ndim == 4:  # an image model
            kernel3d = inflate_kernel(kernel, model.config.tubelet[0], report)
            table3d = image_table_for_video(table, grid, enc.pos_embed.grid, report, "video")
        else:
            kernel3d, table3d = kernel, table
        weights["video_encoder.patch_embed.proj.weight"] = kernel3d
        weights["video_encoder.patch_embed.proj.bias"] = bias
        place_positions(weights, "video_encoder.pos_embed.weight", enc.pos_embed, table3d,
                        enc.pos_embed.grid if kernel.ndim == 4 else grid, report, "video")
    if "audio" in streams:
        if kernel.shape[1] == 3:
            kernel = kernel.sum(dim=1, keepdim=True)
            report.note("audio patch kernel = the RGB image kernel summed over channels")
        weights["audio_encoder.patch_embed.proj.weight"] = kernel
        weights["audio_encoder.patch_embed.proj.bias"] = bias
        place_positions(weights, "audio_encoder.pos_embed.weight", model.audio_encoder.pos_embed, table, grid,
                        report, "audio")


def _final_norms(ckpt: TransformersCheckpoint, model: AVModel, streams: list[str], used: set[str],
                 weights: dict[str, torch.Tensor], report: ImportReport) -> None:
    if "layernorm.weight" not in ckpt.state:
        report.note("the source has no final token norm (VideoMAE with use_mean_pooling); the encoder's "
                    "`norm` is left as initialised")
        return
    targets = [_STREAMS[s][0] + ".norm" for s in streams] + (["joint_norm"] if len(streams) == 2 else [])
    for param in ("weight", "bias"):
        value = _take(ckpt.state, used, f"layernorm.{param}")
        for target in targets:
            weights[f"{target}.{param}"] = value


def _streams(kind: str, target: str) -> list[str]:
    allowed = {"vit": ("video", "audio", "both"), "vit_mae": ("video", "audio", "both"),
               "videomae": ("video",), "ast": ("audio",)}[kind]
    if target == "auto":
        target = allowed[0]
    if target not in allowed:
        raise ValueError(f"a {kind} checkpoint imports into target {' / '.join(allowed)}, not {target!r}")
    return ["video", "audio"] if target == "both" else [target]


def load_transformers_weights(model: AVModel, source: str | Path | TransformersCheckpoint, kind: str = "auto",
                              target: Target = "auto") -> ImportReport:
    """Import a local transformers checkpoint folder into `model` (in place) and return the report.

    kind: "auto" (config.json's model_type) or one of KINDS. target: which stream receives the
    weights: "video" (default for ViT / ViT-MAE / VideoMAE), "audio" (default for AST; an image ViT
    is accepted too) or "both" (an image ViT into both encoders, CAV-MAE's ImageNet initialisation).
    Joint blocks are shared by the streams: a one-stream import writes their attention/MLP and that
    stream's norms only. Raises ValueError when widths, depths, heads or patch sizes disagree.
    """
    ckpt = source if isinstance(source, TransformersCheckpoint) else read_transformers(source, kind)
    streams = _streams(ckpt.kind, target)
    report = ImportReport(f"{ckpt.path} ({ckpt.kind})")
    _check(ckpt, model, "both" if len(streams) == 2 else streams[0], report)
    used: set[str] = set()
    weights: dict[str, torch.Tensor] = {}
    layers = [_layer(ckpt.state, used, i) for i in range(model.config.depth + model.config.joint_depth)]
    _place_layers(weights, layers, model, streams)
    if model.config.joint_depth and len(streams) == 1:
        other = "audio" if streams == ["video"] else "video"
        report.note(f"the {model.config.joint_depth} joint block(s) are shared: their attention/MLP now hold "
                    f"this checkpoint's last layer(s), for the {other} stream too")
    _patch_and_positions(ckpt, model, streams, used, weights, report)
    _final_norms(ckpt, model, streams, used, weights, report)
    for stream in streams:
        weights[f"{_STREAMS[stream][0]}.modality_embed"] = torch.zeros_like(
            getattr(model, _STREAMS[stream][0]).modality_embed)
    report.note("modality embedding set to zero (the source has none)")
    report.unused = sorted(set(ckpt.state) - used)
    return apply_weights(model, weights, report)


def transformers_model_config(source: str | Path | TransformersCheckpoint, base: ModelConfig | None = None,
                              joint_depth: int | None = None) -> ModelConfig:
    """A ModelConfig whose encoder(s) fit the checkpoint exactly: its width, heads, MLP ratio,
    LayerNorm eps, patch size and input size (frames, image size; mel bins and length for AST), the
    input normalisation of its preprocessor config when the folder has one, and learned positions so
    the checkpoint's positions load; other fields come from `base`. The last
    `joint_depth` source layers become joint blocks (default: base's joint_depth)."""
    ckpt = source if isinstance(source, TransformersCheckpoint) else read_transformers(source)
    cfg, base = ckpt.config, base or ModelConfig()
    joint = base.joint_depth if joint_depth is None else joint_depth
    layers = cfg.get("num_hidden_layers", 12)
    if not 0 <= joint <= layers:
        raise ValueError(f"joint_depth {joint} does not fit a {layers}-layer checkpoint")
    patch = _pair(cfg.get("patch_size", 16))[0]
    values: dict[str, Any] = {
        "embed_dim": cfg["hidden_size"], "num_heads": cfg["num_attention_heads"], "depth": layers - joint,
        "joint_depth": joint, "mlp_ratio": cfg["intermediate_size"] / cfg["hidden_size"],
        "norm_eps": cfg.get("layer_norm_eps", 1e-12), "pos_embed": "learned",
        "name": f"{base.name}-{ckpt.kind}",
    }
    pre = ckpt.preprocessing
    if ckpt.kind == "ast":
        length = cfg.get("max_length", 1024)
        values.update(audio_patch=patch, num_mel_bins=cfg.get("num_mel_bins", 128),
                      audio_frames=length - length % patch,
                      audio_channel=0)  # AST's dataloader: kaldi.fbank of the file's first channel
        if pre.get("do_normalize", True) and "mean" in pre and "std" in pre:
            values.update(fbank_mean=float(pre["mean"]), fbank_std=2 * float(pre["std"]))  # AST divides by 2 std
    else:
        depth = cfg.get("tubelet_size", base.tubelet[0]) if ckpt.kind == "videomae" else base.tubelet[0]
        values.update(tubelet=(depth, patch, patch), frame_size=_pair(cfg.get("image_size", 224))[0],
                      audio_patch=patch)
        if ckpt.kind == "videomae":
            values["num_frames"] = cfg.get("num_frames", 16)
        if pre.get("do_normalize", True) and "image_mean" in pre and "image_std" in pre:
            values.update(image_mean=tuple(pre["image_mean"]), image_std=tuple(pre["image_std"]))
    return config_from_dict(values, base=base)
