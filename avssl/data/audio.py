"""Audio transform: mono waveform -> normalised log-mel filterbank (+ SpecAugment).

Matches CAV-MAE's audio front end (``src/dataloader.py`` in YuanGongND/cav-mae):
the waveform's mean is subtracted, ``torchaudio.compliance.kaldi.fbank`` runs
with AST's settings (HTK-compatible mel, Hann window, 25 ms frames every 10 ms,
128 bins, no dither, no energy), the result is zero-padded or cut to a fixed
number of frames, and normalised with the dataset statistics.

Normalisation: CAV-MAE divides by the std once,
``(fbank - norm_mean) / norm_std`` with mean -5.081 and std 4.4849 (checked in
its ``dataloader.py``); AST and AudioMAE divide by *twice* the std,
``(fbank - norm_mean) / (norm_std * 2)``: for their weights pass
``std = 2 * norm_std`` (what avssl's model configs store).

Padding happens before normalisation, as in CAV-MAE, so the pad frames carry
the value the weights were trained with. SpecAugment differs on purpose: masked
cells are set to 0 *after* normalisation (the dataset mean, a neutral value),
and the mask bands are drawn from the ``torch.Generator`` passed in, so a clip's
augmentation is a pure function of (seed, epoch, index).
"""
from __future__ import annotations

import math

import torch
from torchaudio.compliance import kaldi

from avssl.data.normalization import FBANK_MEAN, FBANK_STD

FRAME_SHIFT_MS = 10.0
FRAME_LENGTH_MS = 25.0


def target_frames(clip_duration: float, multiple: int = 16) -> int:
    """Spectrogram frames for a clip: one per 10 ms shift, rounded up to a multiple
    of ``multiple`` (the audio patch size), so no decoded audio is ever cut."""
    frames = math.ceil(round(clip_duration * 1000 / FRAME_SHIFT_MS, 6))
    return max(multiple, math.ceil(frames / multiple) * multiple)


def log_mel(waveform: torch.Tensor, sample_rate: int = 16000, num_mel_bins: int = 128) -> torch.Tensor:
    """Kaldi-style log-mel filterbank, AST/CAV-MAE settings.

    ``waveform`` is (N,) mono float; returns (frames, num_mel_bins) with
    ``frames = 1 + (N - 25 ms) // 10 ms``, or 0 frames when N is shorter than
    one 25 ms window.
    """
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (N,), got {tuple(waveform.shape)}")
    if waveform.numel() < int(sample_rate * FRAME_LENGTH_MS / 1000):
        return waveform.new_zeros((0, num_mel_bins))
    centred = (waveform - waveform.mean()).unsqueeze(0)
    return kaldi.fbank(centred, htk_compat=True, sample_frequency=sample_rate, use_energy=False,
                       window_type="hanning", num_mel_bins=num_mel_bins, dither=0.0,
                       frame_shift=FRAME_SHIFT_MS, frame_length=FRAME_LENGTH_MS)


def check_masks(freq_mask: int, time_mask: float) -> None:
    """Raise ValueError unless ``freq_mask`` is a whole number of mel bins >= 0 and ``time_mask`` a
    fraction of the frames in [0, 1] (0 turns either mask off)."""
    if isinstance(freq_mask, bool) or not isinstance(freq_mask, int) or freq_mask < 0:
        raise ValueError(f"freq_mask: expected the widest frequency mask in mel bins, an integer >= 0 "
                         f"(0: none), got {freq_mask!r}")
    if not 0 <= time_mask <= 1:
        raise ValueError(f"time_mask: expected the widest time mask as a fraction of the frames in [0, 1] "
                         f"(0: none), got {time_mask!r}")


def spec_augment_phrases(freq_mask: int, time_mask: float) -> list[str]:
    """SpecAugment's masks in words, for run logs and reports (nothing when both are off)."""
    bands = [f"freq<={freq_mask} bins"] if freq_mask else []
    bands += [f"time<={time_mask * 100:g}%"] if time_mask else []
    return [f"SpecAugment {' '.join(bands)}"] if bands else []


def mask_band(size: int, max_width: int, generator: torch.Generator | None = None) -> tuple[int, int]:
    """A random band ``(start, width)`` along an axis of ``size``: width uniform in
    [0, max_width] (capped at size), start uniform over the positions that fit."""
    width = int(torch.randint(0, min(max_width, size) + 1, (), generator=generator))
    start = int(torch.randint(0, size - width + 1, (), generator=generator))
    return start, width


class AudioTransform:
    """Waveform (N,) -> (target_frames, num_mel_bins) normalised log-mel.

    ``train=True`` adds one frequency mask of up to ``freq_mask`` bins and one
    time mask of up to ``time_mask`` (a fraction) of the frames, zeroing those
    cells in normalised space; 0 turns a mask off.
    """

    def __init__(self, target_frames: int, *, sample_rate: int = 16000, num_mel_bins: int = 128,
                 mean: float = FBANK_MEAN, std: float = FBANK_STD, train: bool = False, freq_mask: int = 48, time_mask: float = 0.2):
        if target_frames < 1:
            raise ValueError(f"target_frames must be >= 1, got {target_frames}")
        check_masks(freq_mask, time_mask)
        self.target_frames = target_frames
        self.sample_rate = sample_rate
        self.num_mel_bins = num_mel_bins
        self.mean = mean
        self.std = std
        self.train = train
        self.freq_mask = freq_mask
        self.time_mask = time_mask
        self.time_mask_frames = int(time_mask * target_frames)

    def __repr__(self) -> str:
        return (f"AudioTransform(target_frames={self.target_frames}, sample_rate={self.sample_rate}, "
                f"num_mel_bins={self.num_mel_bins}, mean={self.mean}, std={self.std}, train={self.train}, "
                f"freq_mask={self.freq_mask}, time_mask={self.time_mask})")

    def describe(self) -> list[str]:
        """The random augmentations this transform applies, in words (none in evaluation)."""
        return spec_augment_phrases(self.freq_mask, self.time_mask) if self.train else []

    def __call__(self, waveform: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform one clip's mono waveform."""
        fbank = log_mel(waveform.float(), self.sample_rate, self.num_mel_bins)
        missing = self.target_frames - fbank.shape[0]
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, missing)) if missing > 0 else fbank[: self.target_frames]
        fbank = (fbank - self.mean) / self.std
        if self.train:
            fbank = self.spec_augment(fbank, generator)
        return fbank

    def spec_augment(self, fbank: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Zero one frequency band and one time band of a (frames, mel) spectrogram."""
        fbank = fbank.clone()
        start, width = mask_band(fbank.shape[1], self.freq_mask, generator)
        fbank[:, start:start + width] = 0.0
        start, width = mask_band(fbank.shape[0], self.time_mask_frames, generator)
        fbank[start:start + width, :] = 0.0
        return fbank
