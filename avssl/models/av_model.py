"""The audio-visual pretraining model: masked autoencoding of both modalities + cross-modal alignment
(InfoNCE by default; Barlow Twins, VICReg or SwAV with `alignment`) + optionally synchronisation.

Follows CAV-MAE (Gong et al., ICLR 2023), with real clips (tubelets over T frames) instead of one
frame. One pretraining step:

1. mask each modality (`masking.py`) and encode only the visible tokens with the modality-specific
   blocks (`video_encoder`, `audio_encoder`);
2. run the shared `joint_blocks` three ways: on the concatenated [audio, video] sequence with the
   joint norms then `joint_norm` (input to the decoder), and on each stream alone with its own norms
   then that encoder's `norm` (input to the contrastive loss);
3. the decoder reconstructs every patch; the MAE loss scores the masked ones;
4. the per-stream outputs of the masked forward are mean-pooled (as CAV-MAE does: no second,
   unmasked pass), projected (`video_proj`, `audio_proj`) to `proj_dim` for the alignment loss
   (`avssl.objectives.make_alignment`), L2-normalised for InfoNCE and SwAV and for the embeddings
   returned; Barlow Twins and VICReg take the raw projections, from a Linear-BN-ReLU-Linear projector
   (their papers' projectors end in batch norm; the losses standardise over the batch themselves);
5. with `sync_weight` > 0, the clip's sound shifted by a known offset (decoded with it,
   `avssl.data.sync`) and the frames go through the joint blocks together, and `sync_head` names the
   offset from the joint tokens per time step (`sync_logits`): by matching the two streams at each
   offset (`LagSyncHead`, the default) or by classifying their time stretches (`sync_head="mlp"`).

Options for data where the shared event is small and brief (`ModelConfig`): `contrastive_view="full"`
takes the embeddings from a second pass over the whole clip, `time_bins` adds when-in-the-clip to
what the projection sees, `input_norm="clip"` removes each clip's still part from both inputs (also
from the MAE targets), `proj_norm="batch"` standardises the projection input over the batch.

loss = mae_weight * (loss_mae_video + loss_mae_audio) + contrastive_weight * loss_contrastive
       + sync_weight * loss_sync (loss_contrastive is the alignment term, whichever objective it is).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avssl.data.audio import FRAME_SHIFT_MS
from avssl.data.sync import SyncShift
from avssl.losses import mae_loss
from avssl.masking import Masking, audio_masking, random_masking, tube_masking
from avssl.models.config import ModelConfig
from avssl.models.decoder import MAEDecoder
from avssl.models.encoders import AudioEncoder, VideoEncoder, drop_path_rates
from avssl.models.layers import JointBlock, init_weights, no_weight_decay_names, run_blocks
from avssl.models.patch_embed import audio_patches, video_patches
from avssl.models.sync_head import LagSyncHead
from avssl.models.weights import SavesPretrained
from avssl.objectives import make_alignment


def _proj_norm(config: ModelConfig) -> nn.Module:
    """What precedes a projection: nothing, or a per-feature batch standardisation (MoCo v3's BN heads),
    which removes the component every clip shares so that InfoNCE sees how clips differ from the start."""
    width = config.embed_dim * (1 + config.time_bins)
    return nn.BatchNorm1d(width, affine=False) if config.proj_norm == "batch" else nn.Identity()


def _projector(config: ModelConfig) -> nn.Module:
    """The projection to `proj_dim`: one Linear (CAV-MAE's place for it; InfoNCE and SwAV), or for the
    redundancy-reduction objectives, which need an expander to decorrelate, Barlow Twins' and VICReg's
    projector shape scaled down: Linear-BN-ReLU-Linear through 4 * proj_dim."""
    width = config.embed_dim * (1 + config.time_bins)
    if config.alignment not in ("barlow", "vicreg"):
        return nn.Linear(width, config.proj_dim)
    hidden = 4 * config.proj_dim
    return nn.Sequential(nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, config.proj_dim))


def _sync_head(config: ModelConfig) -> nn.Module:
    """The offset classifier of `sync_logits`: "lag" (LagSyncHead) over each stream's per-step joint
    features, or "mlp" over the joint tokens of each stream pooled as `_Encoder.pool` does, over as
    many time stretches as the clip has video token steps: (B, 2 * D * (1 + steps)) -> (B, sync_offsets)."""
    if config.sync_head == "lag":
        offsets = SyncShift(config.sync_offsets, config.sync_max_shift).seconds.tolist()
        return LagSyncHead(config.embed_dim, offsets, config.clip_duration / config.video_grid[0],
                           config.audio_patch * FRAME_SHIFT_MS / 1000)
    width = 2 * config.embed_dim * (1 + config.video_grid[0])
    return nn.Sequential(nn.Linear(width, config.embed_dim), nn.GELU(), nn.Linear(config.embed_dim, config.sync_offsets))


class AVModel(SavesPretrained, nn.Module):
    """Video and audio encoders with shared joint layers, an MAE decoder and projection heads."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.video_encoder = VideoEncoder(config)
        self.audio_encoder = AudioEncoder(config)
        rates = drop_path_rates(config)[config.depth:]
        self.joint_blocks = nn.ModuleList(
            JointBlock(dim, config.num_heads, config.mlp_ratio, rate, config.norm_eps) for rate in rates
        )
        self.joint_norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.decoder = MAEDecoder(config)
        self.video_proj_norm = _proj_norm(config)
        self.audio_proj_norm = _proj_norm(config)
        self.video_proj = _projector(config)
        self.audio_proj = _projector(config)
        self.contrastive = make_alignment(config)  # the alignment loss (its name predates the other objectives)
        self.sync_head = _sync_head(config) if config.sync_weight > 0 else None
        self.grad_checkpointing = False
        for module in (self.joint_blocks, self.joint_norm, self.video_proj, self.audio_proj, self.sync_head):
            if module is not None:
                module.apply(init_weights)

    # ---- building blocks of the forward passes --------------------------------------------------
    def _mask(self, batch: int, video_grid: tuple[int, int, int], audio_grid: tuple[int, int],
              device: torch.device, generator: torch.Generator | None) -> tuple[Masking, Masking]:
        cfg = self.config
        if cfg.video_masking == "tube":
            video = tube_masking(batch, video_grid, cfg.video_mask_ratio, generator=generator, device=device)
        else:
            video = random_masking(batch, math.prod(video_grid), cfg.video_mask_ratio,
                                   generator=generator, device=device)
        audio = audio_masking(batch, audio_grid, cfg.audio_mask_ratio, cfg.audio_masking,
                              generator=generator, device=device)
        return video, audio

    @staticmethod
    def _silence_mask(has_audio: torch.Tensor | None, num_audio: int, num_video: int) -> torch.Tensor | None:
        """Attention mask (B, 1, 1, Na + Nv) over an [audio, video] sequence that hides the audio keys
        of clips without sound, so their video is encoded and reconstructed from the video alone;
        None without `has_audio` (the unmasked fast attention path). Built even when every clip has
        sound: an all-True mask attends as no mask does, and asking the device whether a clip lacks
        sound would stall the host on every step until the encoders have run."""
        if has_audio is None:
            return None
        audio_keys = has_audio.bool()[:, None].expand(-1, num_audio)
        video_keys = torch.ones(has_audio.shape[0], num_video, dtype=torch.bool, device=has_audio.device)
        return torch.cat([audio_keys, video_keys], dim=1)[:, None, None, :]

    def _joint_av(self, audio_tokens: torch.Tensor, video_tokens: torch.Tensor,
                  attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[audio, video] tokens through the joint blocks with their joint norms, then `joint_norm`."""
        x = torch.cat([audio_tokens, video_tokens], dim=1)
        x = run_blocks(self.joint_blocks, x, grad_checkpointing=self.grad_checkpointing, stream="av",
                       attn_mask=attn_mask)
        return self.joint_norm(x)

    def projection(self, pooled: torch.Tensor, modality: str) -> torch.Tensor:
        """Pooled features (B, D * (1 + time_bins), `_Encoder.pool`) of "video" or "audio" -> (B, proj_dim)
        projections, float32, before any normalisation (what Barlow Twins and VICReg align)."""
        norm, proj = getattr(self, f"{modality}_proj_norm"), getattr(self, f"{modality}_proj")
        return proj(norm(pooled)).float()

    def project(self, pooled: torch.Tensor, modality: str) -> torch.Tensor:
        """`projection`, L2-normalised: the (B, proj_dim) embeddings retrieval compares."""
        return F.normalize(self.projection(pooled, modality), dim=-1)

    def _embed(self, x: torch.Tensor, modality: str, normalized: bool = False, raw: bool = False) -> torch.Tensor:
        """A whole (unmasked) input of one modality -> (B, proj_dim) L2-normalised embeddings (`raw`: the
        projections before normalisation; `normalized`: x is the encoder's `normalize_input` output already)."""
        encoder = self.video_encoder if modality == "video" else self.audio_encoder
        tokens = encoder.forward_tokens(x, joint_blocks=self.joint_blocks, normalized=normalized)
        pooled = encoder.pool(tokens, encoder.grid_of(x), self.config.time_bins)
        return self.projection(pooled, modality) if raw else self.project(pooled, modality)

    def sync_logits(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Frames (B, T, 3, H, W) and a log-mel (B, F, M), maybe shifted in time -> (B, sync_offsets)
        logits over the offsets of `avssl.data.sync.SyncShift` (the middle one: in sync). Both whole
        (unmasked) inputs go through their encoders and the joint blocks together, so the sound and the
        frames attend to each other; each stream's joint tokens are pooled per time stretch."""
        if self.sync_head is None:
            raise ValueError("this model has no synchronisation head: pretrain with model.sync_weight > 0")
        video_tokens, audio_tokens = self.video_encoder.forward_blocks(video), self.audio_encoder.forward_blocks(audio)
        joint = self._joint_av(audio_tokens, video_tokens)
        steps, num_audio = self.config.video_grid[0], audio_tokens.shape[1]
        if isinstance(self.sync_head, LagSyncHead):
            return self.sync_head(self.video_encoder.time_series(joint[:, num_audio:], self.video_encoder.grid_of(video)),
                                  self.audio_encoder.time_series(joint[:, :num_audio], self.audio_encoder.grid_of(audio)))
        pooled = torch.cat([
            self.audio_encoder.pool(joint[:, :num_audio], self.audio_encoder.grid_of(audio), steps),
            self.video_encoder.pool(joint[:, num_audio:], self.video_encoder.grid_of(video), steps),
        ], dim=1)
        return self.sync_head(pooled)

    def _sync_loss(self, video: torch.Tensor, sync_audio: torch.Tensor | None, sync_offset: torch.Tensor | None,
                   valid: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy of the offset classes `sync_offset` (B,) of the shifted sounds, over clips with sound."""
        if sync_audio is None or sync_offset is None:
            raise ValueError("model.sync_weight > 0 needs each batch's sync_audio and sync_offset: the dataset's "
                             "items with sync=SyncShift.from_config(config) (avssl.data.sync)")
        per_row = F.cross_entropy(self.sync_logits(video, sync_audio).float(), sync_offset, reduction="none")
        if valid is None:
            return per_row.mean()
        return torch.where(valid, per_row, 0.0).sum() / valid.sum().clamp_min(1)

    # ---- public API -----------------------------------------------------------------------------
    def forward(self, video: torch.Tensor, audio: torch.Tensor, has_audio: torch.Tensor | None = None, *,
                generator: torch.Generator | None = None, sync_audio: torch.Tensor | None = None,
                sync_offset: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One pretraining forward.

        video (B, T, 3, H, W) normalised frames; audio (B, F, M) normalised log-mel; has_audio (B,)
        bool: False rows (no audio track) still run but are left out of the audio MAE term and of the
        contrastive loss, and their video does not attend to their audio. Given, it always masks the
        joint and decoder attention (no host sync to find out whether it needs to); None (every clip
        has sound) keeps them on the unmasked kernels (FlashAttention on CUDA).
        generator: masking RNG (default: torch's global RNG).
        sync_audio (B, F, M), sync_offset (B,) int64: the clip's sound shifted by offset class
        sync_offset (the dataset's items with `sync`); needed, and only read, when sync_weight > 0.
        Returns loss, loss_mae_video, loss_mae_audio, loss_contrastive (the alignment term), with sync
        loss_sync (scalars), and video_emb, audio_emb (B, proj_dim), L2-normalised, from the masked
        forward (or, with contrastive_view "full", from a second pass over the whole clip).
        """
        cfg = self.config
        video, audio = self.video_encoder.normalize_input(video), self.audio_encoder.normalize_input(audio)
        video_grid = self.video_encoder.grid_of(video)
        audio_grid = self.audio_encoder.grid_of(audio)
        video_mask, audio_mask = self._mask(video.shape[0], video_grid, audio_grid, video.device, generator)
        video_tokens = self.video_encoder.forward_blocks(video, video_mask.ids_keep, normalized=True)
        audio_tokens = self.audio_encoder.forward_blocks(audio, audio_mask.ids_keep, normalized=True)

        valid = None if has_audio is None else has_audio.bool()
        num_audio = audio_tokens.shape[1]
        joint = self._joint_av(audio_tokens, video_tokens,
                               self._silence_mask(valid, num_audio, video_tokens.shape[1]))
        pred_audio, pred_video = self.decoder(
            joint[:, :num_audio], joint[:, num_audio:], audio_mask.ids_restore, video_mask.ids_restore,
            audio_grid, video_grid, self._silence_mask(valid, audio_mask.mask.shape[1], video_mask.mask.shape[1]),
        )
        loss_video = mae_loss(pred_video, video_patches(video, cfg.tubelet), video_mask.mask, cfg.norm_pix_loss)
        loss_audio = mae_loss(pred_audio, audio_patches(audio, cfg.audio_patch), audio_mask.mask, cfg.norm_pix_loss,
                              weights=valid)

        if cfg.contrastive_view == "full":
            video_z, audio_z = self._embed(video, "video", True, raw=True), self._embed(audio, "audio", True, raw=True)
        else:
            video_z = self.projection(self.video_encoder.forward_joint(video_tokens, self.joint_blocks).mean(dim=1), "video")
            audio_z = self.projection(self.audio_encoder.forward_joint(audio_tokens, self.joint_blocks).mean(dim=1), "audio")
        video_emb, audio_emb = F.normalize(video_z, dim=-1), F.normalize(audio_z, dim=-1)
        aligned = (video_emb, audio_emb) if self.contrastive.unit_inputs else (video_z, audio_z)
        loss_contrastive = self.contrastive(*aligned, valid)
        out = {
            "loss": cfg.mae_weight * (loss_video + loss_audio) + cfg.contrastive_weight * loss_contrastive,
            "loss_mae_video": loss_video,
            "loss_mae_audio": loss_audio,
            "loss_contrastive": loss_contrastive,
            "video_emb": video_emb,
            "audio_emb": audio_emb,
        }
        if self.sync_head is not None:
            out["loss_sync"] = self._sync_loss(video, sync_audio, sync_offset, valid)
            out["loss"] = out["loss"] + cfg.sync_weight * out["loss_sync"]
        return out

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, proj_dim) L2-normalised embeddings of whole (unmasked) clips."""
        return self._embed(video, "video")

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, F, M) log-mel -> (B, proj_dim) L2-normalised embeddings (unmasked)."""
        return self._embed(audio, "audio")

    @torch.no_grad()
    def embed(self, video: Any = None, audio: Any = None, *, sample_rate: int | None = None,
              fps: float | None = None) -> dict[str, torch.Tensor]:
        """Embeddings of frames and / or waveforms in memory: "video", "audio" (B, proj_dim), L2-normalised,
        for the modalities given. Inputs are prepared by `avssl.data.pipeline.Preprocessor` exactly as
        `avssl embed` prepares a file's centre clip: video uint8 frames (T, H, W, 3), a batch of them or
        a list (fps: their rate, default: they span the clip); audio samples (N,) or (channels, N) at
        `sample_rate`, a batch or a list."""
        from avssl.data.pipeline import Preprocessor  # the decoders and transforms load only when used

        inputs = Preprocessor.from_config(self.config)(video=video, audio=audio, sample_rate=sample_rate, fps=fps)
        device = next(self.parameters()).device
        return {name: self._embed(x.to(device), name) for name, x in inputs.items()}

    def features_and_embeddings(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both modalities of whole (unmasked) clips in one encoder pass each: "video", "audio" (B, D)
        pooled features before the projections (as `forward_features`) and "video_emb", "audio_emb"
        (B, proj_dim), the same L2-normalised embeddings as `embed_video` / `embed_audio`."""
        out: dict[str, torch.Tensor] = {}
        for name, x, encoder in (("video", video, self.video_encoder), ("audio", audio, self.audio_encoder)):
            features = self.forward_features(**{name: x})
            out[name] = features[name]
            pooled = encoder.pool(features[f"{name}_tokens"], encoder.grid_of(x), self.config.time_bins)
            out[f"{name}_emb"] = self.project(pooled, name)
        return out

    def forward_features(self, video: torch.Tensor | None = None,
                         audio: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Unmasked features for fine-tuning and probing, before the projections.

        Per given modality: "<m>_tokens" (B, N, D) and "<m>" (B, D) mean-pooled, from that stream
        through the joint blocks with its own norms. With both: also "joint_tokens" (B, Na + Nv, D)
        ([audio, video] order) and "joint" (B, D) from the joint stream, where the modalities attend
        to each other (CAV-MAE's audio-visual fine-tuning input).
        """
        if video is None and audio is None:
            raise ValueError("forward_features needs video, audio or both")
        out: dict[str, torch.Tensor] = {}
        blocks = {}
        for name, encoder, x in (("audio", self.audio_encoder, audio), ("video", self.video_encoder, video)):
            if x is None:
                continue
            blocks[name] = encoder.forward_blocks(x)
            out[f"{name}_tokens"] = encoder.forward_joint(blocks[name], self.joint_blocks)
            out[name] = out[f"{name}_tokens"].mean(dim=1)
        if len(blocks) == 2:
            out.update(self._pooled_joint(blocks["audio"], blocks["video"]))
        return out

    def joint_features(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """The joint stream of `forward_features` alone: "joint_tokens" (B, Na + Nv, D) and "joint" (B, D).

        What a classifier with fusion "joint" reads; `forward_features` with both inputs would also run
        each stream through the joint blocks on its own, work that classifier throws away.
        """
        return self._pooled_joint(self.audio_encoder.forward_blocks(audio), self.video_encoder.forward_blocks(video))

    def _pooled_joint(self, audio_blocks: torch.Tensor, video_blocks: torch.Tensor) -> dict[str, torch.Tensor]:
        """`forward_blocks` outputs of both streams -> joint tokens ([audio, video]) and their mean."""
        tokens = self._joint_av(audio_blocks, video_blocks)
        return {"joint_tokens": tokens, "joint": tokens.mean(dim=1)}

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters AdamW should not decay besides the 1-D ones (timm's convention)."""
        return no_weight_decay_names(self)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass (less memory, ~30% more compute)."""
        for module in (self, self.video_encoder, self.audio_encoder, self.decoder):
            module.grad_checkpointing = enable

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (only those with requires_grad when `trainable_only`)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def pretrained_config(self) -> dict:
        """config.json: the ModelConfig fields (`avssl.models.weights`; `avssl.load_model` reads it back)."""
        return dataclasses.asdict(self.config)
