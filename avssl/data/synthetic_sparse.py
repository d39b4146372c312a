"""The hard synthetic corpus: sparse, short audio-visual events buried in per-clip nuisance.

Made to resemble real video more than the easy corpus does (`make_corpus(kind="easy")`): most pixels
and most of the spectrogram carry nothing that the other modality shares.

* **Nuisance per clip.** A random two-colour gradient background with sensor noise and a faint
  static distractor shape; a coloured noise bed (random spectral tilt, sometimes mains hum) at a
  random loudness; in half the clips a knock at a random time that nothing in the picture matches.
* **The event.** A small object (about a sixth of the frame) appears at a random onset and moves for
  1.2 s; at the same onset a voice says one short word (`synthetic_voice`), at a signal-to-noise
  ratio between -3 and +9 dB.
* **Shared at two levels.** What: the object's shape and the word both name the content class.
  When: the onset, different in every clip, is the only thing that tells clips of a class apart.
* **Two label sets.** `content` (6 shape/word classes, visible and audible) and `motion` (6 ways the
  object moves: left, right, up, down, clockwise, counterclockwise; visible only, and direction
  dependent, so a horizontal flip changes the label).
* **Disjoint instances.** Test clips use object styles and voices that no training clip has.

Files: `train/NNNN.mp4`, `test/NNNN.mp4` (H.264 + AAC) and manifests `train.csv` / `test.csv`
(content labels), `train_motion.csv` / `test_motion.csv` (motion labels), `clips.csv` (every fact
of every clip: split, content, motion, onset, voice).
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from avssl.data.synthetic import shape_mask, write_video
from avssl.data.synthetic_voice import WORDS, Voice, random_voice, speak

log = logging.getLogger(__name__)

CONTENT_CLASSES = ("circle", "square", "triangle", "cross", "ring", "diamond")
MOTION_CLASSES = ("left", "right", "up", "down", "clockwise", "counterclockwise")
EVENT_SECONDS = 1.2
STYLES = {"train": ("solid", "outline"), "test": ("striped", "two_tone")}
VOICES_PER_SPLIT = {"train": 24, "test": 8}


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return 255 * (v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random two-colour gradient at a random angle with fixed texture noise: (size, size, 3) float."""
    a, b = (_hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.25, 0.95)) for _ in range(2))
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[:size, :size] / size
    mix = np.clip((np.cos(angle) * x + np.sin(angle) * y + 1) / 2, 0, 1)[..., None]
    return (1 - mix) * a + mix * b + rng.normal(0, 6, size=(size, size, 1))


