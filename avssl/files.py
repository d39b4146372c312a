"""Writing files so that readers never see half of one: the checkpoint index, the shard index and
the probe cache are replaced whole or not at all, even when a run is killed mid-write."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | Path, payload: Any, *, indent: int | None = None) -> Path:
    """Write `payload` as JSON to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            json.dump(payload, handle, indent=indent)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path
