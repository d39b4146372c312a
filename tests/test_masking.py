import pytest
import torch

from avssl.masking import (
    audio_masking, gather_tokens, masking_from_keep, num_kept, random_masking, restore_tokens, tube_masking,
)


def _check_consistent(m, num_tokens, num_keep):
    batch = m.ids_keep.shape[0]
    assert m.ids_keep.shape == (batch, num_keep)
    assert m.mask.shape == m.ids_restore.shape == (batch, num_tokens)
    assert torch.equal(m.mask.sum(dim=1), torch.full((batch,), float(num_tokens - num_keep)))
    assert torch.all(m.ids_keep[:, 1:] > m.ids_keep[:, :-1])  # ascending, distinct
    assert torch.all(m.mask.gather(1, m.ids_keep) == 0)


@pytest.mark.parametrize("num_tokens,ratio,expected", [(64, 0.75, 16), (100, 0.9, 10), (104, 0.75, 26),
                                                       (10, 0.0, 10), (7, 0.99, 1), (1568, 0.9, 156)])
def test_random_masking_keeps_exact_count(num_tokens, ratio, expected):
    assert num_kept(num_tokens, ratio) == expected
    m = random_masking(5, num_tokens, ratio, generator=torch.Generator().manual_seed(0))
    _check_consistent(m, num_tokens, expected)


def test_rows_get_different_masks_and_seed_repeats():
    a = random_masking(4, 50, 0.5, generator=torch.Generator().manual_seed(1))
    b = random_masking(4, 50, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.ids_keep, b.ids_keep)
    assert len({tuple(row.tolist()) for row in a.ids_keep}) == 4


def test_restore_puts_tokens_back_in_order():
    tokens = torch.randn(3, 20, 6)
    m = random_masking(3, 20, 0.6, generator=torch.Generator().manual_seed(2))
    fill = torch.full((1, 1, 6), 99.0)
    restored = restore_tokens(gather_tokens(tokens, m.ids_keep), fill, m.ids_restore)
    visible = m.mask[..., None] == 0
    assert torch.equal(torch.where(visible, restored, tokens), tokens)
    assert torch.all(torch.where(visible, 99.0, restored) == 99.0)


def test_tube_masking_repeats_spatial_mask_over_time():
    m = tube_masking(3, (4, 5, 6), 0.75, generator=torch.Generator().manual_seed(3))
    _check_consistent(m, 4 * 30, 4 * num_kept(30, 0.75))
    slices = m.mask.reshape(3, 4, 30)
    assert torch.equal(slices, slices[:, :1].expand_as(slices))


@pytest.mark.parametrize("mode", ["time", "freq", "time_freq", "random"])
def test_audio_masking_count_and_structure(mode):
    freqs, times, ratio = 8, 13, 0.75
    m = audio_masking(6, (freqs, times), ratio, mode, generator=torch.Generator().manual_seed(4))
    _check_consistent(m, freqs * times, num_kept(freqs * times, ratio))
    grid = m.mask.reshape(6, freqs, times)
    full_cols = (grid.sum(dim=1) == freqs).sum(dim=1)
    full_rows = (grid.sum(dim=2) == times).sum(dim=1)
    if mode == "time":
        assert torch.all(full_cols >= int(times * ratio))
    if mode == "freq":
        assert torch.all(full_rows >= int(freqs * ratio))
    if mode == "time_freq":
        assert torch.all(full_cols >= int(times * ratio * 0.7))
        assert torch.all(full_rows >= int(freqs * ratio * 0.7))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="mask ratio"):
        random_masking(2, 10, 1.0)
    with pytest.raises(ValueError, match="same number"):
        masking_from_keep(torch.tensor([[True, False], [True, True]]))
    with pytest.raises(ValueError, match="audio masking"):
        audio_masking(2, (4, 4), 0.5, "diagonal")


@pytest.mark.parametrize("strategy", ["random", "tube", "time_freq"])
def test_masking_never_reads_the_device(strategy):
    # a meta tensor has no data: .item(), int() or bool() on one raises, as a host sync would stall a GPU
    if strategy == "random":
        m = random_masking(4, 64, 0.75, device="meta")
    elif strategy == "tube":
        m = tube_masking(4, (4, 4, 4), 0.75, device="meta")  # 4 of each time slice's 16 tokens
    else:
        m = audio_masking(4, (8, 8), 0.75, "time_freq", device="meta")
    assert m.ids_keep.shape == (4, 16) and m.mask.shape == m.ids_restore.shape == (4, 64)
    assert m.ids_keep.device.type == "meta"
