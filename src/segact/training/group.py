"""Several folds of one run trained side by side in one process (``trainer.fold_group``).

The folds advance together, one epoch each per round: first every fold's training is queued,
then each fold's loss is read back and its selection sweep queued, then each fold closes its
epoch (schedule, early stopping, epochs.csv row, listeners, checkpoint). On CUDA each fold queues
on its own stream, so while the host waits for one fold the GPU runs the others' kernels: with
CUDA graphs, a small model no longer leaves the GPU idle between launches. A fold that stops
early leaves the group at once (its result recorded) while the others go on.

Nothing is shared between the folds but the data: each has its own model, optimizer, scheduler,
early stopping, checkpoint saver, augmentation and random state (every generator a training
epoch draws from is switched to the fold's own before each of its steps), so each fold's files
are exactly what the fold writes when trained alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from segact.data.splits import Fold
from segact.training.checkpoint import restore_rng_states, rng_states
from segact.training.engine import (
    EpochInFlight,
    FoldResult,
    FoldRun,
    FoldSetup,
    close_epoch,
    launch_epoch,
    launch_sweep,
)
from segact.training.fitting import EpochStats, PendingSweep
from segact.training.interrupt import Interrupted, StopRequest, stop_after_epoch_on_sigint

log = logging.getLogger(__name__)

Start = tuple[Fold, Path | None, Callable[[], None]]
"""A fold to train: the fold, its checkpoint path, its heartbeat (its lock's refresh)."""
Finished = Callable[[Fold, FoldResult], None]


@dataclass
class Member:
    """A fold of the group, with its random state while the other folds run."""

    run: FoldRun
    rng: dict[str, Any]
    stream: Any = None  # torch.cuda.Stream on CUDA

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """This fold's random state (and CUDA stream) for the block; saved again after it."""
        generator = self.run.trainable.generator
        restore_rng_states(self.rng, generator)
        with torch.cuda.stream(self.stream) if self.stream is not None else _nothing():
            yield
        self.rng = rng_states(generator)

    def finish(self) -> FoldResult:
        with self.active():
            result = self.run.finish()
        if self.stream is not None:  # the caller reads the result on the default stream
            self.stream.synchronize()
        return result


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def join(setup: FoldSetup, fold: Fold, path: Path | None, heartbeat: Callable[[], None]) -> Member:
    """Build (or resume) a fold, and keep its random state as it starts."""
    run = FoldRun.start(setup, fold, path, heartbeat)
    stream = None
    if setup.device.type == "cuda":
        stream = torch.cuda.Stream(device=setup.device)
        stream.wait_stream(torch.cuda.current_stream(setup.device))  # the fold's weights
    return Member(run, rng_states(run.trainable.generator), stream)


def fit_group(setup: FoldSetup, starts: Sequence[Start], finished: Finished) -> None:
    """Train the folds of ``starts`` side by side; ``finished(fold, result)`` as each ends.

    A stop request (Ctrl-C, SIGTERM, SIGUSR2) ends the round, saves every unfinished fold's
    checkpoint and raises ``Interrupted``, as for a fold alone."""
    members = [join(setup, *start) for start in starts]
    log.info("training folds %s side by side", ", ".join(str(m.run.fold.index) for m in members))
    with stop_after_epoch_on_sigint() as stop:
        while members:
            for member in [m for m in members if m.run.done]:
                members.remove(member)
                finished(member.run.fold, member.finish())
            if members:
                run_round(members, stop)


def run_round(members: list[Member], stop: StopRequest) -> None:
    """One epoch of every member, in three passes (see the module)."""
    flights: list[EpochInFlight] = []
    for member in members:
        run = member.run
        with member.active():
            flights.append(
                launch_epoch(run.setup, run.trainable, run.progress.epoch + 1, run.split[0])
            )
    selected: list[tuple[EpochStats, PendingSweep]] = []
    for member, flight in zip(members, flights, strict=True):
        run = member.run
        with member.active():
            stats = flight.checked()
            selected.append((stats, launch_sweep(run.setup, run.trainable, run.split[1])))
    unsaved = []
    for member, flight, (stats, sweep) in zip(members, flights, selected, strict=True):
        run, force = member.run, stop.requested
        with member.active():
            sweep_result = sweep.result()
            close_epoch(
                run.setup, run.trainable, run.progress, run.fold.index, flight, stats, sweep_result
            )
            run.after_epoch(force_save=force)
        if not force:
            unsaved.append(member)
    if stop.requested:
        for member in unsaved:
            with member.active():
                member.run.save()
        folds = ", ".join(f"{m.run.fold.index} (epoch {m.run.progress.epoch})" for m in members)
        raise Interrupted(f"folds {folds} stopped")
