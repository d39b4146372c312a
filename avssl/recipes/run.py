"""What every training recipe does around its own set-up: one `open_run(cfg)`.

It checks the config, starts the processes' group (`avssl.train.distributed`), makes the run folder
on the main process with `config.yaml` in it, seeds torch, and at the end removes the folder again
if the recipe never called `folder.keep()` (a run that failed while it set up leaves nothing behind)
and shuts the group down, whether the recipe returned or raised.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from avssl.config import RunFolder, save_config, validate_config
from avssl.train import distributed as distr
from avssl.train.distributed import DistContext


@contextmanager
def open_run(cfg: Any) -> Iterator[tuple[RunFolder, DistContext]]:
    """(run folder, distributed context) of a recipe config with `out`, `seed` and `train.device`."""
    validate_config(cfg)
    ctx = distr.init_distributed(cfg.train.device)
    folder = RunFolder(cfg.out)  # removed again if the set-up inside the block fails
    try:
        if ctx.is_main:
            folder.create()
            save_config(cfg, folder.path / "config.yaml")
        distr.barrier()
        torch.manual_seed(cfg.seed)
        yield folder, ctx
    finally:
        folder.close()
        distr.cleanup()
