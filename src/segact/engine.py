"""Fit and evaluate one fold: Adam, ReduceLROnPlateau, early stopping, a threshold sweep after
every epoch, and the protocol that decides which epoch and threshold are reported."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import segmentation_models_pytorch as smp
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm.auto import tqdm

from segact import checkpoint
from segact.data.base import SegmentationData
from segact.data.splits import Fold, inner_split
from segact.heads import Head
from segact.metrics import SweepResult, ThresholdSweep
from segact.speed import Forward

log = logging.getLogger(__name__)

Augment = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""(images, masks) of a training batch -> augmented (images, masks), same shapes."""

ZERO_GRADIENT_MESSAGE = (
    "the gradient is exactly zero: the loss does not change when the weights do (loss.binarize="
    "hard thresholds before the loss, and a step function has zero derivative), so the weights "
    "keep their initial values. Use loss.binarize=ste for a straight-through gradient."
)


class NonFiniteLossError(RuntimeError):
    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"training loss became {value} in epoch {epoch}")
        self.epoch = epoch


def build_model(model_cfg: DictConfig, in_channels: int, out_channels: int) -> nn.Module:
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


@torch.no_grad()
def evaluate(
    model: nn.Module,
    forward: Callable[[Tensor], Tensor],
    head: Head,
    images: Tensor,
    masks: Tensor,
    thresholds: list[float],
    batch_size: int,
    calibration_bins: int,
    device: torch.device,
) -> SweepResult:
    """Probabilities of a whole set, accumulated into one threshold sweep."""
    model.eval()
    sweep = ThresholdSweep(thresholds, calibration_bins)
    for start in range(0, len(images), batch_size):
        logits = forward(images[start : start + batch_size])
        sweep.update(head.probability(logits), masks[start : start + batch_size].to(device))
    return sweep.result()


def gradient_norm(model: nn.Module) -> float:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))


@dataclass
class FoldResult:
    epochs: pd.DataFrame
    thresholds: pd.DataFrame
    summary: dict[str, Any]
    zero_gradient: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class _Best:
    epoch: int
    score: float
    state: dict[str, Tensor]
    sweep: SweepResult


@dataclass
class _Progress:
    """A fold's training state besides the torch objects: what a checkpoint must carry."""

    epoch: int = 0  # last finished epoch
    seconds: float = 0.0  # training time so far
    best: _Best | None = None
    stale: int = 0  # epochs since the best one (early stopping)
    stopped: bool = False
    zero_gradient: bool = True
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _selection_score(sweep: SweepResult, metric: str) -> float:
    value = sweep.summary[metric]
    return -value if metric == "nll" else value  # higher is better for the comparison


