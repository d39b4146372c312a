"""Model shapes as data: the `ModelConfig` dataclass and the named sizes `tiny`, `small`, `base`.

A config also carries the preprocessing its weights expect (clip length, sample rate, image and
filterbank normalisation), saved beside the weights as config.json, so a checkpoint knows how to
feed itself (timm's `pretrained_cfg`).
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from avssl.config import Check, Range, above, at_least, closest, key_hint
from avssl.data.normalization import FBANK_MEAN, FBANK_STD, IMAGENET_MEAN, IMAGENET_STD
from avssl.objectives import ALIGNMENTS

_CHOICES = {
    "pos_embed": ("sincos", "learned"),
    "video_masking": ("tube", "random"),
    "audio_masking": ("random", "time", "freq", "time_freq"),
    "proj_norm": ("none", "batch"),
    "input_norm": ("global", "clip"),
    "contrastive_view": ("masked", "full"),
    "contrastive_directions": ("symmetric", "video_to_audio"),
    "contrastive_gather": ("global", "local"),
    "alignment": ALIGNMENTS,
}


@dataclass(frozen=True)
class _ChannelIndex:
    """audio_channel's values: "mean" or a channel index >= 0 (the form of avssl.config's checks)."""

    def accepts(self, value: Any) -> bool:
        return value == "mean" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)

    def __str__(self) -> str:
        return "'mean' or a channel index >= 0"


@dataclass(frozen=True)
class _Finite:
    """Any finite number (a normalisation statistic)."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and math.isfinite(value)

    def __str__(self) -> str:
        return "a finite number"


ANY_NUMBER = _Finite()
FRACTION = Range(0.0, 1.0, high_open=True)


