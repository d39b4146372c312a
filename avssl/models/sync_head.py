"""The synchronisation task's head: by which offset was the sound moved against the frames?

Each offset class is scored by how well the frames' per-step features match the sound's per-step
features read that many seconds earlier, the comparison over shifts of SyncNet (Chung & Zisserman,
ACCV 2016 workshops). The same comparison is made at every lag and every place in the clip, so the
head does not have to learn the task anew for each place where the event can fall, as a classifier
over the concatenated time stretches must.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class LagSyncHead(nn.Module):
    """Per-step features of both streams (B, steps, D) -> logits (B, offsets) over `offsets_s`.

    offsets_s: each class's offset in seconds (positive: the sound comes from later in the video, so
    the sound's step t - offset matches the frames' step t); video_step_s, audio_step_s: the seconds
    one time step of each stream's token grid covers.
    """

    def __init__(self, dim: int, offsets_s: Sequence[float], video_step_s: float, audio_step_s: float) -> None:
        super().__init__()
        self.video = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.audio = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.register_buffer("offsets_s", torch.tensor(list(offsets_s), dtype=torch.float32), persistent=False)
        self.video_step_s, self.audio_step_s = video_step_s, audio_step_s
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.zeros(len(offsets_s)))

    def forward(self, video_series: torch.Tensor, audio_series: torch.Tensor) -> torch.Tensor:
        video = F.normalize(self.video(video_series), dim=-1)
        audio = F.normalize(self.audio(audio_series), dim=-1)
        steps, audio_steps = video.shape[1], audio.shape[1]
        centres = (torch.arange(steps, device=video.device, dtype=torch.float32) + 0.5) * self.video_step_s
        # (offsets, steps): where in the sound's steps each frame step's match lies, fractional
        where = (centres[None, :] - self.offsets_s[:, None]) / self.audio_step_s - 0.5
        valid = ((where >= -0.5) & (where <= audio_steps - 0.5)).float()
        where = where.clamp(0, audio_steps - 1)
        low = where.floor().long()
        high = (low + 1).clamp(max=audio_steps - 1)
        frac = (where - low).unsqueeze(-1).to(audio.dtype)
        matched = audio[:, low] * (1 - frac) + audio[:, high] * frac  # (B, offsets, steps, D)
        similarity = (matched * video[:, None]).sum(dim=-1)  # (B, offsets, steps)
        score = (similarity * valid).sum(dim=-1) / valid.sum(dim=-1).clamp_min(1.0)
        return self.logit_scale.exp() * score + self.bias
