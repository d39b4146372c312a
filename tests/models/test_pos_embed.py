import numpy as np
import pytest
import torch

from avssl.models.pos_embed import PositionalEmbedding, resample_table, sincos_2d, sincos_3d


def _mae_2d_reference(dim, rows, cols):
    """MAE's get_2d_sincos_pos_embed (numpy), restated: meshgrid with w first."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    grid = np.stack(np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32)), axis=0)
    return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)


def test_sincos_2d_matches_mae_table():
    expected = torch.from_numpy(_mae_2d_reference(32, 8, 13)).float()
    torch.testing.assert_close(sincos_2d(32, 8, 13), expected)


def test_sincos_recompute_for_shorter_audio_equals_cropping_time():
    long, short = sincos_2d(16, 8, 64).reshape(8, 64, 16), sincos_2d(16, 8, 20).reshape(8, 20, 16)
    torch.testing.assert_close(short, long[:, :20])


def test_sincos_3d_is_spatial_plus_temporal():
    table = sincos_3d(16, 3, 2, 4).reshape(3, 8, 16)
    spatial = sincos_2d(16, 2, 4)
    diffs = table - spatial[None]
    torch.testing.assert_close(diffs, diffs[:, :1].expand_as(diffs))  # same offset for every patch of a frame
    assert not torch.allclose(diffs[0], diffs[1])


@pytest.mark.parametrize("kind", ["sincos", "learned"])
@pytest.mark.parametrize("grid,new_grid", [((4, 4, 4), (8, 2, 6)), ((8, 13), (8, 6))])
def test_embedding_for_other_grids(kind, grid, new_grid):
    pos = PositionalEmbedding(16, grid, kind)
    assert pos().shape == (1, int(np.prod(grid)), 16)
    assert pos(new_grid).shape == (1, int(np.prod(new_grid)), 16)
    names = [n for n, _ in pos.named_parameters()]
    assert names == (["weight"] if kind == "learned" else [])
    assert ("weight" in pos.state_dict()) == (kind == "learned")


def test_learned_resample_is_identity_on_same_grid_and_smooth_otherwise():
    table = torch.arange(12.0).reshape(12, 1).repeat(1, 4)  # a ramp along the flattened 3x4 grid
    assert resample_table(table, (3, 4), (3, 4)) is table
    up = resample_table(table, (3, 4), (6, 8)).reshape(6, 8, 4)
    assert torch.all(up[1:, :, 0] >= up[:-1, :, 0] - 1e-4)  # rows still increase
    assert up.min() >= -1.0 and up.max() <= 12.0
