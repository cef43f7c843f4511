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
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from segact import aggregation, checkpoint
from segact.config import plain
from segact.data.base import SegmentationData
from segact.data.splits import Fold
from segact.fitting import (
    Augment,
    EarlyStopping,
    FoldProgress,
    LossFn,
    NonFiniteLossError,
    evaluate,
    selection_score,
    train_epoch,
)
from segact.forward import Forward
from segact.heads import Head
from segact.interrupt import Interrupted, stop_after_epoch_on_sigint
from segact.metrics import SweepResult
from segact.protocol import ReportProtocol, build_protocol

log = logging.getLogger(__name__)


def build_model(model_cfg: DictConfig, in_channels: int, out_channels: int) -> nn.Module:
    # Imported here: smp pulls in timm, torchvision and torch._dynamo (~150 MB, 2-3 s), which
    # config errors, --help and the report never need.
    import segmentation_models_pytorch as smp

    kwargs = OmegaConf.to_container(model_cfg.kwargs, resolve=True) if model_cfg.kwargs else {}
    return smp.create_model(
        model_cfg.arch,
        encoder_name=model_cfg.encoder,
        encoder_weights=model_cfg.encoder_weights,
        in_channels=in_channels,
        classes=out_channels,
        **kwargs,
    )


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
    fingerprint: str = ""

    @property
    def protocol(self) -> ReportProtocol:
        evaluation = self.cfg.eval
        return build_protocol(plain(evaluation.protocol), evaluation.inner_val_fraction)


@dataclass
class FoldResult:
    epochs: pd.DataFrame
    thresholds: pd.DataFrame
    summary: dict[str, Any]
    zero_gradient: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Trainable:
    """The torch objects of a fold, built from config (optimizer and scheduler via _target_)."""

    model: nn.Module
    forward: Forward
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator

    @classmethod
    def build(cls, setup: FoldSetup, seed: int) -> Trainable:
        cfg = setup.cfg
        model = build_model(cfg.model, setup.data.in_channels, setup.head.out_channels)
        model = model.to(setup.device)
        optimizer = instantiate(cfg.optimizer)(model.parameters())
        scheduler = instantiate(cfg.scheduler)(optimizer)
        forward = Forward(model, cfg.trainer, setup.device)
        return cls(model, forward, optimizer, scheduler, torch.Generator().manual_seed(seed))

    def step_scheduler(self, score: float) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(score)
        else:
            self.scheduler.step()


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
    parts = Trainable.build(setup, seed)
    progress = FoldProgress(EarlyStopping(int(trainer.patience)))
    saver = checkpoint.Saver(checkpoint_path, runtime.checkpoint_every_s, setup.fingerprint)
    progress = saver.resume(parts, setup.augment, progress, fold.index)
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
            run_epoch(setup, parts, progress, fold.index, epoch, train_idx, select_idx)
            bar.set_postfix(loss=f"{progress.rows[-1]['train_loss']:.4f}")
            progress.seconds = time.perf_counter() - started
            saver.maybe_save(parts, setup.augment, progress, force=stop.requested)
            heartbeat()
            if stop.requested:
                raise Interrupted(f"fold {fold.index} stopped after epoch {epoch}")
    bar.close()
    return finish_fold(setup, parts, progress, fold, protocol, (train_idx, select_idx))


def run_epoch(
    setup: FoldSetup,
    parts: Trainable,
    progress: FoldProgress,
    fold_index: int,
    epoch: int,
    train_idx: np.ndarray,
    select_idx: np.ndarray,
) -> None:
    """Train one epoch, sweep the selection images, step the schedule, keep the best epoch."""
    started = time.perf_counter()
    trainer, evaluation = setup.cfg.trainer, setup.cfg.eval
    order = train_idx[torch.randperm(len(train_idx), generator=parts.generator).numpy()]
    stats = train_epoch(
        parts.model,
        parts.forward,
        setup.head,
        setup.loss_fn,
        parts.optimizer,
        setup.data,
        order,
        int(trainer.batch_size),
        setup.augment,
    )
    if not math.isfinite(stats.train_loss):
        raise NonFiniteLossError(epoch, stats.train_loss)
    sweep = sweep_of(setup, parts, select_idx)
    score = selection_score(sweep, plain(evaluation.select_metric))
    parts.step_scheduler(score)
    lr = parts.optimizer.param_groups[0]["lr"]
    progress.record(fold_index, epoch, stats, sweep, lr, time.perf_counter() - started)
    progress.keep_if_best(score, parts.model, sweep)


def sweep_of(setup: FoldSetup, parts: Trainable, indices: np.ndarray) -> SweepResult:
    evaluation = setup.cfg.eval
    return evaluate(
        parts.forward,
        setup.head,
        setup.data,
        indices,
        list(evaluation.thresholds),
        int(evaluation.batch_size),
        int(evaluation.calibration_bins),
    )


def finish_fold(
    setup: FoldSetup,
    parts: Trainable,
    progress: FoldProgress,
    fold: Fold,
    protocol: ReportProtocol,
    split: tuple[np.ndarray, np.ndarray],
) -> FoldResult:
    """The fold's summary row and thresholds table, at the protocol's epoch and threshold."""
    assert progress.best_state is not None and progress.best_sweep is not None
    parts.model.load_state_dict(progress.best_state)
    reported = protocol.report(fold, progress.best_sweep, lambda i: sweep_of(setup, parts, i))
    epochs = pd.DataFrame(progress.rows)
    threshold = reported.summary["best_threshold"]
    summary = {
        "epoch_selected": progress.stopping.best_epoch,
        "epochs_run": len(progress.rows),
        **reported.summary,
        **aggregation.paper_aggregates(epochs),
        "hit_max_epochs": not progress.stopped,
        "degenerate": aggregation.is_degenerate(reported.sweep.table, threshold),
        "n_train": len(split[0]),
        "n_select": len(split[1]),
        "n_report": len(fold.val),
        "train_seconds": progress.seconds,
        "zero_gradient": progress.zero_gradient,
    }
    summary["dice_per_image_at_best_threshold"] = summary.pop("dice_per_image")
    table = reported.sweep.table.copy()
    table.insert(0, "fold", fold.index)
    return FoldResult(epochs, table, summary, progress.zero_gradient, progress.notes)
