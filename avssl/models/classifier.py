"""A classifier on top of pretrained audio-visual encoders, for fine-tuning and probing.

`AVClassifier` keeps what classification needs from an `AVModel` (the encoders of the modalities it
uses and the shared joint blocks) and drops the rest (the MAE decoder, the contrastive projections),
then adds a linear head on pooled features. Three modes:

- "video": pooled video tokens (after the joint blocks, with the video norms);
- "audio": the same for the spectrogram;
- "av": both, fused by `fusion`:
  "concat" (default) the two pooled vectors side by side, (B, 2D): each modality keeps its own
  head weights, robust when one of them is weak; "mean" their average, (B, D); "joint" the
  concatenated [audio, video] token sequence through the joint blocks, where the modalities attend
  to each other, then pooled, (B, D): CAV-MAE's audio-visual fine-tuning input.

Pooling is the mean of the tokens plus, with `time_bins` > 0, the means of that many equal stretches of
the clip's time axis (`_Encoder.pool`): a mean alone is blind to order, so "moves left" and "moves
right", or "opens" and "closes", pool alike. By default a classifier pools as its backbone's
contrastive projection did (`ModelConfig.time_bins`), so it reads the features pretraining shaped.
The joint fusion always takes the plain mean.

The head is dropout + linear (timm's `reset_classifier(n)` replaces it). `save_pretrained` writes
`model.safetensors` + `config.json` (the ModelConfig fields plus a "classifier" entry: mode, fusion,
classes, multi_label, dropout, time_bins), and `avssl.models.factory.load_classifier` reads it back.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, Literal, Sequence

import torch
from torch import nn

from avssl.models.av_model import AVModel
from avssl.models.config import ModelConfig
from avssl.models.layers import no_weight_decay_names
from avssl.models.weights import SavesPretrained

log = logging.getLogger(__name__)

Mode = Literal["video", "audio", "av"]
Fusion = Literal["concat", "mean", "joint"]
MODES: tuple[str, ...] = ("video", "audio", "av")
FUSIONS: tuple[str, ...] = ("concat", "mean", "joint")
CLASSIFIER_KEY = "classifier"  # the entry of config.json that marks a classifier folder
_UNUSED_BY_CLASSIFIER = ("decoder", "video_proj", "audio_proj", "video_proj_norm", "audio_proj_norm", "contrastive",
                         "sync_head")


class AVClassifier(SavesPretrained, nn.Module):
    """Encoders of an `AVModel` + a linear head over their pooled (and fused) features.

    backbone: the pretrained (or freshly created) `AVModel`; it is trimmed in place (decoder,
    projections and the encoder of an unused modality are removed). classes: names of the classes,
    saved with the weights (default "0", "1", ...). multi_label: the head is trained with BCE and
    scored with sigmoid instead of softmax. time_bins: time stretches pooled besides the mean (module
    doc); None: the backbone config's `time_bins`.
    """

    def __init__(self, backbone: AVModel, num_classes: int, *, mode: Mode = "video", fusion: Fusion = "concat",
                 dropout: float = 0.0, classes: Sequence[str] | None = None, multi_label: bool = False,
                 time_bins: int | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion {fusion!r}: choose one of {', '.join(FUSIONS)}")
        unused = _UNUSED_BY_CLASSIFIER + {"video": ("audio_encoder",), "audio": ("video_encoder",)}.get(mode, ())
        if mode != "av" or fusion != "joint":
            unused += ("joint_norm",)  # only the joint [audio, video] stream reads it
        for name in unused:
            setattr(backbone, name, None)  # a None submodule: gone from parameters and state_dict
        self.backbone = backbone
        self.config: ModelConfig = backbone.config
        self.mode, self.fusion, self.multi_label = mode, fusion, multi_label
        time_bins = backbone.config.time_bins if time_bins is None else time_bins
        if time_bins < 0:
            raise ValueError(f"time_bins must be >= 0, got {time_bins}")
        self.time_bins = 0 if mode == "av" and fusion == "joint" else time_bins
        self.head_drop = nn.Dropout(dropout)
        self.reset_classifier(num_classes, classes)

    @property
    def feature_dim(self) -> int:
        """Size of the vector the head reads."""
        dim = self.config.embed_dim * (1 + self.time_bins)
        return 2 * dim if self.mode == "av" and self.fusion == "concat" else dim

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def reset_classifier(self, num_classes: int, classes: Sequence[str] | None = None) -> None:
        """A fresh head for `num_classes` classes (small random weights, zero bias)."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        classes = [str(c) for c in classes] if classes is not None else [str(i) for i in range(num_classes)]
        if len(classes) != num_classes:
            raise ValueError(f"{len(classes)} class names given for {num_classes} classes")
        self.classes = classes
        device = next(self.backbone.parameters()).device
        self.head = nn.Linear(self.feature_dim, num_classes, device=device)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def features(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled features the head reads: (B, feature_dim). video (B, T, 3, H, W), audio (B, F, M);
        give the modalities of the mode ("av" needs both)."""
        needs = {"video": (video,), "audio": (audio,), "av": (video, audio)}[self.mode]
        if any(x is None for x in needs):
            raise ValueError(f"mode {self.mode!r} needs {'video and audio' if self.mode == 'av' else self.mode}")
        if self.mode == "av" and self.fusion == "joint":
            return self.backbone.joint_features(video, audio)["joint"]
        # one stream at a time: both at once would also run the joint stream, unused here
        pooled = [self._pool(m, x) for m, x in (("video", video), ("audio", audio)) if self.mode in (m, "av")]
        if len(pooled) == 1:
            return pooled[0]
        return torch.cat(pooled, dim=-1) if self.fusion == "concat" else (pooled[0] + pooled[1]) / 2

    def _pool(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """One modality's tokens through its encoder, pooled over the whole clip and `time_bins` stretches."""
        encoder = getattr(self.backbone, f"{modality}_encoder")
        tokens = self.backbone.forward_features(**{modality: x})[f"{modality}_tokens"]
        return encoder.pool(tokens, encoder.grid_of(x), self.time_bins)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) -> (B, num_classes) logits."""
        return self.head(self.head_drop(features))

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.forward_head(self.features(video, audio))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute encoder block activations in the backward pass (less memory)."""
        for module in self.backbone.modules():
            if hasattr(module, "grad_checkpointing"):
                module.grad_checkpointing = enable

    def classifier_config(self) -> dict[str, Any]:
        """What, besides the ModelConfig, rebuilds this classifier."""
        return {"mode": self.mode, "fusion": self.fusion, "classes": list(self.classes),
                "multi_label": self.multi_label, "dropout": self.head_drop.p, "time_bins": self.time_bins}

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters AdamW should not decay besides the 1-D ones (timm's convention)."""
        return no_weight_decay_names(self)

    def pretrained_config(self) -> dict[str, Any]:
        """config.json: the ModelConfig fields plus the "classifier" entry (`avssl.models.weights`)."""
        return {**dataclasses.asdict(self.config), CLASSIFIER_KEY: self.classifier_config()}


def layer_id(name: str, depth: int, joint_depth: int) -> int:
    """Depth of a parameter for layer-wise lr decay: 0 for the patch/position/modality embeddings,
    i + 1 for modality block i (video and audio block i share a depth), depth + 1 + j for joint
    block j, and depth + joint_depth + 1 for what comes after (final norms, head)."""
    if any(key in name for key in ("patch_embed", "pos_embed", "modality_embed")):
        return 0
    block = re.search(r"_encoder\.blocks\.(\d+)\.", name)
    if block:
        return int(block.group(1)) + 1
    joint = re.search(r"joint_blocks\.(\d+)\.", name)
    if joint:
        return depth + 1 + int(joint.group(1))
    return depth + joint_depth + 1
