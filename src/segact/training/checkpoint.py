"""Fold checkpoints, so an interrupted run resumes where it stopped.

A checkpoint is one ``torch.save`` file written atomically (``segact.io.atomic_path``): a run
killed while saving keeps the previous checkpoint intact, and the temporary file it leaves is
removed when the fold starts again. It holds everything the next epoch depends on (model,
optimizer, scheduler, every random state, the augmentation's random state, early stopping and
the epoch rows so far), so a resumed fold ends with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segact.io import atomic_path, remove_temporaries_of
from segact.runs import legacy
from segact.runs.schema import VALIDATION_PREFIX
from segact.training.fitting import Augment, FoldProgress, Trainable

log = logging.getLogger(__name__)


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a training epoch may draw from."""
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
    """Serialised in memory first, then written: on a full disk torch.save's own writer raises
    ``RuntimeError: [enforce fail at inline_container.cc]``, which never mentions space; a
    plain write raises the OSError that says so."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load(path: Path, config_hash: str) -> dict[str, Any] | None:
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
    if state.get("config_hash") != config_hash:
        log.warning("ignoring checkpoint %s: it was written by a different configuration", path)
        return None
    return state


def remove(path: Path) -> None:
    """Delete a fold's checkpoint, and the checkpoints folder once it is empty."""
    path = Path(path)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: other folds' checkpoints remain
        path.parent.rmdir()


def _augment_state(augment: Augment | None) -> Any:
    state_dict = getattr(augment, "state_dict", None)
    return state_dict() if state_dict is not None else None


def renamed_metrics(progress: FoldProgress) -> FoldProgress:
    """A checkpoint saved before a metric was renamed (``legacy.RENAMED_METRICS``) resumes under
    the current names, so its epoch rows and best sweep join the new ones."""
    for row in progress.rows:
        legacy.rename_metrics(row, VALIDATION_PREFIX)
    if progress.best_sweep is not None:
        legacy.rename_metrics(progress.best_sweep.metrics)
    return progress


class Saver:
    """Saves a fold's checkpoint at most every ``every_s`` seconds (0: after every epoch).

    Saving costs about 0.2 s for a small Unet, 10 % of a CPU epoch; a crash loses at most
    ``every_s`` seconds of training, and the resumed run still ends with the same numbers.
    """

    def __init__(self, path: Path | None, every_s: float, config_hash: str) -> None:
        self.path, self.every_s, self.config_hash = path, float(every_s), config_hash
        self._last = time.perf_counter()
        if path is not None:
            for tmp in remove_temporaries_of(path):
                log.info("removed %s, left by a process killed while saving", tmp)

    def resume(
        self, trainable: Trainable, augment: Augment | None, fresh: FoldProgress, fold: int
    ) -> FoldProgress:
        """Restore ``trainable`` from the checkpoint and return its progress (else ``fresh``)."""
        state = load(self.path, self.config_hash) if self.path is not None else None
        if state is None:
            return fresh
        if set(state["model"]) != set(trainable.model.state_dict()):
            log.warning(
                "ignoring checkpoint %s: it holds other tensors than the model (saved by a segact "
                "that kept the modules the model never runs); fold %d starts again, to the same "
                "numbers",
                self.path,
                fold,
            )
            return fresh
        trainable.model.load_state_dict(state["model"])
        trainable.optimizer.load_state_dict(state["optimizer"])
        trainable.scheduler.load_state_dict(state["scheduler"])
        restore_rng_states(state["rng"], trainable.generator)
        if augment is not None and state.get("augment") is not None:
            augment.load_state_dict(state["augment"])
        log.info("fold %d: resumed after epoch %d", fold, state["progress"].epoch)
        return renamed_metrics(state["progress"])

    def maybe_save(
        self,
        trainable: Trainable,
        augment: Augment | None,
        progress: FoldProgress,
        force: bool = False,
    ) -> None:
        """Save if ``every_s`` has passed since the last save, or when ``force`` is set."""
        if self.path is None or (not force and time.perf_counter() - self._last < self.every_s):
            return
        self._last = time.perf_counter()
        state = {
            "config_hash": self.config_hash,
            "model": trainable.model.state_dict(),
            "optimizer": trainable.optimizer.state_dict(),
            "scheduler": trainable.scheduler.state_dict(),
            "rng": rng_states(trainable.generator),
            "augment": _augment_state(augment),
            "progress": progress,
        }
        save(state, self.path)
