"""A fold in flight (``FoldRun``): the training epoch, the threshold sweep after every epoch,
early stopping, checkpoints, and the protocol that says what is reported. The loop over the
epochs, of a fold alone or of several side by side, is ``segact.training.group``'s."""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from segact.choices import plain
from segact.data.base import SegmentationData
from segact.data.splits import Fold
from segact.evaluation import aggregation
from segact.evaluation.sweep import SweepResult
from segact.nn.heads import Head
from segact.runs import schema
from segact.training import checkpoint
from segact.training.fitting import (
    Augment,
    EarlyStopping,
    EpochStats,
    FoldProgress,
    LossFn,
    NonFiniteLossError,
    PendingStats,
    PendingSweep,
    Trainable,
    eager_step,
    launch_evaluate,
    launch_train_epoch,
)
from segact.training.graphs import EvalGraph, GraphPlan, TrainGraph, announce, graph_plan
from segact.training.protocol import ReportProtocol, build_protocol
from segact.training.selection import selection_score
from segact.training.settings import RunSettings

log = logging.getLogger(__name__)


class EpochListener(Protocol):
    """Told of every epoch and of every fold's end: progress lines, time estimates, experiment
    loggers (``segact.runs.monitor``)."""

    def __call__(self, row: dict[str, Any]) -> None:
        """After every epoch, with its epochs.csv row (fold, epoch, train_loss, val_*, lr,
        epoch_seconds)."""

    def fold_finished(self, fold: int, epochs: int) -> None:
        """When a fold has ended (stopped early or at trainer.max_epochs), with its last epoch."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class FoldSetup:
    """What every fold of a run shares."""

    settings: RunSettings
    data: SegmentationData
    head: Head
    loss_fn: LossFn
    device: torch.device
    augment: Augment | None = None
    config_hash: str = ""
    listeners: tuple[EpochListener, ...] = ()
    graphs: GraphPlan | None = None  # whether folds capture CUDA graphs: see graph_plan()

    @property
    def protocol(self) -> ReportProtocol:
        evaluation = self.settings.eval
        return build_protocol(plain(evaluation.protocol), evaluation.inner_val_fraction)

    def graph_plan(self) -> GraphPlan:
        """Decided (and logged, in one line) once per run, by its first fold."""
        if self.graphs is None:
            trainer = self.settings.trainer
            mode = str(plain(trainer.cuda_graphs))
            self.graphs = graph_plan(
                mode,
                self.device,
                compile=trainer.compile,
                augment=self.augment is not None,
                optimizer=self.settings.optimizer.get("_target_"),
            )
            announce(self.graphs, mode, self.device)
        return self.graphs


@dataclass
class FoldResult:
    """A finished fold: its epochs.csv and thresholds.csv rows, and its numbers in folds.csv."""

    epochs: pd.DataFrame
    thresholds: pd.DataFrame
    row: dict[str, Any]
    zero_gradient: bool = False
    notes: list[str] = field(default_factory=list)
    state: dict[str, torch.Tensor] | None = None  # the weights of the reported epoch


@dataclass
class EpochInFlight:
    """An epoch whose training is queued on the device, its numbers not yet read back."""

    epoch: int
    started: float
    stats: PendingStats

    def checked(self) -> EpochStats:
        """The epoch's training numbers (the host waits for its training here)."""
        stats = self.stats.result()
        if not math.isfinite(stats.train_loss):
            raise NonFiniteLossError(self.epoch, stats.train_loss)
        return stats


