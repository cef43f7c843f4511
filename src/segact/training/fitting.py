"""What fitting a fold is made of: its torch objects (``Trainable``), one training epoch,
evaluation, early stopping, and the fold's progress (what a checkpoint carries besides the torch
objects)."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from segact.data.base import SegmentationData
from segact.evaluation.sweep import SweepResult, ThresholdSweep
from segact.nn.activations import EPS
from segact.nn.heads import Head, argmax_counts
from segact.nn.prune import drop_unused_modules
from segact.runs import schema
from segact.training.forward import Forward
from segact.training.graphs import EvalGraph, TrainGraph, capturable_optimizer
from segact.training.settings import ModelConfig, RunSettings

log = logging.getLogger(__name__)

Augment = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""(images, masks) of a training batch -> augmented (images, masks), same shapes."""
LossFn = Callable[[Head, Tensor, Tensor], Tensor]

ZERO_GRADIENT_MESSAGE = (
    "the gradient is exactly zero: the loss does not change when the weights do (loss.binarize="
    "hard thresholds before the loss, and a step function has zero derivative), so the weights "
    "keep their initial values. Use loss.binarize=ste for a straight-through gradient."
)


def build_model(model_cfg: ModelConfig, in_channels: int, out_channels: int) -> nn.Module:
    """The smp model, without the modules it never runs (``segact.nn.prune``: an encoder's
    stages beyond ``encoder_depth``), removed after every random draw of its initialisation."""
    # Imported here: smp pulls in timm, torchvision and torch._dynamo (~150 MB, 2-3 s), which
    # config errors, --help and the report never need.
    import segmentation_models_pytorch as smp

    model = smp.create_model(
        model_cfg.arch,
        encoder_name=model_cfg.encoder,
        encoder_weights=model_cfg.encoder_weights,
        in_channels=in_channels,
        classes=out_channels,
        **model_cfg.kwargs,
    )
    drop_unused_modules(model, in_channels)
    return model


@dataclass
class Trainable:
    """The torch objects of a fold, built from config (optimizer and scheduler via _target_)."""

    model: nn.Module
    forward: Forward
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator
    train_graph: TrainGraph | None = None  # set where the fold captures CUDA graphs
    eval_graph: EvalGraph | None = None

    @classmethod
    def build(
        cls, settings: RunSettings, channels: tuple[int, int], device: torch.device, seed: int
    ) -> Trainable:
        """``channels``: (the images' channels, the head's output channels)."""
        model = build_model(settings.model, *channels).to(device)
        optimizer = build_optimizer(settings.optimizer, model, device)
        scheduler = instantiate(settings.scheduler)(optimizer)
        forward = Forward(model, settings.trainer.forward, device)
        return cls(model, forward, optimizer, scheduler, torch.Generator().manual_seed(seed))

    def step_scheduler(self, score: float) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(score)
        else:
            self.scheduler.step()

    def keep_lr_on_device(self) -> None:
        """A tensor lr back on the device after a checkpoint (loaded to the CPU) replaced it:
        a capturable step reads it there, and a graph reads it at its captured address."""
        device = self.forward.device
        for group in self.optimizer.param_groups:
            lr = group["lr"]
            if isinstance(lr, Tensor) and lr.device != device:
                group["lr"] = lr.to(device)


def build_optimizer(
    optimizer_cfg: Mapping[str, Any], model: nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    """On CUDA, Adam and AdamW step with ``capturable=True`` and their lr in a device tensor,
    graphs or not (segact.training.graphs): a graphed and an eager fold compute the same step."""
    factory = instantiate(optimizer_cfg)
    if not capturable_optimizer(optimizer_cfg.get("_target_"), device):
        return factory(model.parameters())
    lr = torch.tensor(float(optimizer_cfg.get("lr", 1e-3)), device=device)
    return factory(model.parameters(), lr=lr, capturable=True)


class NonFiniteLossError(RuntimeError):
    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"training loss became {value} in epoch {epoch}")
        self.epoch = epoch


@dataclass
class EpochStats:
    train_loss: float
    grad_norm: float  # of the epoch's first batch: exactly 0 when the loss has no gradient


@dataclass
class PendingStats:
    """An epoch's training numbers still on the device: (mean loss, first batch's gradient
    norm), read back in one transfer."""

    values: Tensor

    def result(self) -> EpochStats:
        train_loss, grad_norm = self.values.tolist()
        return EpochStats(train_loss, grad_norm)


def gradients(model: nn.Module) -> list[Tensor]:
    return [p.grad for p in model.parameters() if p.grad is not None]


