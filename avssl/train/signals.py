"""A clean stop on SIGTERM / SIGINT: the training loop finishes its step and checkpoints instead of dying."""
from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any

log = logging.getLogger(__name__)


class StopSignal:
    """Turns the first SIGTERM/SIGINT into a request to stop after the current step (a second one
    gets the previous handler: the process ends at once). Signals sent to the whole process group
    reach the DataLoader workers too, which leave them to this process (`avssl.data.loader`)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        log.warning("received %s: finishing the current step, then writing a checkpoint", signal.Signals(signum).name)
        self.requested = True
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __enter__(self) -> "StopSignal":
        with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
