"""Export avssl encoders as transformers models: the video encoder as a ViViT (`VivitModel`), the audio
encoder as an AST (`ASTModel`), each a folder that `transformers.AutoModel.from_pretrained` loads.

    >>> folders = export_transformers(avssl.load_model("runs/pretrain"), "out/hf")   # out/hf/video, out/hf/audio
    >>> video = transformers.AutoModel.from_pretrained(folders["video"]).eval()
    >>> out = video(pixel_values=clips, attention_mask=prefix_token_mask(clips.shape[0], video.config))
    >>> tokens = out.last_hidden_state[:, 1:]      # == avssl's video tokens (within float rounding)

The inverse of `convert_hf` (which imports ViT / VideoMAE / AST weights): the exported encoder of a stream is that stream's `depth` blocks, then
the `joint_depth` shared blocks with that stream's own LayerNorms (`norm1_v` / `norm1_a`, ...), then
the stream's final norm: exactly what `AVModel.embed_video` / `embed_audio` run before pooling.

Why ViViT and AST, and what differs (each also in the README.md written into every folder):
- both keep learned position tables, which hold avssl's positions (sin-cos or learned, on the config's
  token grid) with its modality embedding folded in exactly; VideoMAE recomputes a fixed 1-D sinusoid
  table at load time that cannot hold them, so it is not used;
- both prepend tokens avssl does not have (ViViT a CLS token, AST CLS + distillation), zero here, that
  every token attends to. Passing `prefix_token_mask(...)` as `attention_mask` hides them, and the
  patch tokens (`last_hidden_state[:, n_prefix:]`) then equal avssl's to float rounding (the tests
  check 1e-5); without the mask the patch tokens also attend to the zero tokens and differ;
- tubelet and patch kernels, q/k/v (split from avssl's packed `qkv`), MLPs and norms are copied as
  they are; the token order is the same ((time, row, col) for video, (frequency, time) for audio);
- not exported: the cross-modal joint stream (audio and video attending to each other), the
  projections to the contrastive embedding (`avssl export --format onnx / pt2` has those), a
  classifier's head, and `input_norm="clip"` (subtract each clip's mean over time from the input
  first). ViViT's `pooler_output` (a CLS pooler avssl has no counterpart of) is zero: mean-pool the
  patch tokens, as avssl does.
transformers is imported here only, when an export runs.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avssl.models.av_model import AVModel
from avssl.models.classifier import AVClassifier
from avssl.models.encoders import AudioEncoder, VideoEncoder
from avssl.models.layers import Block

log = logging.getLogger(__name__)

PREFIX_TOKENS = {"vivit": 1, "audio-spectrogram-transformer": 2}  # CLS (+ distillation) before the patches
# avssl block module -> ViViT / AST layer module (transformers 5 names; q/k/v come from the packed qkv)
LAYER_NAMES = (("norm1", "layernorm_before"), ("attn.proj", "attention.o_proj"), ("norm2", "layernorm_after"),
               ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"))


def prefix_token_mask(batch: int, config: Any) -> torch.Tensor:
    """The `attention_mask` (batch, prefix + patches) of an exported ViViT / AST model (its config) that
    hides its CLS / distillation tokens, so that the patch tokens are avssl's."""
    prefix = PREFIX_TOKENS[config.model_type]
    if config.model_type == "vivit":
        frames, (height, width) = config.num_frames, (config.image_size,) * 2
        patches = (frames // config.tubelet_size[0]) * (height // config.tubelet_size[1]) * (width // config.tubelet_size[2])
    else:
        patches = (config.num_mel_bins // config.patch_size) * (config.max_length // config.patch_size)
    mask = torch.ones(batch, prefix + patches, dtype=torch.long)
    mask[:, :prefix] = 0
    return mask


def stream_blocks(backbone: AVModel, stream: str) -> list[tuple[Block, nn.LayerNorm, nn.LayerNorm]]:
    """(block, norm before attention, norm before MLP) of every layer a stream ("v" or "a") runs alone:
    its encoder's blocks, then the joint blocks with that stream's norms."""
    encoder = backbone.video_encoder if stream == "v" else backbone.audio_encoder
    layers = [(block, block.norm1, block.norm2) for block in encoder.blocks]
    return layers + [(block, getattr(block, f"norm1_{stream}"), getattr(block, f"norm2_{stream}"))
                     for block in backbone.joint_blocks]


def _layer_config(backbone: AVModel) -> dict[str, Any]:
    """The transformers config fields of the blocks, shared by ViViT and AST."""
    cfg = backbone.config
    return dict(hidden_size=cfg.embed_dim, num_hidden_layers=cfg.depth + cfg.joint_depth,
                num_attention_heads=cfg.num_heads, intermediate_size=int(cfg.embed_dim * cfg.mlp_ratio),
                hidden_act="gelu", layer_norm_eps=cfg.norm_eps, qkv_bias=True, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)


def _copy(target: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    if target.weight.shape != weight.shape:
        raise ValueError(f"{type(target).__name__}: shape {tuple(target.weight.shape)} vs avssl's {tuple(weight.shape)}")
    target.weight.copy_(weight)
    target.bias.copy_(bias)


@torch.no_grad()
def _fill(hf: nn.Module, backbone: AVModel, encoder: VideoEncoder | AudioEncoder, stream: str,
          patch_proj: nn.Module, prefix: int) -> None:
    """Copy one stream of `backbone` into the transformers model `hf` (ViViT and AST name their layers alike)."""
    _copy(patch_proj, encoder.patch_embed.proj.weight, encoder.patch_embed.proj.bias)
    positions = hf.embeddings.position_embeddings
    positions.zero_()
    positions[0, prefix:] = encoder.pos_embed()[0] + encoder.modality_embed[0]  # both are added to every patch
    for layer, (block, norm1, norm2) in zip(hf.layers, stream_blocks(backbone, stream), strict=True):
        query, key, value = block.attn.qkv.weight.chunk(3)
        query_bias, key_bias, value_bias = block.attn.qkv.bias.chunk(3)
        attention = layer.attention
        pairs = {"q_proj": (query, query_bias), "k_proj": (key, key_bias), "v_proj": (value, value_bias)}
        for name, (weight, bias) in pairs.items():
            _copy(getattr(attention, name), weight, bias)
        for ours, theirs in LAYER_NAMES:
            source = {"norm1": norm1, "norm2": norm2}.get(ours) or block.get_submodule(ours)
            _copy(layer.get_submodule(theirs), source.weight, source.bias)
    _copy(hf.layernorm, encoder.norm.weight, encoder.norm.bias)


def _transformers() -> Any:
    """The transformers package, or a ValueError saying how to install it (an optional extra)."""
    try:
        import transformers
    except ImportError:
        raise ValueError("exporting to transformers needs it: pip install 'avssl[export]'") from None
    return transformers


def export_video(backbone: AVModel, out: str | Path) -> Path:
    """The video encoder as a transformers `VivitModel` folder at `out`; returns it."""
    transformers = _transformers()
    VivitConfig, VivitModel = transformers.VivitConfig, transformers.VivitModel

    cfg = backbone.config
    config = VivitConfig(image_size=cfg.frame_size, num_frames=cfg.num_frames, tubelet_size=list(cfg.tubelet),
                         num_channels=3, **_layer_config(backbone))
    hf = VivitModel(config).eval()
    _fill(hf, backbone, backbone.video_encoder, "v", hf.embeddings.patch_embeddings.projection, PREFIX_TOKENS["vivit"])
    with torch.no_grad():
        hf.pooler.dense.weight.zero_()
        hf.pooler.dense.bias.zero_()
    return _save(hf, out, backbone, "video", "pixel_values (B, T, 3, H, W): avssl.Preprocessor's normalised frames")


def export_audio(backbone: AVModel, out: str | Path) -> Path:
    """The audio encoder as a transformers `ASTModel` folder at `out`; returns it."""
    transformers = _transformers()
    ASTConfig, ASTModel = transformers.ASTConfig, transformers.ASTModel

    cfg = backbone.config
    config = ASTConfig(patch_size=cfg.audio_patch, frequency_stride=cfg.audio_patch, time_stride=cfg.audio_patch,
                       num_mel_bins=cfg.num_mel_bins, max_length=cfg.audio_frames, **_layer_config(backbone))
    hf = ASTModel(config).eval()
    _fill(hf, backbone, backbone.audio_encoder, "a", hf.embeddings.patch_embeddings.projection,
          PREFIX_TOKENS["audio-spectrogram-transformer"])
    return _save(hf, out, backbone, "audio", "input_values (B, frames, mel): avssl.Preprocessor's normalised log-mel")


def _readme(stream: str, model_type: str, inputs: str, input_norm: str) -> str:
    prefix = PREFIX_TOKENS[model_type]
    lines = [
        f"# avssl {stream} encoder as a transformers `{model_type}` model", "",
        "```python",
        "from transformers import AutoModel",
        "from avssl.models.export_hf import prefix_token_mask",
        "model = AutoModel.from_pretrained(FOLDER).eval()",
        f"out = model({inputs.split()[0]}=x, attention_mask=prefix_token_mask(x.shape[0], model.config))",
        f"tokens = out.last_hidden_state[:, {prefix}:]   # avssl's {stream} tokens; avssl pools their mean",
        "```", "",
        f"- input: {inputs}, at the exported size (the avssl config's grid)",
        f"- the first {prefix} token(s) are {model_type}'s own (zero here); the attention mask hides them, and "
        "without it the patch tokens attend to them and differ from avssl's",
        "- not included: the cross-modal joint stream, the contrastive projection, a classifier head",
    ]
    if input_norm == "clip":
        lines.append("- this model was trained with input_norm='clip': subtract each clip's mean over time "
                     "(dim 1) from the input first")
    return "\n".join(lines) + "\n"


def _save(hf: nn.Module, out: str | Path, backbone: AVModel, stream: str, inputs: str) -> Path:
    """Write the transformers folder and its README.md (how to get avssl's tokens from it)."""
    folder = Path(out)
    hf.save_pretrained(folder)
    (folder / "README.md").write_text(_readme(stream, hf.config.model_type, inputs, backbone.config.input_norm))
    log.info("%s encoder -> %s (%s)", stream, folder, hf.config.model_type)
    return folder


def export_transformers(model: AVModel | AVClassifier, out: str | Path) -> dict[str, Path]:
    """Every encoder `model` has (a classifier keeps those of its mode) as transformers folders
    `out/video` (ViViT) and `out/audio` (AST); returns {"video": path, "audio": path} of those written."""
    backbone = model.backbone if isinstance(model, AVClassifier) else model
    out = Path(out)
    folders = {}
    if backbone.video_encoder is not None:
        folders["video"] = export_video(backbone, out / "video")
    if backbone.audio_encoder is not None:
        folders["audio"] = export_audio(backbone, out / "audio")
    return folders