@dataclass
class ModelConfig:
    """Everything needed to build an `AVModel` and to prepare its inputs. Defaults are `tiny`."""

    name: str = "tiny"
    # encoders: `depth` modality-specific blocks per modality, then `joint_depth` shared blocks
    embed_dim: int = 128
    depth: int = 2
    joint_depth: int = 1
    num_heads: int = 4
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    norm_eps: float = 1e-6
    # video input: (num_frames, 3, frame_size, frame_size), cut into tubelets (frames, height, width)
    num_frames: int = 8
    frame_size: int = 64
    tubelet: tuple[int, int, int] = (2, 16, 16)
    # audio input: (audio_frames, num_mel_bins) log-mel at a 10 ms hop, cut into audio_patch squares
    num_mel_bins: int = 128
    audio_frames: int = 208
    audio_patch: int = 16
    pos_embed: Literal["sincos", "learned"] = "sincos"
    # masked-autoencoder decoder
    decoder_dim: int = 64
    decoder_depth: int = 1
    decoder_heads: int = 4
    # contrastive head: pooled features are projected to proj_dim and L2-normalised; proj_norm "batch"
    # standardises each pooled feature over the batch first (running statistics at evaluation)
    proj_dim: int = 64
    proj_norm: Literal["none", "batch"] = "none"
    # what the projection sees: the mean of all tokens, plus (time_bins > 0) the means of that many
    # equal stretches of the clip's time axis, so an embedding can say *when* something happens
    time_bins: int = 0
    # "clip": each clip's mean over time is removed from its normalised input, per pixel (video) and
    # per mel bin (audio), so what stays still through the clip (a static background, a stationary
    # noise bed, a channel's colouring) does not reach the encoders and what changes does
    input_norm: Literal["global", "clip"] = "global"
    # pretraining objective
    video_mask_ratio: float = 0.75
    audio_mask_ratio: float = 0.75
    video_masking: Literal["tube", "random"] = "tube"
    audio_masking: Literal["random", "time", "freq", "time_freq"] = "random"
    norm_pix_loss: bool = True
    # contrastive embeddings from the masked forward (CAV-MAE, no extra cost) or from a second pass
    # over the whole clip ("full"), which sees every token: a small object is never masked out
    contrastive_view: Literal["masked", "full"] = "masked"
    mae_weight: float = 1.0  # CAV-MAE's mae_loss_weight: multiplies both reconstruction terms
    # the cross-modal alignment term (avssl.objectives): "infonce" (CAV-MAE's), or without negatives
    # "barlow" (Barlow Twins), "vicreg" (VICReg), "swav" (SwAV's swapped prototype codes, with
    # swav_prototypes prototypes, balanced over the batch and the swav_queue latest clips: 0, none,
    # is for batches of thousands; SwAV's own small-batch runs queue 15 batches); contrastive_weight
    # multiplies whichever it is (its loss is logged as loss_contrastive); temperature and
    # learnable_temperature are InfoNCE's
    alignment: Literal["infonce", "barlow", "vicreg", "swav"] = "infonce"
    swav_prototypes: int = 3000
    swav_queue: int = 0
    contrastive_weight: float = 0.1
    temperature: float = 0.05
    learnable_temperature: bool = False
    # audio-visual synchronisation pretext task, off at 0: each clip's sound is also decoded shifted by
    # one of sync_offsets evenly spaced offsets in [-sync_max_shift, sync_max_shift] seconds (0 among
    # them: in sync), and a head on the joint tokens classifies the offset; sync_weight multiplies its loss.
    # sync_head "lag" scores each offset by matching the streams' per-step features at that lag
    # (avssl.models.sync_head); "mlp" classifies their concatenated time stretches
    sync_weight: float = 0.0
    sync_offsets: int = 9
    sync_max_shift: float = 0.8
    sync_head: Literal["lag", "mlp"] = "lag"
    # preprocessing the weights expect
    clip_duration: float = 2.0
    audio_rate: int = 16000
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    fbank_mean: float = FBANK_MEAN
    fbank_std: float = FBANK_STD
    # where avssl and CAV-MAE differ, as options (README: "Where avssl differs from CAV-MAE and why").
    # contrastive loss: "symmetric" (both directions, CLIP) or "video_to_audio" (CAV-MAE's default);
    # negatives "global" (gathered from every GPU) or "local" (each GPU's own clips, as CAV-MAE's
    # DataParallel replicas compute it)
    contrastive_directions: Literal["symmetric", "video_to_audio"] = "symmetric"
    contrastive_gather: Literal["global", "local"] = "global"
    # input pipeline (avssl.data.pipeline): stereo made mono as the "mean" of the channels or one channel
    # by index (0: CAV-MAE's and AST's first channel); the evaluation view's centre crop as a fraction of
    # the resized short side (0.875: resize 64 -> 73 or 224 -> 256 first, ImageNet's; 1.0: resize
    # straight to the crop, CAV-MAE's). Spectrograms are padded or cut to audio_frames (AST's convention)
    audio_channel: int | str = "mean"
    eval_crop_fraction: float = 0.875

    # the values each number accepts: checked when a config is made (__post_init__) and, with the
    # rest of a recipe's config, by avssl.config.validate_config (`model.temperature=0: must be > 0`)
    RANGES: ClassVar[dict[str, Check]] = {
        "embed_dim": at_least(1), "depth": at_least(0), "joint_depth": at_least(0), "num_heads": at_least(1),
        "mlp_ratio": above(0.0), "drop_path": FRACTION, "norm_eps": above(0.0), "num_frames": at_least(1),
        "frame_size": at_least(1), "tubelet": at_least(1), "num_mel_bins": at_least(1), "audio_frames": at_least(1),
        "audio_patch": at_least(1), "decoder_dim": at_least(1), "decoder_depth": at_least(0),
        "decoder_heads": at_least(1), "proj_dim": at_least(1), "time_bins": at_least(0),
        "video_mask_ratio": FRACTION, "audio_mask_ratio": FRACTION, "mae_weight": at_least(0.0),
        "contrastive_weight": at_least(0.0), "swav_prototypes": at_least(2), "swav_queue": at_least(0),
        "sync_weight": at_least(0.0), "sync_offsets": at_least(3), "sync_max_shift": above(0.0),
        "temperature": above(0.0), "clip_duration": above(0.0),
        "audio_rate": at_least(1), "image_mean": ANY_NUMBER,  # type: ignore[dict-item]
        "image_std": above(0.0), "fbank_mean": ANY_NUMBER,
        "fbank_std": above(0.0), "audio_channel": _ChannelIndex(),  # type: ignore[dict-item]
        "eval_crop_fraction": Range(0.0, 1.0, low_open=True),
    }

    def __post_init__(self) -> None:
        for key, kind in _SCALARS.items():
            value = getattr(self, key)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, key, float(value))
            elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"model config {key}={value!r}: expected {kind.__name__}")
        for key in ("tubelet", "image_mean", "image_std"):
            setattr(self, key, tuple(getattr(self, key)))
        for key, check in self.RANGES.items():
            value = getattr(self, key)
            if not all(check.accepts(v) for v in (value if isinstance(value, tuple) else (value,))):
                raise ValueError(f"model config {key}={value!r}: must be {check}")
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model config {key}={getattr(self, key)!r}: choose one of {', '.join(allowed)}")
        checks = [
            (self.embed_dim % self.num_heads == 0, "embed_dim must be divisible by num_heads"),
            (self.decoder_dim % self.decoder_heads == 0, "decoder_dim must be divisible by decoder_heads"),
            (self.embed_dim % 4 == 0 and self.decoder_dim % 4 == 0, "embed_dim and decoder_dim must be multiples of 4"),
            (len(self.tubelet) == 3, "tubelet must be (frames, height, width)"),
            (self.num_frames % self.tubelet[0] == 0, "num_frames must be a multiple of tubelet[0]"),
            (self.frame_size % self.tubelet[1] == 0 and self.frame_size % self.tubelet[2] == 0,
             "frame_size must be a multiple of the tubelet's height and width"),
            (self.audio_frames % self.audio_patch == 0, "audio_frames must be a multiple of audio_patch"),
            (self.num_mel_bins % self.audio_patch == 0, "num_mel_bins must be a multiple of audio_patch"),
            (self.time_bins == 0 or self.contrastive_view == "full",
             "time_bins > 0 needs contrastive_view='full' (time stretches of the whole clip)"),
            (self.sync_offsets % 2 == 1, "sync_offsets must be odd, so that offset 0 (in sync) is one of them"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"model config {self.name!r}: {message}")

    @classmethod
    def from_config_section(cls, name: str = "tiny", **changes: Any) -> ModelConfig:
        """The `model:` section of a recipe config: the named config (`MODEL_CONFIGS`) with `changes`
        to its fields; `config_section()` gives back the name and the changes, as written."""
        try:
            base = get_config(name)
        except ValueError as err:
            raise ValueError(f"name={name!r}: {err}") from None
        try:
            config = dataclasses.replace(base, **changes)
        except ValueError as err:  # the config's own checks: the recipe's loader says where they sit
            raise ValueError(re.sub(r"^model config ('[^']*': )?", "", str(err))) from None
        config._changed = tuple(changes)
        return config

    def config_section(self) -> dict[str, Any]:
        """The name and the fields set on top of it (for a config made otherwise, those that differ
        from the named config's; every field when the name is none of MODEL_CONFIGS)."""
        return {"name": self.name, **self.changes()}

    def changes(self) -> dict[str, Any]:
        """The fields set on top of the named config (see `config_section`), without the name."""
        keys = getattr(self, "_changed", None)
        if keys is None:
            base = MODEL_CONFIGS.get(self.name)
            keys = tuple(f.name for f in dataclasses.fields(self) if f.name != "name"
                         and (base is None or getattr(self, f.name) != getattr(base, f.name)))
        return {key: getattr(self, key) for key in keys}

    def preprocessing(self) -> dict[str, Any]:
        """The input preparation these weights expect, as keyword arguments of `ClipDataset` (the clip
        shape aside: `avssl.data.pipeline.input_pipeline` adds it and is what the commands use)."""
        return dict(audio_rate=self.audio_rate, num_mel_bins=self.num_mel_bins, image_mean=self.image_mean,
                    image_std=self.image_std, fbank_mean=self.fbank_mean, fbank_std=self.fbank_std,
                    audio_frames=self.audio_frames, audio_channel=self.audio_channel,
                    eval_crop_fraction=self.eval_crop_fraction)

    @property
    def video_grid(self) -> tuple[int, int, int]:
        """Token grid (T', H', W') of a clip at the configured size."""
        t, h, w = self.tubelet
        return self.num_frames // t, self.frame_size // h, self.frame_size // w

    @property
    def audio_grid(self) -> tuple[int, int]:
        """Token grid (frequency, time) of a spectrogram at the configured size."""
        return self.num_mel_bins // self.audio_patch, self.audio_frames // self.audio_patch


_SCALARS = {
    name: hint for name, hint in typing.get_type_hints(ModelConfig).items() if hint in (int, float, bool, str)
}

MODEL_CONFIGS: dict[str, ModelConfig] = {
    # minutes on a 2-core CPU: 64 video tokens (8 frames, 64 px) + 104 audio tokens (2 s);
    # a larger contrastive weight than CAV-MAE's 0.01 because short runs are judged on retrieval
    "tiny": ModelConfig(),
    # ViT-S widths (VideoMAE-S), VideoMAE's 0.9 tube masking, AudioMAE's 0.8; 4 s clips
    "small": ModelConfig(
        name="small", embed_dim=384, depth=11, joint_depth=1, num_heads=6, num_frames=16, frame_size=224,
        audio_frames=400, decoder_dim=256, decoder_depth=4, decoder_heads=8, proj_dim=256,
        video_mask_ratio=0.9, audio_mask_ratio=0.8, contrastive_weight=0.01, clip_duration=4.0,
    ),
    # CAV-MAE's ViT-B: 11 + 1 shared layers, 512-d 8-layer decoder, 0.75 random masking, 0.01 InfoNCE
    # at temperature 0.05, LayerNorm eps 1e-5; 10 s clips, here with 16 frames. CAV-MAE pads its 998
    # fbank frames to 1024; our pipeline pads 10 s to 1008 (avssl.data.audio.target_frames), which
    # drops only padding: with sin-cos positions the grids differ by one all-padding time column
    "base": ModelConfig(
        name="base", embed_dim=768, depth=11, joint_depth=1, num_heads=12, norm_eps=1e-5, num_frames=16,
        frame_size=224, audio_frames=1008, decoder_dim=512, decoder_depth=8, decoder_heads=16, proj_dim=768,
        video_masking="random", contrastive_weight=0.01, clip_duration=10.0,
    ),
}


def config_fields() -> list[str]:
    """Names of every `ModelConfig` field."""
    return [f.name for f in dataclasses.fields(ModelConfig)]


def check_keys(keys: Any, where: str = "model config") -> None:
    """Raise ValueError for a key that is not a ModelConfig field, naming the nearest valid one."""
    valid = config_fields()
    for key in keys:
        if key not in valid:
            raise ValueError(f"unknown {where} key {key!r}{key_hint(key, valid)}")


def get_config(name: str) -> ModelConfig:
    """A copy of the named config (`list(MODEL_CONFIGS)` lists them)."""
    if name not in MODEL_CONFIGS:
        close = closest(name, MODEL_CONFIGS)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; available: {', '.join(MODEL_CONFIGS)}")
    return dataclasses.replace(MODEL_CONFIGS[name])


def config_from_dict(values: dict[str, Any], base: ModelConfig | None = None,
                     where: str = "model config") -> ModelConfig:
    """`base` (default: the field defaults) with `values` applied; unknown keys raise ValueError."""
    check_keys(values, where)
    return dataclasses.replace(base or ModelConfig(), **values)