@dataclass
class FoldRun:
    """A fold in flight: built (and resumed) by ``start``; an epoch is ``launch_epoch``, then
    ``launch_sweep`` once its training numbers are checked, then ``close_epoch`` and
    ``after_epoch``; reported by ``finish``. ``segact.training.group`` holds the one loop over
    the epochs, of a fold alone (a group of one) or of several side by side."""

    setup: FoldSetup  # the run's, with this fold's own copy of the augmentation
    fold: Fold
    trainable: Trainable
    progress: FoldProgress
    saver: checkpoint.Saver
    split: tuple[np.ndarray, np.ndarray]  # (images trained on, images the epoch is chosen on)
    heartbeat: Callable[[], None]
    started: float = 0.0

    @classmethod
    def start(
        cls,
        setup: FoldSetup,
        fold: Fold,
        checkpoint_path: Path | None = None,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> FoldRun:
        """Seeded from ``trainer.seed`` and the fold alone, and with the augmentation's random
        stream from its start, so a fold's numbers do not depend on which folds ran before it
        in the process (or beside it, in a fold group)."""
        trainer, runtime = setup.settings.trainer, setup.settings.runtime
        plan = setup.graph_plan()
        seed = trainer.seed * 1000 + fold.index
        torch.manual_seed(seed)
        own = dataclasses.replace(setup, augment=copy.deepcopy(setup.augment))
        split = own.protocol.split(own.data.cases, fold, seed)
        channels = (own.data.in_channels, own.head.out_channels)
        trainable = Trainable.build(own.settings, channels, own.device, seed)
        progress = FoldProgress(EarlyStopping(trainer.patience))
        saver = checkpoint.Saver(checkpoint_path, runtime.checkpoint_every_s, own.config_hash)
        progress = saver.resume(trainable, own.augment, progress, fold.index)
        trainable.keep_lr_on_device()
        if plan.use:
            attach_graphs(own, trainable, fold.index)
        run = cls(own, fold, trainable, progress, saver, split, heartbeat)
        run.started = time.perf_counter() - progress.seconds
        return run

    @property
    def done(self) -> bool:
        """Stopped early, or at ``trainer.max_epochs``."""
        max_epochs = self.setup.settings.trainer.max_epochs
        return self.progress.stopped or self.progress.epoch >= max_epochs

    def launch_epoch(self) -> EpochInFlight:
        """Shuffle the training images (the fold's generator) and queue the next epoch."""
        started = time.perf_counter()
        train_idx, setup = self.split[0], self.setup
        shuffled = torch.randperm(len(train_idx), generator=self.trainable.generator)
        order = train_idx[shuffled.numpy()]
        batch_size = setup.settings.trainer.batch_size
        stats = launch_train_epoch(
            self.trainable, setup.head, setup.loss_fn, setup.data, order, batch_size, setup.augment
        )
        return EpochInFlight(self.progress.epoch + 1, started, stats)

    def launch_sweep(self, indices: np.ndarray | None = None) -> PendingSweep:
        """Queue the threshold sweep of ``indices`` (None: the images the epoch is chosen on)."""
        evaluation = self.setup.settings.eval
        return launch_evaluate(
            self.trainable.forward,
            self.setup.head,
            self.setup.data,
            self.split[1] if indices is None else indices,
            list(evaluation.thresholds),
            evaluation.batch_size,
            evaluation.calibration_bins,
            self.trainable.eval_graph,
        )

    def close_epoch(self, flight: EpochInFlight, stats: EpochStats, sweep: SweepResult) -> None:
        """Score the epoch, step the schedule, record its row, keep it if best, tell listeners."""
        trainable, progress = self.trainable, self.progress
        score = selection_score(sweep, plain(self.setup.settings.eval.select_metric))
        trainable.step_scheduler(score)
        lr = float(trainable.optimizer.param_groups[0]["lr"])
        seconds = time.perf_counter() - flight.started
        progress.record(self.fold.index, flight.epoch, stats, sweep, lr, seconds)
        progress.keep_if_best(score, trainable.model, sweep)
        for listener in self.setup.listeners:
            listener(progress.rows[-1])

    def after_epoch(self, force_save: bool = False) -> None:
        """The training time so far, a checkpoint when one is due (or forced), a heartbeat."""
        self.progress.seconds = time.perf_counter() - self.started
        self.saver.maybe_save(self.trainable, self.setup.augment, self.progress, force=force_save)
        self.heartbeat()

    def save(self) -> None:
        """A checkpoint now (the fold's random state must be the current one)."""
        self.saver.maybe_save(self.trainable, self.setup.augment, self.progress, force=True)

    def finish(self) -> FoldResult:
        """The fold's result, at the protocol's epoch and threshold; the listeners are told it
        has ended."""
        result = self.result()
        for listener in self.setup.listeners:
            listener.fold_finished(self.fold.index, self.progress.epoch)
        return result

    def sweep_of(self, indices: np.ndarray) -> SweepResult:
        return self.launch_sweep(indices).result()

    def result(self) -> FoldResult:
        """The fold's folds.csv row and thresholds table, at the protocol's epoch and threshold."""
        progress, fold = self.progress, self.fold
        assert progress.best_state is not None and progress.best_sweep is not None
        self.trainable.model.load_state_dict(progress.best_state)
        reported = self.setup.protocol.report(fold, progress.best_sweep, self.sweep_of)
        epochs = pd.DataFrame(progress.rows)
        threshold = reported.metrics[schema.BEST_THRESHOLD]
        row = {
            schema.EPOCH_SELECTED: progress.stopping.best_epoch,
            schema.EPOCHS_RUN: len(progress.rows),
            **reported.metrics,
            **aggregation.paper_aggregates(epochs),
            schema.HIT_MAX_EPOCHS: not progress.stopped,
            schema.DEGENERATE: aggregation.is_degenerate(reported.sweep.table, threshold),
            schema.N_TRAIN: len(self.split[0]),
            schema.N_SELECT: len(self.split[1]),
            schema.N_REPORT: len(fold.val),
            schema.TRAIN_SECONDS: progress.seconds,
            schema.ZERO_GRADIENT: progress.zero_gradient,
        }
        row[schema.DICE_PER_IMAGE_AT_BEST_THRESHOLD] = row.pop(schema.DICE_PER_IMAGE)
        table = reported.sweep.table.copy()
        table.insert(0, "fold", fold.index)
        return FoldResult(
            epochs, table, row, progress.zero_gradient, progress.notes, progress.best_state
        )


def attach_graphs(setup: FoldSetup, trainable: Trainable, fold: int) -> None:
    """The fold's training step and evaluation forward pass as CUDA graphs, captured at their
    first full batch (segact.training.graphs)."""
    forward, head = trainable.forward, setup.head
    forward.autocast_cache = False

    def predict(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(images)
        return logits, head.probability(logits)

    step = functools.partial(eager_step, forward, head, setup.loss_fn, trainable.optimizer)
    batch_size = setup.settings.trainer.batch_size
    trainable.train_graph = TrainGraph(step, trainable.model, trainable.optimizer, batch_size, fold)
    trainable.eval_graph = EvalGraph(predict, setup.settings.eval.batch_size, fold)
