"""The one loop over a run's epochs: the folds of a group (``trainer.fold_group``; a fold alone
is a group of one) advance together, one epoch each per round.

In a round, first every fold's training is queued, then each fold's loss is read back and its
selection sweep queued, then each fold closes its epoch (schedule, early stopping, epochs.csv
row, listeners, checkpoint). On CUDA each fold of a larger group queues on its own stream, so
while the host waits for one fold the GPU runs the others' kernels: with CUDA graphs, a small
model no longer leaves the GPU idle between launches. A fold that stops early leaves the group at
once (its result recorded) while the others go on.

Nothing is shared between the folds but the data: each has its own model, optimizer, scheduler,
early stopping, checkpoint saver, augmentation and random state (every generator a training
epoch draws from is switched to the fold's own before each of its steps), so each fold's files
are exactly what the fold writes when trained alone.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from segact.data.splits import Fold
from segact.runs import schema
from segact.training.checkpoint import restore_rng_states, rng_states
from segact.training.engine import EpochInFlight, FoldResult, FoldRun, FoldSetup
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
    rng: dict[str, Any] | None = None  # None: a fold alone keeps the process's random state
    stream: Any = None  # torch.cuda.Stream on CUDA, beside other folds

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """This fold's random state (and CUDA stream) for the block; saved again after it."""
        if self.rng is None:
            yield
            return
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


def join(
    setup: FoldSetup,
    fold: Fold,
    path: Path | None,
    heartbeat: Callable[[], None],
    alone: bool = False,
) -> Member:
    """Build (or resume) a fold; beside other folds, with its random state as it starts (and,
    on CUDA, a stream of its own)."""
    run = FoldRun.start(setup, fold, path, heartbeat)
    if alone:
        return Member(run)
    stream = None
    if setup.device.type == "cuda":
        stream = torch.cuda.Stream(device=setup.device)
        stream.wait_stream(torch.cuda.current_stream(setup.device))  # the fold's weights
    return Member(run, rng_states(run.trainable.generator), stream)


def fit_group(setup: FoldSetup, starts: Sequence[Start], finished: Finished) -> None:
    """Train the folds of ``starts`` (one, or several side by side) until each stops early or
    reaches ``trainer.max_epochs``; ``finished(fold, result)`` as each ends.

    A stop request (Ctrl-C, SIGTERM, SIGUSR2) ends the round, saves every unfinished fold's
    checkpoint and raises ``Interrupted``."""
    alone = len(starts) == 1
    members = [join(setup, *start, alone=alone) for start in starts]
    if not alone:
        folds = ", ".join(str(m.run.fold.index) for m in members)
        log.info("training folds %s side by side", folds)
    # log lines (one per epoch) go through tqdm.write, above the bar instead of through it
    bar = progress_bar(setup, members)
    with stop_after_epoch_on_sigint() as stop, logging_redirect_tqdm(), bar:
        while members:
            for member in [m for m in members if m.run.done]:
                members.remove(member)
                finished(member.run.fold, member.finish())
            if members:
                run_round(members, stop)
                losses = (m.run.progress.rows[-1][schema.TRAIN_LOSS] for m in members)
                bar.set_postfix(loss=" ".join(f"{loss:.4f}" for loss in losses))
                bar.update()


def fit_fold(
    setup: FoldSetup,
    fold: Fold,
    checkpoint_path: Path | None = None,
    heartbeat: Callable[[], None] = lambda: None,
) -> FoldResult:
    """Train one fold alone (a group of one); with ``checkpoint_path``, save now and then and
    resume from it."""
    results: list[FoldResult] = []
    fit_group(setup, [(fold, checkpoint_path, heartbeat)], lambda _, result: results.append(result))
    return results[0]


def progress_bar(setup: FoldSetup, members: Sequence[Member]) -> tqdm:
    """A bar of the group's epochs, on a terminal only: a log file (2>&1 > run.log, SLURM,
    nohup) gets the epoch lines."""
    folds = [str(m.run.fold.index) for m in members]
    shown = setup.settings.runtime.progress and sys.stderr.isatty()
    return tqdm(
        total=setup.settings.trainer.max_epochs,
        initial=min(m.run.progress.epoch for m in members),
        desc=f"fold{'s' if len(folds) > 1 else ''} {', '.join(folds)}",
        disable=not shown or all(m.run.done for m in members),
        leave=False,
        dynamic_ncols=True,
    )


def run_round(members: list[Member], stop: StopRequest) -> None:
    """One epoch of every member, in three passes (see the module)."""
    flights: list[EpochInFlight] = []
    for member in members:
        with member.active():
            flights.append(member.run.launch_epoch())
    selected: list[tuple[EpochStats, PendingSweep]] = []
    for member, flight in zip(members, flights, strict=True):
        with member.active():
            stats = flight.checked()
            selected.append((stats, member.run.launch_sweep()))
    unsaved = []
    for member, flight, (stats, sweep) in zip(members, flights, selected, strict=True):
        run, force = member.run, stop.requested
        with member.active():
            run.close_epoch(flight, stats, sweep.result())
            run.after_epoch(force_save=force)
        if not force:
            unsaved.append(member)
    if stop.requested:
        for member in unsaved:
            with member.active():
                member.run.save()
        raise Interrupted(stopped(members))


def stopped(members: Sequence[Member]) -> str:
    """What an interrupt stopped: 'fold 0 stopped after epoch 2', or 'folds 0 (epoch 2), 1
    (epoch 2) stopped'."""
    runs = [m.run for m in members]
    if len(runs) == 1:
        return f"fold {runs[0].fold.index} stopped after epoch {runs[0].progress.epoch}"
    return f"folds {', '.join(f'{r.fold.index} (epoch {r.progress.epoch})' for r in runs)} stopped"
