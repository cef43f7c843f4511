"""Per-epoch fold checkpoints, so an interrupted run resumes where it stopped.

A checkpoint is one ``torch.save`` file written atomically (temporary file, then ``os.replace``):
a run killed while saving keeps the previous epoch's checkpoint intact. It holds everything the
next epoch depends on (model, optimizer, scheduler, every random state, early-stopping state and
the epoch rows so far), so a resumed fold ends with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"


def fold_checkpoint(run_dir: Path, fold: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"fold{fold}.pt"


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a training epoch may draw from (augmentations use numpy or random)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generator": generator.get_state(),
    }


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    generator.set_state(states["generator"])


def save(state: dict[str, Any], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists and was written by the same configuration."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        # Our own file: it holds numpy states and DataFrames besides tensors.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # unreadable: start the fold again rather than fail the run
        log.warning("ignoring unreadable checkpoint %s (%s)", path, error)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("ignoring checkpoint %s: it was written by a different configuration", path)
        return None
    return state


def remove(path: Path) -> None:
    """Delete a fold's checkpoint, and the checkpoints folder once it is empty."""
    path = Path(path)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: other folds' checkpoints remain
        path.parent.rmdir()