def fit_fold(
    cfg: DictConfig,
    data: SegmentationData,
    fold: Fold,
    head: Head,
    loss_fn: Callable[[Head, Tensor, Tensor], Tensor],
    device: torch.device,
    augment: Augment | None = None,
    checkpoint_path: Path | None = None,
    fingerprint: str = "",
) -> FoldResult:
    """Train one fold; with ``checkpoint_path``, save after every epoch and resume from it."""
    trainer, evaluation = cfg.trainer, cfg.eval
    seed = int(trainer.seed) * 1000 + fold.index
    torch.manual_seed(seed)
    if evaluation.protocol == "holdout":
        train_idx, select_idx = inner_split(
            data.cases, fold.train, evaluation.inner_val_fraction, seed
        )
    else:
        train_idx, select_idx = fold.train, fold.val
    report_idx = fold.val

    model = build_model(cfg.model, data.in_channels, head.out_channels).to(device)
    forward = Forward(model, trainer, device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=trainer.lr, weight_decay=trainer.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=trainer.lr_factor, patience=trainer.lr_patience
    )
    generator = torch.Generator().manual_seed(seed)
    thresholds = list(evaluation.thresholds)
    images, masks = data.images, data.masks
    select_images, select_masks = images[select_idx], masks[select_idx]

    def run_eval(imgs: Tensor, msks: Tensor) -> SweepResult:
        return evaluate(
            model,
            forward,
            head,
            imgs,
            msks,
            thresholds,
            evaluation.batch_size,
            evaluation.calibration_bins,
            device,
        )

    progress = _Progress()
    resumed = checkpoint.load(checkpoint_path, fingerprint) if checkpoint_path else None
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        checkpoint.restore_rng_states(resumed["rng"], generator)
        progress = resumed["progress"]
        log.info("fold %d: resumed after epoch %d", fold.index, progress.epoch)
    started = time.perf_counter() - progress.seconds
    last_save = time.perf_counter()
    bar = tqdm(
        range(progress.epoch + 1, trainer.max_epochs + 1),
        desc=f"fold {fold.index}",
        disable=not trainer.progress or progress.stopped,
        leave=False,
        dynamic_ncols=True,
    )
    for epoch in bar:
        if progress.stopped:
            break
        epoch_start = time.perf_counter()
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        total = torch.zeros((), dtype=torch.float64, device=device)
        first_grad_norm = math.nan
        for start in range(0, len(order), trainer.batch_size):
            batch = order[start : start + trainer.batch_size]
            x, y = images[batch], masks[batch]
            if augment is not None:
                x, y = augment(x, y)
            loss = loss_fn(head, forward(x), y.to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if start == 0:
                first_grad_norm = gradient_norm(model)
            optimizer.step()
            total += loss.detach() * len(batch)
        train_loss = float(total) / len(order)
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(epoch, train_loss)
        if first_grad_norm != 0.0:
            progress.zero_gradient = False
        elif epoch == 1:
            log.warning("fold %d: %s", fold.index, ZERO_GRADIENT_MESSAGE)
            progress.notes.append(ZERO_GRADIENT_MESSAGE)

        sweep = run_eval(select_images, select_masks)
        score = _selection_score(sweep, evaluation.select_metric)
        scheduler.step(score)
        progress.rows.append(
            {
                "fold": fold.index,
                "epoch": epoch,
                "train_loss": train_loss,
                "grad_norm": first_grad_norm,
                "lr": optimizer.param_groups[0]["lr"],
                **{f"val_{k}": v for k, v in sweep.summary.items() if k not in ("n_pixels",)},
                "epoch_seconds": time.perf_counter() - epoch_start,
            }
        )
        bar.set_postfix(loss=f"{train_loss:.4f}", mean_dice=f"{sweep.summary['mean_dice']:.4f}")
        best = progress.best
        if best is None or score > best.score:
            progress.best = _Best(epoch, score, copy.deepcopy(model.state_dict()), sweep)
            progress.stale = 0
        else:
            progress.stale += 1
            progress.stopped = progress.stale >= trainer.patience
        progress.epoch = epoch
        progress.seconds = time.perf_counter() - started
        # Saving costs ~0.2 s for a small Unet, 10 % of a CPU epoch: at most every
        # trainer.checkpoint_every_s seconds (0: every epoch). A crash loses at most that much
        # training, and the resumed run still ends with the same numbers.
        if checkpoint_path is not None and (
            time.perf_counter() - last_save >= trainer.checkpoint_every_s
        ):
            last_save = time.perf_counter()
            checkpoint.save(
                {
                    "fingerprint": fingerprint,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": checkpoint.rng_states(generator),
                    "progress": progress,
                },
                checkpoint_path,
            )
    bar.close()
    best, rows, zero_gradient, notes = (
        progress.best,
        progress.rows,
        progress.zero_gradient,
        progress.notes,
    )
    assert best is not None
    train_seconds = time.perf_counter() - started

    summary: dict[str, Any] = {"epoch_selected": best.epoch, "epochs_run": len(rows)}
    if evaluation.protocol == "holdout":
        # Epoch and threshold come from the inner split; Dice is read off the untouched fold.
        model.load_state_dict(best.state)
        reported = run_eval(images[report_idx], masks[report_idx])
        chosen = best.sweep.summary["best_threshold"]
        at_chosen = reported.table.loc[np.isclose(reported.table["threshold"], chosen)].iloc[0]
        summary.update(reported.summary)
        summary.update(
            best_threshold=chosen,
            best_dice=float(at_chosen["dice"]),
            dice_per_image=float(at_chosen["dice_per_image"]),
            oracle_best_dice=reported.summary["best_dice"],
        )
    else:
        reported = best.sweep
        summary.update(reported.summary)
        summary["oracle_best_dice"] = reported.summary["best_dice"]
    summary.update(
        n_train=len(train_idx),
        n_select=len(select_idx),
        n_report=len(report_idx),
        train_seconds=train_seconds,
        zero_gradient=zero_gradient,
    )
    thresholds_table = reported.table.copy()
    thresholds_table.insert(0, "fold", fold.index)
    return FoldResult(pd.DataFrame(rows), thresholds_table, summary, zero_gradient, notes)
