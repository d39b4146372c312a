"""Small pieces of the training loop."""
from __future__ import annotations

import torch

from avssl.data.loader import collate_clips
from avssl.train.trainer import _num_clips


def test_clips_are_counted_from_the_batch_rows_not_the_loader_batch_size():
    item = {"video": torch.zeros(2, 3, 4, 4), "path": "a.mp4"}
    assert _num_clips(collate_clips([item, item, item])) == 3
    assert _num_clips(collate_clips([[item, item], [item, item]])) == 4  # random_multi: 2 clips per video
