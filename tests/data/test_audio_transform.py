import pytest
import torch
from torchaudio.compliance import kaldi

from avssl.data.audio import FBANK_MEAN, FBANK_STD, AudioTransform, log_mel, mask_band, target_frames


def _wave(n: int, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(n, generator=torch.Generator().manual_seed(seed)) + 0.05  # a DC offset to remove


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_log_mel_matches_kaldi_fbank():
    wave = _wave(16000)
    reference = kaldi.fbank((wave - wave.mean()).unsqueeze(0), htk_compat=True, sample_frequency=16000,
                            use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    out = log_mel(wave)
    assert out.shape == (98, 128)
    torch.testing.assert_close(out, reference)


def test_log_mel_too_short_is_empty():
    assert log_mel(_wave(300)).shape == (0, 128)
    with pytest.raises(ValueError, match=r"\(N,\)"):
        log_mel(torch.zeros(1, 16000))


def test_target_frames():
    assert target_frames(2.0) == 208
    assert target_frames(10.0) == 1008
    assert target_frames(0.96) == 96
    assert target_frames(1.0, multiple=1) == 100
    # never fewer frames than kaldi produces for that much audio
    for seconds in (0.5, 1.0, 2.0, 3.3):
        assert target_frames(seconds) >= log_mel(_wave(int(seconds * 16000))).shape[0]


def test_pad_and_cut_to_target_frames():
    wave = _wave(32000)
    full = (log_mel(wave) - FBANK_MEAN) / FBANK_STD  # 198 frames
    padded = AudioTransform(208)(wave)
    assert padded.shape == (208, 128)
    torch.testing.assert_close(padded[:198], full)
    # pad frames are zeros before normalisation, as CAV-MAE pads
    torch.testing.assert_close(padded[198:], torch.full((10, 128), -FBANK_MEAN / FBANK_STD))
    cut = AudioTransform(64)(wave)
    assert cut.shape == (64, 128)
    torch.testing.assert_close(cut, full[:64])
    assert AudioTransform(32)(_wave(100)).shape == (32, 128)


def test_custom_statistics():
    wave = _wave(8000)
    out = AudioTransform(48, mean=-4.2677, std=2 * 4.5690)(wave)  # AudioMAE's, with its doubled std
    torch.testing.assert_close(out[:48], (log_mel(wave)[:48] + 4.2677) / (2 * 4.5690))


def test_eval_has_no_masks_and_ignores_the_generator():
    wave = _wave(16000)
    transform = AudioTransform(112)
    assert torch.equal(transform(wave, _gen(0)), transform(wave, _gen(1)))


def _zero_lines(x: torch.Tensor, dim: int) -> list[int]:
    return torch.nonzero((x == 0).all(dim=dim)).flatten().tolist()


def test_spec_augment_masks_one_band_each_way():
    wave = _wave(32000)
    clean = AudioTransform(192)(wave)
    train = AudioTransform(192, train=True, freq_mask=24, time_mask=0.25)
    assert train.time_mask_frames == 48
    assert torch.equal(train(wave, _gen(7)), train.spec_augment(clean, _gen(7)))
    assert torch.equal(train(wave, _gen(7)), train(wave, _gen(7)))
    widths_f, widths_t = [], []
    for seed in range(40):
        out = train.spec_augment(clean, _gen(seed))
        # neither band can cover the whole other axis, so a fully zero line is a masked one
        bins = _zero_lines(out, dim=0)
        frames = _zero_lines(out, dim=1)
        for band in (bins, frames):
            assert not band or band == list(range(band[0], band[-1] + 1))  # one contiguous band
        widths_f.append(len(bins))
        widths_t.append(len(frames))
        keep = torch.ones_like(out, dtype=torch.bool)
        keep[:, bins] = False
        keep[frames, :] = False
        assert torch.equal(out[keep], clean[keep])  # everything outside the bands is untouched
        assert (out[~keep] == 0).all()
    assert max(widths_f) <= 24 and max(widths_t) <= 48
    assert max(widths_f) >= 18 and max(widths_t) >= 36  # the widths really vary up to the limit
    assert len(set(widths_f)) > 5 and len(set(widths_t)) > 5


def test_mask_band_fits():
    for seed in range(30):
        start, width = mask_band(10, 20, _gen(seed))
        assert 0 <= width <= 10 and 0 <= start and start + width <= 10
    assert mask_band(10, 0, _gen(0))[1] == 0


def test_spec_augment_off_leaves_the_spectrogram_unchanged():
    wave = _wave(32000)
    clean = AudioTransform(208)(wave)
    masked = [AudioTransform(208, train=True)(wave, _gen(s)) for s in range(4)]
    assert any(not torch.equal(m, clean) for m in masked)  # on by default in training
    off = AudioTransform(208, train=True, freq_mask=0, time_mask=0.0)
    for seed in range(4):
        assert torch.equal(off(wave, _gen(seed)), clean)


def test_masks_stay_within_their_limits():
    wave = _wave(32000)
    clean = AudioTransform(208)(wave)
    for seed in range(8):
        out = AudioTransform(208, train=True, freq_mask=10, time_mask=0.0)(wave, _gen(seed))
        zeroed_bins = ((out != clean).any(dim=0)).sum()
        assert zeroed_bins <= 10 and torch.equal(out.any(dim=1), clean.any(dim=1))  # no time band


def test_description_and_bad_masks():
    assert AudioTransform(208, train=True).describe() == ["SpecAugment freq<=48 bins time<=20%"]
    assert AudioTransform(208, train=True, freq_mask=0).describe() == ["SpecAugment time<=20%"]
    assert AudioTransform(208, train=True, freq_mask=0, time_mask=0.0).describe() == []
    assert AudioTransform(208).describe() == []  # evaluation never augments
    with pytest.raises(ValueError, match="freq_mask"):
        AudioTransform(208, freq_mask=-2)
    with pytest.raises(ValueError, match="time_mask"):
        AudioTransform(208, time_mask=1.2)
