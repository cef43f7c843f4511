"""Atomic file writes: a temporary file in the same folder, flushed to disk, then a rename, so a
killed run never leaves half a file for the report (or the next run) to read.

Every writer in segact (result CSV/JSON, reports and their figures, fold checkpoints, the dataset
cache) goes through ``atomic_path``. Temporary files are named ``.<name>.<random>.tmp``;
``remove_temporaries_of`` deletes those a killed process left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pandas as pd

if TYPE_CHECKING:  # matplotlib only where a figure is drawn
    from matplotlib.figure import Figure


def _umask_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give: 0o666 minus the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed to ``path``
    (with the umask's usual mode, not mkstemp's 0600); on any error it is deleted."""
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        with naming(path):
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError without a file name (a write on a full disk) gets ``path``'s, so that the one
    line the user sees says which file could not be written, and why."""
    try:
        yield
    except OSError as error:
        if error.filename is None and error.errno is not None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def describe(error: OSError) -> str:
    """``<path>: <cause>`` in one line, for the CLIs."""
    where = error.filename or "(no file named)"
    return f"{where}: {error.strerror or error}"


def write_text_atomic(path: Path, write: Callable[[TextIO], None]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        write(handle)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, lambda handle: frame.to_csv(handle, index=False))


def write_text(text: str, path: Path) -> None:
    write_text_atomic(path, lambda handle: handle.write(text))


def write_figure(figure: Figure, path: Path, dpi: int) -> None:
    """A matplotlib figure, in the format its file name's suffix says (``.png``)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip("."))


def write_json(data: dict[str, Any], path: Path) -> None:
    write_text_atomic(path, lambda handle: json.dump(data, handle, indent=2, default=str))


def read_json(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        return json.load(handle)


def remove_temporaries_of(path: Path) -> list[Path]:
    """Delete the temporaries of ``path`` that writers killed mid-write left behind. Call it only
    while no other process may be writing ``path`` (segact holds the run's or fold's lock)."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed
