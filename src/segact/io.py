"""Atomic file writes: a temporary file in the same folder, then a rename, so a killed run never
leaves half a file for the report to read."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import pandas as pd


def _write_atomic(path: Path, write: Callable[[TextIO], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    _write_atomic(path, lambda handle: frame.to_csv(handle, index=False))


def write_json(data: dict[str, Any], path: Path) -> None:
    _write_atomic(path, lambda handle: json.dump(data, handle, indent=2, default=str))


def read_json(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        return json.load(handle)
