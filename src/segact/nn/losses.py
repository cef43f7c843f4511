"""Losses on the head's foreground probability, with optional binarization before the loss.

Every loss takes the head and its raw logits, so that BCE can use stable with-logits forms, and
the probability-based losses see exactly the activation under study (nothing re-applies one).

Each loss is registered once, by its options' schema (``segact.nn.loss_options``: ``@register``
on a ``LossConfig`` subclass whose ``_target_`` names the loss class here and whose ``name`` is
the option): the config option ``loss=<name>``, its checks and the result files' ``loss`` column
all read ``LOSSES``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segact.nn.activations import EPS, LogProbs
from segact.nn.heads import Head
from segact.nn.loss_options import (  # noqa: F401  (re-exported: losses.register, ...)
    LOSSES,
    Binarize,
    LossConfig,
    register,
)


def binarize_probability(prob: Tensor, mode: str, threshold: float = 0.5) -> Tensor:
    """``hard``: (p >= t) with an exactly zero gradient; ``ste``: the same forward value with the
    identity as backward (straight-through estimator); ``none``: p unchanged."""
    if mode == "none":
        return prob
    hard = (prob >= threshold).to(prob.dtype)
    if mode == "hard":
        # 0 * p keeps the graph: backward then yields the true gradient of a step function,
        # exactly zero, which the runner can observe and report (rather than an autograd error).
        return hard + 0 * prob
    if mode == "ste":
        return prob + (hard - prob).detach()
    choices = ", ".join(m.value for m in Binarize)
    raise ValueError(f"unknown loss.binarize {mode!r}; choose one of {choices}")


def clamped_log_probs(prob: Tensor, eps: float = EPS) -> LogProbs:
    """Log-probabilities of an activation without a closed with-logits form: clamp, then log.

    The clamp changes values only; its gradient is the identity, so a straight-through
    binarized p (exactly 0 or 1) still passes a gradient to the network.
    """
    p = prob + (prob.clamp(eps, 1 - eps) - prob).detach()
    return torch.log(p), torch.log1p(-p)


def _sum_dims(x: Tensor, per_image: bool) -> tuple[int, ...] | None:
    return tuple(range(1, x.dim())) if per_image else None


def soft_dice_score(
    prob: Tensor, target: Tensor, smooth: float = 0.0, eps: float = EPS, per_image: bool = False
) -> Tensor:
    """(2 sum(p y) + smooth) / max(sum(p) + sum(y) + smooth, eps), over the batch or per image."""
    dims = _sum_dims(prob, per_image)
    intersection = (prob * target).sum(dims) if dims else (prob * target).sum()
    cardinality = (prob + target).sum(dims) if dims else (prob + target).sum()
    return (2 * intersection + smooth) / (cardinality + smooth).clamp_min(eps)


def soft_tversky_score(
    prob: Tensor,
    target: Tensor,
    alpha: float,
    beta: float,
    smooth: float = 0.0,
    eps: float = EPS,
    per_image: bool = False,
) -> Tensor:
    """(TP + smooth) / max(TP + alpha FP + beta FN + smooth, eps) on soft counts."""
    dims = _sum_dims(prob, per_image)

    def total(x: Tensor) -> Tensor:
        return x.sum(dims) if dims else x.sum()

    tp = total(prob * target)
    fp = total(prob * (1 - target))
    fn = total((1 - prob) * target)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(eps)


def soft_boundary(prob: Tensor, width: int = 1) -> Tensor:
    """Differentiable boundary map of a soft mask (N, C, H, W): its morphological gradient,
    max-pool minus min-pool (min-pool = -max-pool(-x)) over a (2 width + 1)-pixel square window.

    ``width`` is the boundary's thickness in pixels on each side of the edge: a hard mask's
    map is 1 on the ``width`` pixels just outside and the ``width`` just inside its edge, 0
    elsewhere. The kernel is always odd, so the window is centred and the shape is kept for
    every width; padding takes the extremes over the pixels inside the image only, so the image
    border is no edge (an empty and a full mask both have an all-zero map).
    """
    if width < 1:
        raise ValueError(f"boundary width must be at least 1 pixel, got {width}")
    kernel = 2 * width + 1
    dilated = F.max_pool2d(prob, kernel, stride=1, padding=width)
    eroded = -F.max_pool2d(-prob, kernel, stride=1, padding=width)
    return dilated - eroded


class SegmentationLoss(nn.Module):
    """Base: binarize the head's probability as configured, then ``loss_from_prob``."""

    def __init__(self, binarize: str = Binarize.none, threshold: float = 0.5) -> None:
        super().__init__()
        self.binarize = binarize
        self.threshold = threshold

    def forward(self, head: Head, logits: Tensor, target: Tensor) -> Tensor:
        prob = binarize_probability(head.probability(logits), self.binarize, self.threshold)
        return self.loss_from_prob(prob, target)

    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError


