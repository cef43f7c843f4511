"""Fit and evaluate one fold: a short orchestrator over the training epoch, the threshold sweep
after every epoch, early stopping, checkpoints, and the protocol that says what is reported."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from segact.choices import plain
from segact.data.base import SegmentationData
from segact.data.splits import Fold
from segact.evaluation import aggregation
from segact.evaluation.sweep import SweepResult
from segact.nn.heads import Head
from segact.training import checkpoint
from segact.training.fitting import (
    Augment,
    EarlyStopping,
    FoldProgress,
    LossFn,
    NonFiniteLossError,
    Trainable,
    evaluate,
    selection_score,
    train_epoch,
)
from segact.training.interrupt import Interrupted, stop_after_epoch_on_sigint
from segact.training.protocol import ReportProtocol, build_protocol

log = logging.getLogger(__name__)

EpochListener = Callable[[dict[str, Any]], None]
"""Called after every epoch with that epoch's epochs.csv row (fold, epoch, train_loss, val_*,
lr, epoch_seconds): progress lines, time estimates, experiment loggers."""


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

    @property
    def protocol(self) -> ReportProtocol:
        evaluation = self.cfg.eval
        return build_protocol(plain(evaluation.protocol), evaluation.inner_val_fraction)


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
    trainer, runtime = setup.cfg.trainer, setup.cfg.runtime
    seed = int(trainer.seed) * 1000 + fold.index
    torch.manual_seed(seed)
    protocol = setup.protocol
    train_idx, select_idx = protocol.split(setup.data.cases, fold, seed)
    trainable = Trainable.build(
        setup.cfg, (setup.data.in_channels, setup.head.out_channels), setup.device, seed
    )
    progress = FoldProgress(EarlyStopping(int(trainer.patience)))
    saver = checkpoint.Saver(checkpoint_path, runtime.checkpoint_every_s, setup.config_hash)
    progress = saver.resume(trainable, setup.augment, progress, fold.index)
    started = time.perf_counter() - progress.seconds
    bar = tqdm(
        range(progress.epoch + 1, trainer.max_epochs + 1),
        desc=f"fold {fold.index}",
        disable=not runtime.progress or progress.stopped,
        leave=False,
        dynamic_ncols=True,
    )
    with stop_after_epoch_on_sigint() as stop:
        for epoch in bar:
            if progress.stopped:
                break
            run_epoch(setup, trainable, progress, fold.index, epoch, train_idx, select_idx)
            bar.set_postfix(loss=f"{progress.rows[-1]['train_loss']:.4f}")
            progress.seconds = time.perf_counter() - started
            saver.maybe_save(trainable, setup.augment, progress, force=stop.requested)
            heartbeat()
            if stop.requested:
                raise Interrupted(f"fold {fold.index} stopped after epoch {epoch}")
    bar.close()
    return finish_fold(setup, trainable, progress, fold, protocol, (train_idx, select_idx))


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
    started = time.perf_counter()
    trainer, evaluation = setup.cfg.trainer, setup.cfg.eval
    order = train_idx[torch.randperm(len(train_idx), generator=trainable.generator).numpy()]
    stats = train_epoch(
        trainable.model,
        trainable.forward,
        setup.head,
        setup.loss_fn,
        trainable.optimizer,
        setup.data,
        order,
        int(trainer.batch_size),
        setup.augment,
    )
    if not math.isfinite(stats.train_loss):
        raise NonFiniteLossError(epoch, stats.train_loss)
    sweep = sweep_of(setup, trainable, select_idx)
    score = selection_score(sweep, plain(evaluation.select_metric))
    trainable.step_scheduler(score)
    lr = trainable.optimizer.param_groups[0]["lr"]
    progress.record(fold_index, epoch, stats, sweep, lr, time.perf_counter() - started)
    progress.keep_if_best(score, trainable.model, sweep)
    for listener in setup.listeners:
        listener(progress.rows[-1])


def sweep_of(setup: FoldSetup, trainable: Trainable, indices: np.ndarray) -> SweepResult:
    evaluation = setup.cfg.eval
    return evaluate(
        trainable.forward,
        setup.head,
        setup.data,
        indices,
        list(evaluation.thresholds),
        int(evaluation.batch_size),
        int(evaluation.calibration_bins),
    )


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
    threshold = reported.metrics["best_threshold"]
    row = {
        "epoch_selected": progress.stopping.best_epoch,
        "epochs_run": len(progress.rows),
        **reported.metrics,
        **aggregation.paper_aggregates(epochs),
        "hit_max_epochs": not progress.stopped,
        "degenerate": aggregation.is_degenerate(reported.sweep.table, threshold),
        "n_train": len(split[0]),
        "n_select": len(split[1]),
        "n_report": len(fold.val),
        "train_seconds": progress.seconds,
        "zero_gradient": progress.zero_gradient,
    }
    row["dice_per_image_at_best_threshold"] = row.pop("dice_per_image")
    table = reported.sweep.table.copy()
    table.insert(0, "fold", fold.index)
    return FoldResult(
        epochs, table, row, progress.zero_gradient, progress.notes, progress.best_state
    )
