"""Writing files so that readers never see half of one: the checkpoint index, the shard index, the
probe cache and a resumed run's metrics.jsonl are replaced whole or not at all, even when a run is
killed mid-write.

Files written here get the mode any new file gets (0666 less the umask, e.g. 0644), not the 0600
of Python's temporary files, so that the people and jobs who share a corpus or a run can read them.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def new_file_mode() -> int:
    """The mode `open()` gives a new file in this process: 0666 less the umask.

    Read from /proc where it is there (changing the umask to read it is not thread-safe: a file
    another thread creates meanwhile would get mode 0666)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it over `path`; the file gets
    `new_file_mode()`."""
    path = Path(path)
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            os.chmod(handle.fileno(), new_file_mode())
            handle.write(text)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, payload: Any, *, indent: int | None = None) -> Path:
    """Write `payload` as JSON with `write_text_atomic` (whole or not at all, `new_file_mode()`)."""
    return write_text_atomic(path, json.dumps(payload, indent=indent))