class DiceLoss(SegmentationLoss):
    def __init__(
        self,
        smooth: float = 0.0,
        eps: float = EPS,
        per_image: bool = False,
        binarize: str = Binarize.none,
        threshold: float = 0.5,
    ) -> None:
        super().__init__(binarize, threshold)
        self.smooth, self.eps, self.per_image = smooth, eps, per_image

    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        return (1 - soft_dice_score(prob, target, self.smooth, self.eps, self.per_image)).mean()


class TverskyLoss(DiceLoss):
    """Dice's options plus the weights of false positives (alpha) and false negatives (beta)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, **dice_options: Any) -> None:
        super().__init__(**dice_options)
        self.alpha, self.beta = alpha, beta

    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        score = soft_tversky_score(
            prob, target, self.alpha, self.beta, self.smooth, self.eps, self.per_image
        )
        return (1 - score).mean()


class BoundaryLoss(DiceLoss):
    """Region Dice + ``weight`` x Dice between the predicted and the true boundary maps
    (``soft_boundary`` of the binarized probability and of the mask), Dice's options for both.

    An image without any boundary (empty or full truth and prediction) scores a boundary Dice
    of 0 with ``smooth`` = 0, as the region Dice does on an empty mask: a constant, no gradient.
    """

    def __init__(self, weight: float = 1.0, width: int = 1, **dice_options: Any) -> None:
        super().__init__(**dice_options)
        if width < 1:
            raise ValueError(f"loss.width must be at least 1 pixel, got {width}")
        self.weight, self.width = weight, width

    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        region = super().loss_from_prob(prob, target)
        edges = super().loss_from_prob(
            soft_boundary(prob, self.width), soft_boundary(target, self.width)
        )
        return region + self.weight * edges


class MSELoss(SegmentationLoss):
    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prob, target)


def bce_from_log_probs(log_p: Tensor, log_1mp: Tensor, target: Tensor) -> Tensor:
    return -(target * log_p + (1 - target) * log_1mp).mean()


class BCELoss(SegmentationLoss):
    """Binary cross-entropy. Without binarization it uses the head's log-probabilities: the
    with-logits closed forms for sigmoid, softsign, inv_sqrt and softmax2, clamped p otherwise."""

    def __init__(self, eps: float = EPS, binarize: str = Binarize.none, threshold: float = 0.5):
        super().__init__(binarize, threshold)
        self.eps = eps

    def forward(self, head: Head, logits: Tensor, target: Tensor) -> Tensor:
        closed_form = head.log_probs(logits) if self.binarize == "none" else None
        if closed_form is None:
            return super().forward(head, logits, target)
        return bce_from_log_probs(*closed_form, target)

    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        return bce_from_log_probs(*clamped_log_probs(prob, self.eps), target)


class CrossEntropyLoss(SegmentationLoss):
    """Two-class cross-entropy on the softmax2 head's logits (torch's fused log-softmax)."""

    def forward(self, head: Head, logits: Tensor, target: Tensor) -> Tensor:
        if self.binarize != "none":
            return super().forward(head, logits, target)
        return F.cross_entropy(logits, target[:, 0].long())

    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        return bce_from_log_probs(*clamped_log_probs(prob), target)
