"""A small formant synthesiser: short spoken "words" in many voices, with numpy alone.

Real corpora pair pictures with speech and other sounds whose identity lives in a spectral envelope
(formants) that moves over a fraction of a second, on top of a pitch that depends on the speaker.
This module makes such sounds without a speech engine or a download, so the hard synthetic corpus
(`avssl.data.synthetic_sparse`) can pair what is seen with what is *said*, and keep voices seen in
training apart from voices heard at test time.

Voiced phonemes are additive harmonics of a gliding pitch, each weighted by a formant envelope that
is interpolated between phoneme targets (coarticulation); fricatives are band-passed noise; stops are
a closure and a short burst.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Vowel formants (F1, F2, F3) in Hz for an adult voice (Peterson & Barney's averages, rounded).
VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240),
    "e": (530, 1840, 2480), "o": (570, 840, 2410), "ae": (660, 1720, 2410),
}
# Fricatives: noise band (low, high) in Hz and level relative to a vowel.
FRICATIVES: dict[str, tuple[float, float, float]] = {"s": (4000, 7500, 0.35), "sh": (2000, 5000, 0.4),
                                                     "f": (1200, 7000, 0.15)}
STOPS = ("p", "t", "k")
NASALS: dict[str, tuple[float, float, float]] = {"m": (250, 1100, 2300), "n": (250, 1500, 2500)}

# The vocabulary of the hard corpus: one word per content class.
WORDS: tuple[tuple[str, ...], ...] = (
    ("s", "a", "m", "i"), ("k", "o", "t", "u"), ("f", "e", "n", "o"),
    ("sh", "i", "p", "a"), ("t", "u", "k", "e"), ("m", "ae", "s", "o"),
)


@dataclass(frozen=True)
class Voice:
    """A speaker: base pitch (Hz), formant scale (vocal tract length), speaking rate, breathiness."""

    pitch: float
    formant_scale: float
    rate: float
    breathiness: float


def random_voice(rng: np.random.Generator) -> Voice:
    """A speaker drawn from a wide adult-to-child range."""
    return Voice(pitch=float(rng.uniform(85, 260)), formant_scale=float(rng.uniform(0.85, 1.22)),
                 rate=float(rng.uniform(0.8, 1.25)), breathiness=float(rng.uniform(0.0, 0.35)))


def _band_noise(rng: np.random.Generator, n: int, low: float, high: float, sample_rate: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    spectrum[(freqs < low) | (freqs > high)] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.abs(noise).max() + 1e-9)


def _voiced(formants: np.ndarray, pitch: np.ndarray, sample_rate: int, rng: np.random.Generator,
            breathiness: float) -> np.ndarray:
    """Harmonics of `pitch` (N,) weighted by formant peaks `formants` (N, 3): one voiced stretch."""
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    count = int(min(0.45 * sample_rate, 5000) / pitch.min())
    k = np.arange(1, count + 1)[:, None]
    freq = k * pitch[None, :]
    bandwidths = np.array([80.0, 110.0, 160.0])[:, None, None]
    peaks = 1.0 / (1.0 + ((freq[None] - formants.T[:, None, :]) / bandwidths) ** 2)
    envelope = (peaks * np.array([1.0, 0.6, 0.3])[:, None, None]).sum(0)
    envelope *= (freq < 0.45 * sample_rate) / np.sqrt(k)
    wave = (envelope * np.sin(k * phase[None, :])).sum(0)
    wave /= np.abs(wave).max() + 1e-9
    if breathiness:
        wave += breathiness * _band_noise(rng, len(wave), 500, 4000, sample_rate)
    return wave


def speak(word: tuple[str, ...], voice: Voice, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """The waveform (N,) float of `word` (phoneme names) in `voice`, peak-normalised to 1."""
    unit = 0.11 / voice.rate  # seconds per consonant; a vowel lasts twice that
    pieces: list[np.ndarray] = []
    vowel_run: list[tuple[float, float, float]] = []

    def flush() -> None:
        if not vowel_run:
            return
        n = round(2 * unit * sample_rate) * len(vowel_run)
        targets = np.array(vowel_run) * voice.formant_scale
        anchor = np.linspace(0, n - 1, len(targets)) if len(targets) > 1 else np.zeros(1)
        formants = np.stack([np.interp(np.arange(n), anchor, targets[:, j]) for j in range(3)], axis=1)
        glide = np.linspace(1.08, 0.9, n) * voice.pitch * (1 + 0.01 * rng.normal(size=n).cumsum() / np.sqrt(n))
        pieces.append(_voiced(formants, glide, sample_rate, rng, voice.breathiness) * np.hanning(n) ** 0.3)
        vowel_run.clear()

    for phoneme in word:
        if phoneme in VOWELS or phoneme in NASALS:
            shape = VOWELS.get(phoneme) or NASALS[phoneme]
            vowel_run.append(shape)
            continue
        flush()
        n = round(unit * sample_rate)
        if phoneme in FRICATIVES:
            low, high, level = FRICATIVES[phoneme]
            pieces.append(level * _band_noise(rng, n, low, high, sample_rate) * np.hanning(n))
        elif phoneme in STOPS:
            burst = round(0.015 * sample_rate)
            sound = np.zeros(n)
            centre = {"p": (500, 2000), "t": (3000, 7000), "k": (1500, 3500)}[phoneme]
            sound[n - burst:] = 0.5 * _band_noise(rng, burst, *centre, sample_rate) * np.hanning(burst)
            pieces.append(sound)
        else:
            raise ValueError(f"unknown phoneme {phoneme!r}")
    flush()
    wave = np.concatenate(pieces)
    return wave / (np.abs(wave).max() + 1e-9)
