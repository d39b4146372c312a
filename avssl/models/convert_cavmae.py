"""Import CAV-MAE checkpoints (Gong et al., ICLR 2023, github.com/YuanGongND/cav-mae) into an `AVModel`.

    >>> state = read_cavmae("cav-mae-scale++.pth")
    >>> model = avssl.create_model(cavmae_model_config(state))
    >>> print(import_cavmae(model, state).summary())

avssl's model follows CAV-MAE's layout, so the key map is short (CAV-MAE -> avssl):

    patch_embed_{a,v}.proj     -> {audio,video}_encoder.patch_embed.proj   (video kernel inflated)
    pos_embed_{a,v}            -> {audio,video}_encoder.pos_embed.weight    (learned positions only)
    modality_{a,v}             -> {audio,video}_encoder.modality_embed
    blocks_{a,v}.N.*           -> {audio,video}_encoder.blocks.N.*          (norm1, attn.qkv, attn.proj, norm2, mlp)
    blocks_u.N.*               -> joint_blocks.N.*                          (norm1/_a/_v, norm2/_a/_v too)
    norm_a, norm_v, norm       -> audio_encoder.norm, video_encoder.norm, joint_norm
    decoder_embed, decoder_norm -> decoder.embed, decoder.norm
    mask_token                 -> decoder.mask_token_audio and decoder.mask_token_video (one token in CAV-MAE)
    decoder_modality_{a,v}     -> decoder.modality_{audio,video}
    decoder_pos_embed_{a,v}    -> decoder.pos_embed_{audio,video}.weight
    decoder_blocks.N.*         -> decoder.blocks.N.*
    decoder_pred_{a,v}         -> decoder.head_{audio,video}                (video head repeated per tubelet frame)

CAV-MAE's Block always holds per-stream norms (norm1_a, norm1_v, ...) but runs them only in the
shared layers; those of its modality-specific and decoder blocks are skipped. It has no projection
before the contrastive loss: when `proj_dim == embed_dim`, `video_proj` / `audio_proj` are set to
the identity, so `embed_video` / `embed_audio` are CAV-MAE's L2-normalised mean-pooled features. A
fine-tuned checkpoint's `mlp_head` and any other key are reported as unused. CAV-MAE sees one
frame: with `num_frames=1, tubelet=(1, 16, 16)` the video stream computes exactly CAV-MAE's; with
longer tubelets the kernel is inflated (exact on static clips) and positions are shared over time.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from einops import repeat

from avssl.models.av_model import AVModel
from avssl.models.config import ModelConfig, config_from_dict, get_config
from avssl.models.convert_utils import (ImportReport, apply_weights, image_table_for_video, inflate_kernel,
                                        place_positions, read_state_dict, strip_prefix)

CAVMAE_MEL_BINS = 128  # CAV-MAE's spectrograms are always 128 mel bins: 8 patch rows
_BLOCK_PARAMS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
_STREAM_NORMS = re.compile(r"\.norm[12]_[av]\.(weight|bias)$")
_DIRECT = {
    "modality_a": "audio_encoder.modality_embed", "modality_v": "video_encoder.modality_embed",
    "patch_embed_a.proj.weight": "audio_encoder.patch_embed.proj.weight",
    "patch_embed_a.proj.bias": "audio_encoder.patch_embed.proj.bias",
    "patch_embed_v.proj.bias": "video_encoder.patch_embed.proj.bias",
    "decoder_embed.weight": "decoder.embed.weight", "decoder_embed.bias": "decoder.embed.bias",
    "decoder_modality_a": "decoder.modality_audio", "decoder_modality_v": "decoder.modality_video",
    "decoder_pred_a.weight": "decoder.head_audio.weight", "decoder_pred_a.bias": "decoder.head_audio.bias",
}
_NORMS = {"norm_a": "audio_encoder.norm", "norm_v": "video_encoder.norm", "norm": "joint_norm",
          "decoder_norm": "decoder.norm"}


def read_cavmae(source: str | Path | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CAV-MAE state dict from a .pth (read with weights_only=True) or an in-memory dict, without
    DataParallel's `module.` prefix."""
    state = read_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    state = strip_prefix(state, "module.")
    if "patch_embed_v.proj.weight" not in state or "patch_embed_a.proj.weight" not in state:
        raise ValueError(f"{source if isinstance(source, (str, Path)) else 'state dict'} is not a CAV-MAE "
                         "checkpoint (no patch_embed_a / patch_embed_v)")
    return state


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    return len({key.split(".")[1] for key in state if key.startswith(prefix + ".")})


