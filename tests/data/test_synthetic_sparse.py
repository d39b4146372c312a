"""The hard synthetic corpus: its events line up across modalities, its labels say what the clips
show, and its test instances (voices, object styles) are never seen in training."""
from __future__ import annotations

import csv

import numpy as np
import pytest

import avssl
from avssl.data.synthetic import make_corpus
from avssl.data.synthetic_sparse import (
    CONTENT_CLASSES,
    EVENT_SECONDS,
    MOTION_CLASSES,
    render_audio,
    render_frames,
)
from avssl.data.synthetic_voice import WORDS, Voice, random_voice, speak

FPS, SIZE = 12, 64


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("sparse"), kind="sparse", train_videos=12, test_videos=6,
                       duration=2.5, seed=3)


def test_files_manifests_and_balanced_labels(corpus):
    facts = _rows(corpus / "clips.csv")
    assert [f["split"] for f in facts].count("train") == 12 and len(facts) == 18
    train = _rows(corpus / "train.csv")
    assert sorted({r["label"] for r in train}) == sorted(CONTENT_CLASSES)
    assert [r["label"] for r in train].count("circle") == 2
    motion = _rows(corpus / "train_motion.csv")
    assert [r["path"] for r in motion] == [r["path"] for r in train]
    assert {r["label"] for r in motion} <= set(MOTION_CLASSES) and len({r["label"] for r in motion}) == 2
    clip = avssl.decode_clip(corpus / train[0]["path"], start=0.0, end=2.5, num_frames=4, short_side=SIZE)
    assert clip.has_audio and clip.frames.shape == (4, SIZE, SIZE, 3)


def test_test_clips_use_unseen_voices_and_object_styles(corpus):
    facts = _rows(corpus / "clips.csv")
    for key in ("voice", "style"):
        seen = {f[key] for f in facts if f["split"] == "train"}
        assert not seen & {f[key] for f in facts if f["split"] == "test"}


def test_same_seed_same_corpus_other_seed_other_onsets(corpus, tmp_path):
    again = make_corpus(tmp_path / "again", kind="sparse", train_videos=12, test_videos=6, duration=2.5, seed=3)
    assert _rows(again / "clips.csv") == _rows(corpus / "clips.csv")
    other = make_corpus(tmp_path / "other", kind="sparse", train_videos=12, test_videos=6, duration=2.5, seed=4)
    assert [f["onset"] for f in _rows(other / "clips.csv")] != [f["onset"] for f in _rows(corpus / "clips.csv")]


def _object_frames(frames: np.ndarray) -> np.ndarray:
    """Per frame: pixels far from the clip's median frame (the object; the background stays put)."""
    deviation = np.abs(frames.astype(float) - np.median(frames, axis=0)).max(axis=-1)
    return deviation > 60


def test_object_is_seen_only_during_its_event_and_moves_as_labelled():
    onset, duration = 0.6, 2.5
    times = np.arange(round(duration * FPS)) / FPS
    during = (times >= onset) & (times <= onset + EVENT_SECONDS)
    for motion, (axis, sign) in (("left", (1, -1)), ("right", (1, 1)), ("up", (0, -1)), ("down", (0, 1))):
        rng = np.random.default_rng(7)
        frames = render_frames(1, MOTION_CLASSES.index(motion), onset, "solid", rng, num_frames=len(times),
                               size=SIZE, fps=FPS)
        mask = _object_frames(frames)
        assert mask[during].sum(axis=(1, 2)).min() > 10, motion
        assert mask[~during].sum() == 0, motion
        centres = [np.argwhere(m).mean(axis=0)[axis] for m in mask[during]]
        assert sign * (centres[-1] - centres[0]) > 0.3 * SIZE, motion


def test_the_word_starts_at_the_onset_over_the_noise_bed():
    rate, onset = 16000, 0.9
    rng = np.random.default_rng(11)
    audio = render_audio(2, onset, random_voice(rng), rng, duration=2.5, sample_rate=rate)[0]
    energy = np.convolve(audio ** 2, np.ones(400) / 400, mode="same")
    word = slice(round(onset * rate), round((onset + 0.4) * rate))
    before = slice(0, round((onset - 0.1) * rate))
    assert np.median(energy[word]) > 2 * np.median(energy[before])
    assert np.abs(audio).max() <= 1.0


def test_words_are_peak_normalised_and_last_as_long_as_the_voice_speaks():
    slow, fast = (Voice(pitch=120.0, formant_scale=1.0, rate=r, breathiness=0.1) for r in (0.8, 1.25))
    words = {rate: speak(WORDS[0], voice, np.random.default_rng(0)) for rate, voice in ((0.8, slow), (1.25, fast))}
    assert np.abs(words[0.8]).max() == pytest.approx(1.0)
    assert len(words[0.8]) / len(words[1.25]) == pytest.approx(1.25 / 0.8, rel=0.02)
    assert 0.3 < len(words[1.25]) / 16000 < 0.8  # a short word, as in the corpus
    other = speak(WORDS[1], slow, np.random.default_rng(0))
    assert len(other) != len(words[0.8]) or not np.allclose(other, words[0.8])


def test_bad_arguments_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus kind 'hard'"):
        make_corpus(tmp_path, kind="hard")
    with pytest.raises(ValueError, match="duration must be at least"):
        make_corpus(tmp_path, kind="sparse", duration=1.0)
    with pytest.raises(ValueError, match="unknown phoneme"):
        speak(("zz",), random_voice(np.random.default_rng(0)), np.random.default_rng(0))
