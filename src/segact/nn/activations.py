"""Output activations: logits -> foreground probability in (0, 1).

Each activation is registered by name, once (``register``; the table at the bottom, or a
plugin module, docs/extending.md): the config option ``activation=<name>``, the checks, the
report's curves and the result files' ``activation`` column all read ``REGISTRY``. Some also
have a closed-form, numerically stable ``log_probs`` (log p, log(1 - p)) computed from the
logits, which the BCE loss uses instead of taking the log of a probability that has rounded to
0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from segact.choices import Registry

EPS = 1e-7
"""Distance the bounded activations keep from 0 and 1 (Nieradzik et al. 2021)."""

LogProbs = tuple[Tensor, Tensor]
MIN_SPREAD = 1e-6
"""Smallest max - min of the logits that the linear activation divides by."""


def sigmoid(x: Tensor) -> Tensor:
    return torch.sigmoid(x)


def arctan(x: Tensor, eps: float = EPS) -> Tensor:
    return eps + (1 - 2 * eps) * (0.5 + torch.atan(x) / math.pi)


def normal_cdf(x: Tensor, eps: float = EPS) -> Tensor:
    return (0.5 - eps) * torch.erf(x / math.sqrt(2.0)) + 0.5


def softsign(x: Tensor, eps: float = EPS) -> Tensor:
    return (0.5 - eps) * F.softsign(x) + 0.5


def inv_sqrt(x: Tensor, eps: float = EPS) -> Tensor:
    # hypot instead of sqrt(1 + x^2): no overflow to inf for |x| > 1e19 in float32.
    return (0.5 - eps) * (x / torch.hypot(torch.ones_like(x), x)) + 0.5


def hardtanh(x: Tensor, eps: float = EPS) -> Tensor:
    return torch.clamp(x, eps, 1 - eps)


def linear(x: Tensor, eps: float = EPS) -> Tensor:
    """Min-max scaling of each image's logits to [eps, 1 - eps] (per sample, so a prediction
    never depends on what else is in the batch). A spread below MIN_SPREAD counts as MIN_SPREAD,
    which keeps the gradient finite for a constant output."""
    flat = x.flatten(1)
    low = flat.min(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
    high = flat.max(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
    scaled = (x - low) / (high - low).clamp_min(MIN_SPREAD)
    return eps + (1 - 2 * eps) * scaled


def sigmoid_log_probs(x: Tensor) -> LogProbs:
    return -F.softplus(-x), -F.softplus(x)


def _symmetric_log_probs(large: Tensor, small: Tensor, x: Tensor) -> LogProbs:
    """For activations with f(-x) = 1 - f(x): ``large`` is log f(|x|), ``small`` log(1 - f(|x|))."""
    positive = x >= 0
    return torch.where(positive, large, small), torch.where(positive, small, large)


def softsign_log_probs(x: Tensor, eps: float = EPS) -> LogProbs:
    # For a = |x|: f(a) = (0.5 + (1 - eps) a) / (1 + a) and 1 - f(a) = (0.5 + eps a) / (1 + a),
    # which avoids the cancellation in 1 - f(a) when a is large.
    a = torch.where(x >= 0, x, -x)  # not x.abs(): its gradient at 0 is 0, not +-1
    log_denominator = torch.log1p(a)
    large = torch.log(0.5 + (1 - eps) * a) - log_denominator
    small = torch.log(0.5 + eps * a) - log_denominator
    return _symmetric_log_probs(large, small, x)


def inv_sqrt_log_probs(x: Tensor, eps: float = EPS) -> LogProbs:
    # For a = |x| and s = sqrt(1 + a^2): 1 - f(a) = (0.5 / (s + a) + eps a) / s,
    # using s - a = 1 / (s + a).
    a = torch.where(x >= 0, x, -x)  # not x.abs(): its gradient at 0 is 0, not +-1
    s = torch.hypot(torch.ones_like(a), a)
    large = torch.log(0.5 + (0.5 - eps) * (a / s))
    small = torch.log(0.5 / (s + a) + eps * a) - torch.log(s)
    return _symmetric_log_probs(large, small, x)


@dataclass(frozen=True)
class Activation:
    """An output activation and, where one exists, its stable with-logits log-probabilities."""

    name: str
    fn: Callable[[Tensor], Tensor]
    log_probs: Callable[[Tensor], LogProbs] | None = None

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)


REGISTRY = Registry("activation", ", or give your own callable through activation._target_")
"""name -> Activation: every registered output activation."""


def register(activation: Activation) -> Activation:
    """Register ``activation`` under its name (``activation=<name>`` then composes)."""
    return REGISTRY.register(activation.name, activation)


for _builtin in (
    Activation("sigmoid", sigmoid, sigmoid_log_probs),
    Activation("arctan", arctan),
    Activation("normal_cdf", normal_cdf),
    Activation("softsign", softsign, softsign_log_probs),
    Activation("inv_sqrt", inv_sqrt, inv_sqrt_log_probs),
    Activation("hardtanh", hardtanh),
    Activation("linear", linear),
):
    register(_builtin)

SOFTMAX = "softmax"
"""The softmax2 head's 'activation': p = softmax(z)[:, 1]; not a 1-channel activation."""


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> Activation:
    """The registered activation ``name`` (callable: logits -> probabilities)."""
    return REGISTRY.get_named(name)


def custom(name: str, fn: Callable[[Tensor], Tensor]) -> Activation:
    """Wrap a user's callable (e.g. from ``activation._target_``) as an Activation."""
    return Activation(name, fn)
