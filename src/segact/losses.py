"""Losses on the head's foreground probability, with optional binarization before the loss.

Every loss takes the head and its raw logits, so that BCE can use stable with-logits forms, and
the probability-based losses see exactly the activation under study (nothing re-applies one).
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from segact.activations import EPS
from segact.heads import Head, clamped_log_probs

Binarize = Literal["none", "hard", "ste"]
BINARIZE_MODES: tuple[str, ...] = ("none", "hard", "ste")


def binarize(prob: Tensor, mode: str, threshold: float = 0.5) -> Tensor:
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
    raise ValueError(f"unknown loss.binarize {mode!r}; choose one of {', '.join(BINARIZE_MODES)}")


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


class SegmentationLoss(nn.Module):
    """Base: binarize the head's probability as configured, then ``loss_from_prob``."""

    def __init__(self, binarize: Binarize = "none", threshold: float = 0.5) -> None:
        super().__init__()
        if binarize not in BINARIZE_MODES:
            raise ValueError(
                f"unknown loss.binarize {binarize!r}; choose one of {', '.join(BINARIZE_MODES)}"
            )
        self.binarize = binarize
        self.threshold = threshold

    def forward(self, head: Head, logits: Tensor, target: Tensor) -> Tensor:
        prob = binarize(head.probability(logits), self.binarize, self.threshold)
        return self.loss_from_prob(prob, target)

    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError


class DiceLoss(SegmentationLoss):
    def __init__(
        self,
        smooth: float = 0.0,
        eps: float = EPS,
        per_image: bool = False,
        binarize: Binarize = "none",
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


class MSELoss(SegmentationLoss):
    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prob, target)


def bce_from_log_probs(log_p: Tensor, log_1mp: Tensor, target: Tensor) -> Tensor:
    return -(target * log_p + (1 - target) * log_1mp).mean()


class BCELoss(SegmentationLoss):
    """Binary cross-entropy. Without binarization it uses the head's log-probabilities: the
    with-logits closed forms for sigmoid, softsign, inv_sqrt and softmax2, clamped p otherwise."""

    def __init__(self, eps: float = EPS, binarize: Binarize = "none", threshold: float = 0.5):
        super().__init__(binarize, threshold)
        self.eps = eps

    def forward(self, head: Head, logits: Tensor, target: Tensor) -> Tensor:
        if self.binarize == "none":
            return bce_from_log_probs(*head.log_probs(logits), target)
        return super().forward(head, logits, target)

    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        return bce_from_log_probs(*clamped_log_probs(prob, self.eps), target)


class CrossEntropyLoss(SegmentationLoss):
    """Two-class cross-entropy on the softmax2 head's logits (torch's fused log-softmax)."""

    def forward(self, head: Head, logits: Tensor, target: Tensor) -> Tensor:
        if head.out_channels != 2:
            raise ValueError("loss=ce needs head=softmax2 (two output channels)")
        if self.binarize != "none":
            return super().forward(head, logits, target)
        return F.cross_entropy(logits, target[:, 0].long())

    def loss_from_prob(self, prob: Tensor, target: Tensor) -> Tensor:
        return bce_from_log_probs(*clamped_log_probs(prob), target)