def _sprite(shape: str, size: int, style: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A shape's (size, size) mask and its (size, size, 3) colours in the given style."""
    mask = shape_mask(shape, size)
    main = _hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))
    other = 255 - main
    colours = np.broadcast_to(main, (size, size, 3)).copy()
    if style == "outline":
        inner = np.zeros_like(mask)
        inner[2:-2, 2:-2] = shape_mask(shape, size - 4)
        mask = mask & ~inner
    elif style == "striped":
        colours[(np.arange(size) // 2 % 2 == 1)] = other
    elif style == "two_tone":
        colours[:, size // 2:] = other
    return mask, colours


def _path(motion: str, onset: float, size: int, sprite: int, rng: np.random.Generator):
    """The sprite's top-left corner as a function of time (seconds) for one motion class."""
    travel = rng.uniform(0.45, 0.6) * size
    margin = size - sprite
    if motion in ("left", "right", "up", "down"):
        across = rng.uniform(0, margin)
        start = rng.uniform(0, margin - travel)
        sign, axis = {"left": (-1, 1), "right": (1, 1), "up": (-1, 0), "down": (1, 0)}[motion]
        begin = margin - start if sign < 0 else start

        def corner(t: float) -> np.ndarray:
            along = begin + sign * travel * (t - onset) / EVENT_SECONDS
            return np.array([along, across] if axis == 0 else [across, along])
        return corner
    radius = travel / 3
    centre = rng.uniform(radius, margin - radius, size=2)
    phase = rng.uniform(0, 2 * np.pi)
    turn = 1.0 if motion == "clockwise" else -1.0  # image rows grow downwards: +angle is clockwise

    def corner(t: float) -> np.ndarray:
        angle = phase + turn * 2 * np.pi * (t - onset) / EVENT_SECONDS
        return centre + radius * np.array([np.sin(angle), np.cos(angle)])
    return corner


def render_frames(content: int, motion: int, onset: float, style: str, rng: np.random.Generator, *,
                  num_frames: int, size: int, fps: float) -> np.ndarray:
    """(T, size, size, 3) uint8 frames of one clip: nuisance everywhere, the object only during its event."""
    background = _background(rng, size)
    distractor = shape_mask(CONTENT_CLASSES[rng.integers(len(CONTENT_CLASSES))], size // 5)
    top, left = rng.integers(0, size - size // 5, size=2)
    shade = rng.uniform(-25, 25, size=3)
    background[top:top + len(distractor), left:left + len(distractor)][distractor] += shade
    sprite = max(6, round(size * rng.uniform(0.14, 0.2)))
    mask, colours = _sprite(CONTENT_CLASSES[content], sprite, style, rng)
    corner_at = _path(MOTION_CLASSES[motion], onset, size, sprite, rng)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        t = i / fps
        frame = background + rng.normal(0, 4, size=(size, size, 1))
        if onset <= t <= onset + EVENT_SECONDS:
            r, c = np.clip(np.rint(corner_at(t)).astype(int), 0, size - sprite)
            frame[r:r + sprite, c:c + sprite][mask] = colours[mask]
        frames[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def _noise_bed(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Coloured noise with a random spectral tilt, sometimes with mains hum: (n,), unit RMS."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / sample_rate), 20.0)
    spectrum *= freqs ** (-rng.uniform(0.0, 1.6) / 2)
    noise = np.fft.irfft(spectrum, n)
    if rng.uniform() < 0.3:
        t = np.arange(n) / sample_rate
        mains = rng.choice([50.0, 60.0])
        noise += sum(rng.uniform(0, 2) / k * np.sin(2 * np.pi * k * mains * t) for k in range(1, 6)) * noise.std()
    return noise / (noise.std() + 1e-9)


def render_audio(content: int, onset: float, voice: Voice, rng: np.random.Generator, *,
                 duration: float, sample_rate: int) -> np.ndarray:
    """(1, N) float32: noise bed + the word at `onset` (+ an unrelated knock in half the clips)."""
    n = round(duration * sample_rate)
    noise = _noise_bed(rng, n, sample_rate)
    word = speak(WORDS[content], voice, rng, sample_rate)
    snr_db = rng.uniform(-3, 9)
    word *= 10 ** (snr_db / 20) / (np.sqrt(np.mean(word ** 2)) + 1e-9)
    audio = noise.copy()
    start = round(onset * sample_rate)
    piece = word[: n - start]
    audio[start:start + len(piece)] += piece
    if rng.uniform() < 0.5:
        knock_len = round(0.08 * sample_rate)
        at = rng.integers(0, n - knock_len)
        knock = rng.normal(size=knock_len) * np.exp(-np.arange(knock_len) / (0.01 * sample_rate)) * 4
        audio[at:at + knock_len] += knock
    gain = 10 ** rng.uniform(np.log10(0.01), np.log10(0.15))  # RMS of the noise bed: -40 to -16 dBFS
    audio *= gain
    peak = np.abs(audio).max()
    if peak > 0.99:
        audio *= 0.99 / peak
    return audio.astype(np.float32)[None]


def make_sparse_corpus(out_dir: str | Path, *, train_videos: int = 480, test_videos: int = 160,
                       duration: float = 3.0, size: int = 64, fps: int = 12, audio_rate: int = 16000,
                       seed: int = 0) -> Path:
    """Write the hard corpus (module docstring) into `out_dir`; returns it.

    Content and motion classes are balanced and independent within each split; every clip's onset,
    nuisance and instance are drawn from (seed, split, index), so the corpus is reproducible.
    """
    if duration < EVENT_SECONDS + 0.4:
        raise ValueError(f"duration must be at least {EVENT_SECONDS + 0.4:g} s to hold an event, got {duration}")
    if min(train_videos, test_videos) < 1:
        raise ValueError("train_videos and test_videos must be at least 1")
    out_dir = Path(out_dir)
    num_frames = max(1, round(duration * fps))
    facts = []
    for split, count in (("train", train_videos), ("test", test_videos)):
        split_id = 0 if split == "train" else 1
        voices = [random_voice(np.random.default_rng([seed, split_id, 10_000 + v]))
                  for v in range(VOICES_PER_SPLIT[split])]
        for i in range(count):
            rng = np.random.default_rng([seed, split_id, i])
            content, motion = i % len(CONTENT_CLASSES), (i // len(CONTENT_CLASSES)) % len(MOTION_CLASSES)
            onset = float(rng.uniform(0.15, duration - EVENT_SECONDS - 0.15))
            voice_id = int(rng.integers(len(voices)))
            style = STYLES[split][int(rng.integers(len(STYLES[split])))]
            frames = render_frames(content, motion, onset, style, rng, num_frames=num_frames, size=size, fps=fps)
            audio = render_audio(content, onset, voices[voice_id], rng, duration=duration, sample_rate=audio_rate)
            relative = f"{split}/{i:04d}.mp4"
            write_video(out_dir / relative, frames, fps, audio, audio_rate)
            facts.append({"path": relative, "split": split, "content": CONTENT_CLASSES[content],
                          "motion": MOTION_CLASSES[motion], "onset": round(onset, 3),
                          "voice": f"{split}-{voice_id}", "style": style})
    _write_manifests(out_dir, facts)
    log.info("wrote %d sparse synthetic videos to %s", len(facts), out_dir)
    return out_dir


def _write_manifests(out_dir: Path, facts: list[dict]) -> None:
    with open(out_dir / "clips.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(facts[0]))
        writer.writeheader()
        writer.writerows(facts)
    for split in ("train", "test"):
        for task, suffix in (("content", ""), ("motion", "_motion")):
            with open(out_dir / f"{split}{suffix}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["path", "label"])
                writer.writerows((f["path"], f[task]) for f in facts if f["split"] == split)
