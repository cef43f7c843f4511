"""Fit and evaluate one fold: a short orchestrator over the training epoch, the threshold sweep
after every epoch, early stopping, checkpoints, and the protocol that says what is reported."""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

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
    selection_score,
)
from segact.training.graphs import EvalGraph, GraphPlan, TrainGraph, announce, graph_plan
from segact.training.interrupt import Interrupted, stop_after_epoch_on_sigint
from segact.training.protocol import ReportProtocol, build_protocol

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

    cfg: DictConfig
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
        evaluation = self.cfg.eval
        return build_protocol(plain(evaluation.protocol), evaluation.inner_val_fraction)

    def graph_plan(self) -> GraphPlan:
        """Decided (and logged, in one line) once per run, by its first fold."""
        if self.graphs is None:
            trainer = self.cfg.trainer
            mode = str(plain(trainer.get("cuda_graphs", "auto")))
            self.graphs = graph_plan(
                mode,
                self.device,
                compile=bool(trainer.get("compile", False)),
                augment=self.augment is not None,
                optimizer=self.cfg.optimizer.get("_target_"),
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


def fit_fold(
    setup: FoldSetup,
    fold: Fold,
    checkpoint_path: Path | None = None,
    heartbeat: Callable[[], None] = lambda: None,
) -> FoldResult:
    """Train one fold; with ``checkpoint_path``, save now and then and resume from it."""
    run = FoldRun.start(setup, fold, checkpoint_path, heartbeat)
    progress = run.progress
    # a bar only on a terminal: a log file (2>&1 > run.log, SLURM, nohup) gets the epoch lines
    bar = tqdm(
        range(progress.epoch + 1, setup.cfg.trainer.max_epochs + 1),
        desc=f"fold {fold.index}",
        disable=not (setup.cfg.runtime.progress and sys.stderr.isatty()) or progress.stopped,
        leave=False,
        dynamic_ncols=True,
    )
    # log lines (one per epoch) go through tqdm.write, above the bar instead of through it
    with stop_after_epoch_on_sigint() as stop, logging_redirect_tqdm():
        for epoch in bar:
            if progress.stopped:
                break
            run_epoch(run.setup, run.trainable, progress, fold.index, epoch, *run.split)
            bar.set_postfix(loss=f"{progress.rows[-1][schema.TRAIN_LOSS]:.4f}")
            run.after_epoch(force_save=stop.requested)
            if stop.requested:
                raise Interrupted(f"fold {fold.index} stopped after epoch {epoch}")
    bar.close()
    return run.finish()


@dataclass
class FoldRun:
    """A fold in flight: built (and resumed) by ``start``, trained epoch by epoch, reported by
    ``finish``; what ``fit_fold`` runs alone and ``segact.training.group`` side by side."""

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
        trainer, runtime = setup.cfg.trainer, setup.cfg.runtime
        plan = setup.graph_plan()
        seed = int(trainer.seed) * 1000 + fold.index
        torch.manual_seed(seed)
        own = dataclasses.replace(setup, augment=copy.deepcopy(setup.augment))
        split = own.protocol.split(own.data.cases, fold, seed)
        channels = (own.data.in_channels, own.head.out_channels)
        trainable = Trainable.build(own.cfg, channels, own.device, seed)
        progress = FoldProgress(EarlyStopping(int(trainer.patience)))
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
        max_epochs = int(self.setup.cfg.trainer.max_epochs)
        return self.progress.stopped or self.progress.epoch >= max_epochs

    def after_epoch(self, force_save: bool = False) -> None:
        """The training time so far, a checkpoint when one is due (or forced), a heartbeat."""
        self.progress.seconds = time.perf_counter() - self.started
        self.saver.maybe_save(self.trainable, self.setup.augment, self.progress, force=force_save)
        self.heartbeat()

    def save(self) -> None:
        """A checkpoint now (the fold's random state must be the current one)."""
        self.saver.maybe_save(self.trainable, self.setup.augment, self.progress, force=True)

    def finish(self) -> FoldResult:
        """The fold's result; the listeners are told it has ended."""
        result = finish_fold(
            self.setup, self.trainable, self.progress, self.fold, self.setup.protocol, self.split
        )
        for listener in self.setup.listeners:
            listener.fold_finished(self.fold.index, self.progress.epoch)
        return result


def attach_graphs(setup: FoldSetup, trainable: Trainable, fold: int) -> None:
    """The fold's training step and evaluation forward pass as CUDA graphs, captured at their
    first full batch (segact.training.graphs)."""
    forward, head = trainable.forward, setup.head
    forward.autocast_cache = False

    def predict(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(images)
        return logits, head.probability(logits)

    step = functools.partial(eager_step, forward, head, setup.loss_fn, trainable.optimizer)
    batch_size = int(setup.cfg.trainer.batch_size)
    trainable.train_graph = TrainGraph(step, trainable.model, trainable.optimizer, batch_size, fold)
    trainable.eval_graph = EvalGraph(predict, int(setup.cfg.eval.batch_size), fold)


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


def run_epoch(
    setup: FoldSetup,
    trainable: Trainable,
    progress: FoldProgress,
    fold_index: int,
    epoch: int,
    train_idx: np.ndarray,
    select_idx: np.ndarray,
) -> None:
    """Train one epoch, sweep the selection images, step the schedule, keep the best epoch."""
    flight = launch_epoch(setup, trainable, epoch, train_idx)
    stats = flight.checked()
    sweep = launch_sweep(setup, trainable, select_idx).result()
    close_epoch(setup, trainable, progress, fold_index, flight, stats, sweep)


def launch_epoch(
    setup: FoldSetup, trainable: Trainable, epoch: int, train_idx: np.ndarray
) -> EpochInFlight:
    """Shuffle (the fold's generator) and queue the epoch's training."""
    started = time.perf_counter()
    order = train_idx[torch.randperm(len(train_idx), generator=trainable.generator).numpy()]
    batch_size = int(setup.cfg.trainer.batch_size)
    stats = launch_train_epoch(
        trainable, setup.head, setup.loss_fn, setup.data, order, batch_size, setup.augment
    )
    return EpochInFlight(epoch, started, stats)


def close_epoch(
    setup: FoldSetup,
    trainable: Trainable,
    progress: FoldProgress,
    fold_index: int,
    flight: EpochInFlight,
    stats: EpochStats,
    sweep: SweepResult,
) -> None:
    """Score the epoch, step the schedule, record its row, keep it if best, tell listeners."""
    score = selection_score(sweep, plain(setup.cfg.eval.select_metric))
    trainable.step_scheduler(score)
    lr = float(trainable.optimizer.param_groups[0]["lr"])
    seconds = time.perf_counter() - flight.started
    progress.record(fold_index, flight.epoch, stats, sweep, lr, seconds)
    progress.keep_if_best(score, trainable.model, sweep)
    for listener in setup.listeners:
        listener(progress.rows[-1])


def launch_sweep(setup: FoldSetup, trainable: Trainable, indices: np.ndarray) -> PendingSweep:
    evaluation = setup.cfg.eval
    return launch_evaluate(
        trainable.forward,
        setup.head,
        setup.data,
        indices,
        list(evaluation.thresholds),
        int(evaluation.batch_size),
        int(evaluation.calibration_bins),
        trainable.eval_graph,
    )


def sweep_of(setup: FoldSetup, trainable: Trainable, indices: np.ndarray) -> SweepResult:
    return launch_sweep(setup, trainable, indices).result()


def finish_fold(
    setup: FoldSetup,
    trainable: Trainable,
    progress: FoldProgress,
    fold: Fold,
    protocol: ReportProtocol,
    split: tuple[np.ndarray, np.ndarray],
) -> FoldResult:
    """The fold's folds.csv row and thresholds table, at the protocol's epoch and threshold."""
    assert progress.best_state is not None and progress.best_sweep is not None
    trainable.model.load_state_dict(progress.best_state)
    reported = protocol.report(fold, progress.best_sweep, lambda i: sweep_of(setup, trainable, i))
    epochs = pd.DataFrame(progress.rows)
    threshold = reported.metrics[schema.BEST_THRESHOLD]
    row = {
        schema.EPOCH_SELECTED: progress.stopping.best_epoch,
        schema.EPOCHS_RUN: len(progress.rows),
        **reported.metrics,
        **aggregation.paper_aggregates(epochs),
        schema.HIT_MAX_EPOCHS: not progress.stopped,
        schema.DEGENERATE: aggregation.is_degenerate(reported.sweep.table, threshold),
        schema.N_TRAIN: len(split[0]),
        schema.N_SELECT: len(split[1]),
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
