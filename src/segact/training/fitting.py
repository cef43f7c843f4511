"""What fitting a fold is made of: its torch objects (``Trainable``), one training epoch,
evaluation, early stopping, and the fold's progress (what a checkpoint carries besides the torch
objects)."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from segact.choices import Choice
from segact.data.base import SegmentationData
from segact.evaluation.aggregation import LOWER_IS_BETTER
from segact.evaluation.sweep import SweepResult, ThresholdSweep
from segact.nn.activations import EPS
from segact.nn.heads import Head, argmax_counts
from segact.training.forward import Forward

log = logging.getLogger(__name__)

Augment = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""(images, masks) of a training batch -> augmented (images, masks), same shapes."""
LossFn = Callable[[Head, Tensor, Tensor], Tensor]

ZERO_GRADIENT_MESSAGE = (
    "the gradient is exactly zero: the loss does not change when the weights do (loss.binarize="
    "hard thresholds before the loss, and a step function has zero derivative), so the weights "
    "keep their initial values. Use loss.binarize=ste for a straight-through gradient."
)


class SelectMetric(Choice):
    """``eval.select_metric``: the sweep metric that picks a fold's epoch, and that early
    stopping and the LR schedule follow."""

    mean_dice = "mean_dice"
    best_dice = "best_dice"
    dice_at_05 = "dice_at_05"
    nll = "nll"


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


@dataclass
class Trainable:
    """The torch objects of a fold, built from config (optimizer and scheduler via _target_)."""

    model: nn.Module
    forward: Forward
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator

    @classmethod
    def build(
        cls, cfg: DictConfig, channels: tuple[int, int], device: torch.device, seed: int
    ) -> Trainable:
        """``channels``: (the images' channels, the head's output channels)."""
        model = build_model(cfg.model, *channels).to(device)
        optimizer = instantiate(cfg.optimizer)(model.parameters())
        scheduler = instantiate(cfg.scheduler)(optimizer)
        forward = Forward(model, cfg.trainer, device)
        return cls(model, forward, optimizer, scheduler, torch.Generator().manual_seed(seed))

    def step_scheduler(self, score: float) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(score)
        else:
            self.scheduler.step()


class NonFiniteLossError(RuntimeError):
    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"training loss became {value} in epoch {epoch}")
        self.epoch = epoch


@dataclass
class EpochStats:
    train_loss: float
    grad_norm: float  # of the epoch's first batch: exactly 0 when the loss has no gradient


def gradient_norm(model: nn.Module) -> Tensor:
    """The global L2 norm of the gradients, as a tensor (no host synchronisation)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def train_epoch(
    model: nn.Module,
    forward: Forward,
    head: Head,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    data: SegmentationData,
    order: np.ndarray,
    batch_size: int,
    augment: Augment | None = None,
) -> EpochStats:
    """One pass over ``order`` in batches; the loss stays on the device until the epoch ends."""
    model.train()
    device = forward.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    first_grad_norm: Tensor | None = None
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        if augment is None:
            x, y = data.batch(batch, device)
        else:  # albumentations works on host arrays
            x, y = augment(*data.batch(batch, torch.device("cpu")))
            y = y.to(device, non_blocking=True)
        loss = loss_fn(head, forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if first_grad_norm is None:
            first_grad_norm = gradient_norm(model)
        optimizer.step()
        total += loss.detach() * len(batch)
    return EpochStats(float(total) / len(order), float(first_grad_norm))


@torch.no_grad()
def evaluate(
    forward: Forward,
    head: Head,
    data: SegmentationData,
    indices: np.ndarray,
    thresholds: list[float],
    batch_size: int,
    calibration_bins: int,
) -> SweepResult:
    """Probabilities of a whole set, clipped to [EPS, 1 - EPS] like the paper's (so that no
    activation reaches p = 1), accumulated into one threshold sweep."""
    forward.model.eval()
    sweep = ThresholdSweep(thresholds, calibration_bins, clip=EPS)
    argmax_totals = torch.zeros(3, dtype=torch.int64, device=forward.device)
    for start in range(0, len(indices), batch_size):
        images, masks = data.batch(indices[start : start + batch_size], forward.device)
        logits = forward(images)
        sweep.update(head.probability(logits), masks)
        if head.out_channels == 2:
            argmax_totals += argmax_counts(logits)
    result = sweep.result()
    if head.out_channels == 2:
        _, disagreements, ties = argmax_totals.tolist()
        result.metrics.update(argmax_disagreements=disagreements, argmax_ties=ties)
    return result


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs in a row without a higher score than the best one."""

    patience: int
    best_score: float = -math.inf
    best_epoch: int = 0
    stale: int = 0

    def step(self, score: float, epoch: int) -> bool:
        """Record an epoch's score; True when it is the best so far."""
        if score > self.best_score:
            self.best_score, self.best_epoch, self.stale = score, epoch, 0
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.stale >= self.patience


def selection_score(sweep: SweepResult, metric: str) -> float:
    """The epoch's score for early stopping and the LR schedule: higher is better."""
    value = sweep.metrics[metric]
    return -value if metric in LOWER_IS_BETTER else value


@dataclass
class FoldProgress:
    """A fold's training state besides the torch objects: what a checkpoint must carry."""

    stopping: EarlyStopping
    epoch: int = 0  # last finished epoch
    seconds: float = 0.0  # training time so far
    best_state: dict[str, Tensor] | None = None
    best_sweep: SweepResult | None = None
    zero_gradient: bool = True
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def stopped(self) -> bool:
        return self.stopping.should_stop

    def record(
        self,
        fold: int,
        epoch: int,
        stats: EpochStats,
        sweep: SweepResult,
        lr: float,
        seconds: float,
    ) -> None:
        """One epoch's row of epochs.csv, and the zero-gradient verdict."""
        if stats.grad_norm != 0.0:
            self.zero_gradient = False
        elif epoch == 1:
            log.warning("fold %d: %s", fold, ZERO_GRADIENT_MESSAGE)
            self.notes.append(ZERO_GRADIENT_MESSAGE)
        validation = {f"val_{k}": v for k, v in sweep.metrics.items() if k != "n_pixels"}
        row = {"fold": fold, "epoch": epoch, "train_loss": stats.train_loss}
        row.update(grad_norm=stats.grad_norm, lr=lr, **validation, epoch_seconds=seconds)
        self.rows.append(row)
        self.epoch = epoch

    def keep_if_best(self, score: float, model: nn.Module, sweep: SweepResult) -> None:
        if self.stopping.step(score, self.epoch):
            self.best_state = copy.deepcopy(model.state_dict())
            self.best_sweep = sweep
