"""The options of each loss (``loss=<name>``), registered once; torch-free, so that the report
(which names losses in its tables) starts without torch. The loss classes: ``segact.nn.losses``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from omegaconf import MISSING

from segact.choices import Choice, Registry


class Binarize(Choice):
    """``loss.binarize``: whether the probability is thresholded before the loss."""

    none = "none"
    hard = "hard"  # p >= t: the gradient is exactly zero
    ste = "ste"  # straight-through: forward hard, backward identity


LOSSES = Registry("loss")
"""name -> the options' schema (a LossConfig subclass): every registered loss."""


def register(schema: type[LossConfig]) -> type[LossConfig]:
    """Class decorator: register a loss by its options' schema, under its ``name`` default."""
    LOSSES.register(str(schema.name), schema)
    return schema


@dataclass
class LossConfig:
    label: ClassVar[str] = ""  # how figures and headings name it ("Dice": "Dice loss"); "": name

    _target_: str = MISSING
    name: str = MISSING
    binarize: Binarize = Binarize.none  # threshold the probability before the loss
    threshold: float = 0.5


@register
@dataclass
class DiceLossConfig(LossConfig):
    _target_: str = "segact.nn.losses.DiceLoss"
    name: str = "dice"
    label: ClassVar[str] = "Dice"
    smooth: float = 0.0
    eps: float = 1e-7
    per_image: bool = False  # false: one Dice over the whole batch, like the paper


@register
@dataclass
class TverskyLossConfig(DiceLossConfig):
    _target_: str = "segact.nn.losses.TverskyLoss"
    name: str = "tversky"
    label: ClassVar[str] = "Tversky"
    alpha: float = 0.3  # weight of false positives
    beta: float = 0.7  # weight of false negatives


@register
@dataclass
class BCELossConfig(LossConfig):
    _target_: str = "segact.nn.losses.BCELoss"
    name: str = "bce"
    label: ClassVar[str] = "BCE"
    eps: float = 1e-7


@register
@dataclass
class BoundaryLossConfig(DiceLossConfig):
    """Region Dice + weight x Dice of the boundary maps (segact.nn.losses.soft_boundary)."""

    _target_: str = "segact.nn.losses.BoundaryLoss"
    name: str = "boundary"
    label: ClassVar[str] = "boundary"
    weight: float = 1.0  # weight of the boundary Dice term (0: plain Dice)
    width: int = 1  # boundary thickness in pixels on each side of the edge (kernel 2 width + 1)


@register
@dataclass
class MSELossConfig(LossConfig):
    """Mean squared error between the probability and the mask."""

    _target_: str = "segact.nn.losses.MSELoss"
    name: str = "mse"
    label: ClassVar[str] = "MSE"


@register
@dataclass
class CrossEntropyLossConfig(LossConfig):
    """Two-class cross-entropy; needs head=softmax2."""

    _target_: str = "segact.nn.losses.CrossEntropyLoss"
    name: str = "ce"
    label: ClassVar[str] = "CE"