def _audio_grid(state: dict[str, torch.Tensor], key: str) -> tuple[int, int]:
    rows = CAVMAE_MEL_BINS // state["patch_embed_a.proj.weight"].shape[-1]
    return rows, state[key].shape[1] // rows


def _image_grid(state: dict[str, torch.Tensor], key: str) -> tuple[int, int]:
    side = math.isqrt(state[key].shape[1])
    if side * side != state[key].shape[1]:
        raise ValueError(f"{key} has {state[key].shape[1]} positions, not a square image grid")
    return side, side


def cavmae_model_config(state: dict[str, torch.Tensor], base: ModelConfig | None = None) -> ModelConfig:
    """A ModelConfig that fits the checkpoint: widths, depths, MLP ratio, image size, spectrogram length
    and decoder read from the tensors; heads as CAV-MAE sets them (64-d heads in the encoder, 32-d in
    the decoder: 12 and 16 at base size); LayerNorm eps 1e-5 (torch's default, which CAV-MAE uses);
    learned positions; `proj_dim = embed_dim`; CAV-MAE's input pipeline (first audio channel, evaluation
    view resized straight to the crop, spectrograms padded to the table's length). Clip settings (frames, tubelet depth) come from `base`
    (default: "base"); pass `num_frames=1, tubelet=(1, 16, 16)` through it for CAV-MAE's one frame."""
    base = base or get_config("base")
    dim = state["modality_v"].shape[-1]
    patch = state["patch_embed_v.proj.weight"].shape[-1]
    values: dict[str, Any] = {
        "name": "cavmae", "embed_dim": dim, "num_heads": max(1, dim // 64),
        "depth": _count(state, "blocks_v"), "joint_depth": _count(state, "blocks_u"),
        "mlp_ratio": state["blocks_v.0.mlp.fc1.weight"].shape[0] / dim, "norm_eps": 1e-5, "pos_embed": "learned",
        "frame_size": _image_grid(state, "pos_embed_v")[0] * patch, "tubelet": (base.tubelet[0], patch, patch),
        "num_mel_bins": CAVMAE_MEL_BINS, "audio_patch": patch,
        "audio_frames": _audio_grid(state, "pos_embed_a")[1] * patch, "proj_dim": dim,
        # CAV-MAE's data path: the first audio channel (sox remix 1), frames resized straight to the crop
        # (T.Resize(224) + T.CenterCrop(224)); the spectrogram is padded to audio_frames (1024)
        "audio_channel": 0, "eval_crop_fraction": 1.0,
    }
    if "decoder_embed.weight" in state:
        decoder_dim = state["decoder_embed.weight"].shape[0]
        values.update(decoder_dim=decoder_dim, decoder_depth=_count(state, "decoder_blocks"),
                      decoder_heads=max(1, decoder_dim // 32))
    return config_from_dict(values, base=base, where="CAV-MAE config")


def _check(state: dict[str, torch.Tensor], model: AVModel) -> None:
    mc = model.config
    found = {"embed_dim": state["modality_v"].shape[-1], "depth": _count(state, "blocks_v"),
             "joint_depth": _count(state, "blocks_u")}
    problems = [f"{name} {value} in the checkpoint vs {getattr(mc, name)} in the model"
                for name, value in found.items() if value != getattr(mc, name)]
    if _count(state, "blocks_a") != found["depth"]:
        problems.append(f"{_count(state, 'blocks_a')} audio blocks vs {found['depth']} video blocks")
    patch = state["patch_embed_v.proj.weight"].shape[-1]
    if tuple(mc.tubelet[1:]) != (patch, patch) or mc.audio_patch != patch:
        problems.append(f"patch size {patch} vs tubelet {mc.tubelet} / audio_patch {mc.audio_patch}")
    if "decoder_embed.weight" in state:
        decoder = {"decoder_dim": state["decoder_embed.weight"].shape[0],
                   "decoder_depth": _count(state, "decoder_blocks")}
        problems += [f"{name} {value} in the checkpoint vs {getattr(mc, name)} in the model"
                     for name, value in decoder.items() if value != getattr(mc, name)]
    if problems:
        raise ValueError("CAV-MAE checkpoint does not fit the model: " + "; ".join(problems)
                         + ". Build the model from cavmae_model_config(state).")


def _blocks(state: dict[str, torch.Tensor], used: set[str], weights: dict[str, torch.Tensor]) -> None:
    """Transformer blocks: every parameter of the shared layers, the single-stream ones elsewhere."""
    groups = {"blocks_a": "audio_encoder.blocks", "blocks_v": "video_encoder.blocks",
              "blocks_u": "joint_blocks", "decoder_blocks": "decoder.blocks"}
    for key in state:
        prefix, _, rest = key.partition(".")
        if prefix not in groups:
            continue
        used.add(key)  # the per-stream norms CAV-MAE never runs are skipped on purpose
        if prefix == "blocks_u" or not _STREAM_NORMS.search(key):
            weights[f"{groups[prefix]}.{rest}"] = state[key]


def _positions(state: dict[str, torch.Tensor], model: AVModel, used: set[str], weights: dict[str, torch.Tensor],
               report: ImportReport) -> None:
    video_dims = {"pos_embed_v": ("video_encoder.pos_embed", model.video_encoder.pos_embed),
                  "decoder_pos_embed_v": ("decoder.pos_embed_video", model.decoder.pos_embed_video)}
    audio_dims = {"pos_embed_a": ("audio_encoder.pos_embed", model.audio_encoder.pos_embed),
                  "decoder_pos_embed_a": ("decoder.pos_embed_audio", model.decoder.pos_embed_audio)}
    for key, (name, module) in video_dims.items():
        if key in state:
            used.add(key)
            table = image_table_for_video(state[key][0], _image_grid(state, key), module.grid, report, key)
            place_positions(weights, f"{name}.weight", module, table, module.grid, report, key)
    for key, (name, module) in audio_dims.items():
        if key in state:
            used.add(key)
            place_positions(weights, f"{name}.weight", module, state[key][0], _audio_grid(state, key), report, key)


def import_cavmae(model: AVModel, source: str | Path | dict[str, torch.Tensor],
                  name: str | None = None) -> ImportReport:
    """Load a CAV-MAE pretrained (or fine-tuned) checkpoint into `model` in place; returns the report
    (its `missing` / `unused` list what had no counterpart). The model must have CAV-MAE's widths and
    depths (`cavmae_model_config`); head counts cannot be read from weights, so they are trusted.
    Raises ValueError, leaving the model unchanged, when anything does not fit. `name`: how the report
    names the source (default: the path, or "CAV-MAE state dict")."""
    state = read_cavmae(source)
    report = ImportReport(name or (str(source) if isinstance(source, (str, Path)) else "CAV-MAE state dict"))
    _check(state, model)
    used: set[str] = set()
    weights: dict[str, torch.Tensor] = {}
    for theirs, ours in _DIRECT.items():
        if theirs in state:
            used.add(theirs)
            weights[ours] = state[theirs]
    for theirs, ours in _NORMS.items():
        for param in ("weight", "bias"):
            if f"{theirs}.{param}" in state:
                used.add(f"{theirs}.{param}")
                weights[f"{ours}.{param}"] = state[f"{theirs}.{param}"]
    used.add("patch_embed_v.proj.weight")
    weights["video_encoder.patch_embed.proj.weight"] = inflate_kernel(
        state["patch_embed_v.proj.weight"], model.config.tubelet[0], report)
    if "mask_token" in state:
        used.add("mask_token")
        weights["decoder.mask_token_audio"] = weights["decoder.mask_token_video"] = state["mask_token"]
    for param in ("weight", "bias"):
        key = f"decoder_pred_v.{param}"
        if key in state:  # one frame's (row, col, channel) pixels, predicted alike for every tubelet frame
            used.add(key)
            weights[f"decoder.head_video.{param}"] = repeat(state[key], "s ... -> (t s) ...",
                                                            t=model.config.tubelet[0])
    _blocks(state, used, weights)
    _positions(state, model, used, weights, report)
    if model.config.proj_dim == model.config.embed_dim:
        for proj in ("video_proj", "audio_proj"):
            weights[f"{proj}.weight"] = torch.eye(model.config.embed_dim)
            weights[f"{proj}.bias"] = torch.zeros(model.config.embed_dim)
        report.note("video_proj / audio_proj set to the identity (CAV-MAE has no projection)")
    else:
        report.note(f"proj_dim {model.config.proj_dim} != embed_dim: video_proj / audio_proj left as initialised")
    report.unused = sorted(set(state) - used)
    return apply_weights(model, weights, report)
