"""Output heads: the model's raw output channels -> foreground probability.

``sigmoid1``: 1 channel of logits z, p = f(z) for the chosen activation f.
``softmax2``: 2 channels, p = softmax(z)[:, 1] = sigmoid(z1 - z0); argmax == (p > 0.5).

Each head is registered once (``HEADS``, at the bottom): the config option ``head=<name>``, its
check and the result files' ``head`` column read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor

from segact.choices import Choice, Registry
from segact.nn import activations
from segact.nn.activations import Activation, LogProbs


class HeadName(Choice):
    """``head.name``: how the model's output channels become a foreground probability (a closed
    choice, checked while Hydra composes: a new head adds its member here and its ``HEADS``
    entry below)."""

    sigmoid1 = "sigmoid1"
    softmax2 = "softmax2"


class Head(Protocol):
    name: str
    out_channels: int

    def probability(self, logits: Tensor) -> Tensor:
        """Foreground probability, shape (N, 1, H, W)."""

    def log_probs(self, logits: Tensor) -> LogProbs | None:
        """(log p, log(1 - p)), shape (N, 1, H, W) each, from a stable closed form; None where
        the activation has none (the loss then clamps p before the log)."""

    def mask(self, logits: Tensor) -> Tensor:
        """The binary mask the head predicts at its natural decision point (p >= 0.5)."""


@dataclass(frozen=True)
class Sigmoid1:
    activation: Activation
    name: str = HeadName.sigmoid1.value
    out_channels: int = 1

    def probability(self, logits: Tensor) -> Tensor:
        return self.activation(logits)

    def log_probs(self, logits: Tensor) -> LogProbs | None:
        if self.activation.log_probs is None:
            return None
        return self.activation.log_probs(logits)

    def mask(self, logits: Tensor) -> Tensor:
        return self.probability(logits) >= 0.5


@dataclass(frozen=True)
class Softmax2:
    name: str = HeadName.softmax2.value
    out_channels: int = 2

    def probability(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=1)[:, 1:2]

    def log_probs(self, logits: Tensor) -> LogProbs:
        log_p = F.log_softmax(logits, dim=1)
        return log_p[:, 1:2], log_p[:, 0:1]

    def mask(self, logits: Tensor) -> Tensor:
        # argmax over the two channels; ties (p == 0.5) go to foreground, like p >= 0.5.
        return logits[:, 1:2] >= logits[:, 0:1]


def argmax_counts(logits: Tensor) -> Tensor:
    """For 2-channel logits: [pixels, pixels where argmax != (p >= 0.5), exact ties z0 == z1].

    torch.argmax gives ties to channel 0 (background) while p = 0.5 >= 0.5 is foreground, so a
    tie is the one place the two rules may differ; softmax rounding can add near-ties.
    """
    by_argmax = logits.argmax(dim=1, keepdim=True) == 1
    by_probability = torch.softmax(logits, dim=1)[:, 1:2] >= 0.5
    ties = logits[:, 1:2] == logits[:, 0:1]
    counts = [by_argmax.numel(), (by_argmax != by_probability).sum(), ties.sum()]
    return torch.stack([torch.as_tensor(c, device=logits.device) for c in counts])


def build_activation(cfg: Mapping[str, Any]) -> Activation:
    """An activation from its config: a registered ``name``, or any callable via ``_target_``."""
    if cfg.get("_target_") is None:
        return activations.get(cfg["name"])
    fn = instantiate({k: v for k, v in cfg.items() if k != "name"})
    if not callable(fn):
        raise TypeError(
            f"activation._target_={cfg['_target_']} gave a {type(fn).__name__}, not a callable "
            "(set activation._partial_=true for a plain function)"
        )
    return activations.custom(cfg["name"], fn)


HEADS = Registry("head")
"""name -> a builder of the head from the activation's config (only sigmoid1 uses it)."""
HEADS.register(HeadName.sigmoid1.value, lambda activation: Sigmoid1(build_activation(activation)))
HEADS.register(HeadName.softmax2.value, lambda activation: Softmax2())  # takes no activation


def names() -> list[str]:
    return HEADS.names()


def build_head(head_cfg: Mapping[str, Any], activation_cfg: Mapping[str, Any]) -> Head:
    """The head named by ``head.name``; only sigmoid1 takes an output activation."""
    return HEADS.get_named(str(head_cfg["name"]))(activation_cfg)
