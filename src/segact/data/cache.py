"""Preprocessed-array cache: decode and resize once, then load the arrays in milliseconds.

A cache file is keyed by the loader's preprocessing settings and by the path, size and
modification time of every input file, so any changed, added or removed file (or setting) gives
a new key and a fresh decode. Files are written atomically, so parallel runs of a sweep that
build the same entry at once never read a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

VERSION = 1  # bump when the arrays a loader produces change for the same settings
Arrays = dict[str, np.ndarray]


def default_cache_dir() -> Path:
    """``$SEGACT_CACHE``, else ``~/.cache/segact``."""
    return Path(os.environ.get("SEGACT_CACHE") or Path.home() / ".cache" / "segact")


def cache_key(settings: dict[str, Any], files: Iterable[Path]) -> str:
    stats = []
    for path in files:
        stat = path.stat()
        stats.append([str(path), stat.st_size, stat.st_mtime_ns])
    text = json.dumps({"version": VERSION, "settings": settings, "files": stats}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _save(arrays: Arrays, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        np.savez(handle, **arrays)
    os.replace(handle.name, path)


def cached(
    label: str,
    settings: dict[str, Any],
    files: Iterable[Path],
    build: Callable[[], Arrays],
    cache_dir: str | Path | None = None,
    enabled: bool = True,
) -> Arrays:
    """``build()``'s arrays, from the cache when the settings and files are unchanged."""
    if not enabled:
        return build()
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = folder / f"{label}-{cache_key(settings, files)}.npz"
    if path.exists():
        started = time.perf_counter()
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        log.info("%s: loaded from cache %s in %.2f s", label, path, time.perf_counter() - started)
        return arrays
    started = time.perf_counter()
    arrays = build()
    try:
        _save(arrays, path)
    except OSError as error:  # a read-only cache folder slows later runs, it breaks nothing
        log.warning("%s: could not write the cache file %s (%s)", label, path, error)
    else:
        log.info("%s: decoded in %.1f s, cached to %s", label, time.perf_counter() - started, path)
    return arrays
