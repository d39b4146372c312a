"""The probe's on-disk cache: one JSON file of probe verdicts keyed by absolute path, each valid while
the file's size and mtime are unchanged, shared by every corpus scanned on the machine."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from avssl.files import write_json_atomic

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: absurd durations and unseekable streams are rejected; 3: has_video recorded


def default_cache_path() -> Path:
    """~/.cache/avssl/probe.json, or probe.json in $AVSSL_CACHE_DIR when that is set."""
    root = os.environ.get("AVSSL_CACHE_DIR")
    return Path(root) / "probe.json" if root else Path.home() / ".cache" / "avssl" / "probe.json"


def load_cache(path: Path) -> dict:
    """The cache's entries (absolute path -> size, mtime_ns, info); empty, with a warning, when the
    file is unreadable or of another version."""
    try:
        with open(path) as handle:
            data = json.load(handle)
        if data.get("version") != CACHE_VERSION or not isinstance(data.get("files"), dict):
            raise ValueError("not an avssl probe cache of this version")
        return data["files"]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as err:
        log.warning("ignoring unreadable probe cache %s: %s", path, err)
        return {}


def save_cache(path: Path, new: dict) -> None:
    """Merge `new` into the cache file (re-read, so concurrent writers lose little) and replace it
    atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files = {**load_cache(path), **new}
        write_json_atomic(path, {"version": CACHE_VERSION, "files": files})
    except OSError as err:
        log.warning("could not write probe cache %s: %s", path, err)


def cached_info(entry: dict | None, stat: os.stat_result) -> dict[str, Any] | None:
    """The cached verdict's fields, when `entry` was written for a file of this size and mtime."""
    if not entry or entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
        return None
    info = entry.get("info")
    return info if isinstance(info, dict) else None