def gradient_norm(grads: list[Tensor]) -> Tensor:
    """The global L2 norm of the gradients, as a tensor (no host synchronisation)."""
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def device_batches(
    data: SegmentationData, indices: np.ndarray, batch_size: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """``data.batch`` of each run of ``batch_size`` indices. Where the raw arrays live on a
    CUDA ``device``, the indices go there once (non-blocking from pinned memory), so that no
    batch copies its indices from the host."""
    index: np.ndarray | Tensor = np.asarray(indices, dtype=np.int64).reshape(-1)
    images, masks = data.images, data.masks
    resident = isinstance(images, Tensor) and isinstance(masks, Tensor) and images.device == device
    if resident and device.type == "cuda":
        index = torch.from_numpy(index).pin_memory().to(device, non_blocking=True)
    for start in range(0, len(index), batch_size):
        yield data.batch(index[start : start + batch_size], device)


def training_batches(
    data: SegmentationData,
    order: np.ndarray,
    batch_size: int,
    device: torch.device,
    augment: Augment | None,
) -> Iterator[tuple[Tensor, Tensor]]:
    if augment is None:
        yield from device_batches(data, order, batch_size, device)
        return
    for start in range(0, len(order), batch_size):  # albumentations works on host arrays
        x, y = augment(*data.batch(order[start : start + batch_size], torch.device("cpu")))
        yield x, y.to(device, non_blocking=True)


def eager_step(
    forward: Forward,
    head: Head,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
) -> Tensor:
    """Forward, loss, backward and optimizer step of one batch; the batch loss."""
    loss = loss_fn(head, forward(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def launch_train_epoch(
    trainable: Trainable,
    head: Head,
    loss_fn: LossFn,
    data: SegmentationData,
    order: np.ndarray,
    batch_size: int,
    augment: Augment | None = None,
) -> PendingStats:
    """One pass over ``order`` in batches, queued on the device: nothing is read back until
    ``result()`` (one transfer an epoch). Full batches replay the fold's training graph where it
    has one."""
    forward, optimizer, graph = trainable.forward, trainable.optimizer, trainable.train_graph
    trainable.model.train()
    total = torch.zeros((), dtype=torch.float64, device=forward.device)
    first_grad_norm: Tensor | None = None
    for x, y in training_batches(data, order, batch_size, forward.device, augment):
        if graph is not None and graph.fits(x, y):
            loss, grads = graph.run((x, y))
        else:
            loss = eager_step(forward, head, loss_fn, optimizer, x, y)
            grads = gradients(trainable.model)
        if first_grad_norm is None:  # the optimizer step leaves the gradients as they were
            first_grad_norm = gradient_norm(grads)
        total += loss.detach() * len(x)
    assert first_grad_norm is not None, "an epoch needs at least one training image"
    return PendingStats(torch.stack([total / len(order), first_grad_norm.to(total)]))


@dataclass
class PendingSweep:
    """A threshold sweep accumulated on the device, not yet read back."""

    sweep: ThresholdSweep
    argmax_totals: Tensor | None = None  # 2-channel head: (pixels, disagreements, ties)

    def result(self) -> SweepResult:
        result = self.sweep.result()
        if self.argmax_totals is not None:
            _, disagreements, ties = self.argmax_totals.tolist()
            result.metrics.update(
                {schema.ARGMAX_DISAGREEMENTS: disagreements, schema.ARGMAX_TIES: ties}
            )
        return result


@torch.no_grad()
def launch_evaluate(
    forward: Forward,
    head: Head,
    data: SegmentationData,
    indices: np.ndarray,
    thresholds: list[float],
    batch_size: int,
    calibration_bins: int,
    graph: EvalGraph | None = None,
) -> PendingSweep:
    """Probabilities of a whole set, clipped to [EPS, 1 - EPS] like the paper's (so that no
    activation reaches p = 1), accumulated into one threshold sweep on the device."""
    forward.model.eval()
    sweep = ThresholdSweep(thresholds, calibration_bins, clip=EPS)
    two_channels = head.out_channels == 2
    argmax_totals = torch.zeros(3, dtype=torch.int64, device=forward.device)
    for images, masks in device_batches(data, indices, batch_size, forward.device):
        if graph is not None and graph.fits(images):
            logits, prob = graph.run((images,))
        else:
            logits = forward(images)
            prob = head.probability(logits)
        sweep.update(prob, masks)
        if two_channels:
            argmax_totals += argmax_counts(logits)
    return PendingSweep(sweep, argmax_totals if two_channels else None)


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
        validation = {
            schema.validation(k): v for k, v in sweep.metrics.items() if k != schema.N_PIXELS
        }
        row = {schema.FOLD: fold, schema.EPOCH: epoch, schema.TRAIN_LOSS: stats.train_loss}
        row.update({schema.GRAD_NORM: stats.grad_norm, schema.LR: lr})
        row.update({**validation, schema.EPOCH_SECONDS: seconds})
        self.rows.append(row)
        self.epoch = epoch

    def keep_if_best(self, score: float, model: nn.Module, sweep: SweepResult) -> None:
        if self.stopping.step(score, self.epoch):
            self.best_state = copy.deepcopy(model.state_dict())
            self.best_sweep = sweep
