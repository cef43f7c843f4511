"""Which images a fold trains and selects on, and which epoch and threshold it reports.

``paper``: select the epoch on the validation fold (by ``eval.select_metric``) and report that
epoch's sweep of the same fold, best threshold included (optimistic: both are chosen on the
reported data, as in the paper). ``holdout``: epoch and threshold chosen on an inner split of
the training cases; Dice read off the untouched validation fold at that threshold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from segact.choices import Choice
from segact.data.splits import Fold, inner_split
from segact.evaluation.sweep import SweepResult
from segact.runs import schema

Evaluate = Callable[[np.ndarray], SweepResult]
"""Sweep of the current model over the given image indices."""


class ProtocolName(Choice):
    """``eval.protocol``: where a fold's epoch and threshold are chosen (see the module)."""

    paper = "paper"  # on the validation fold, as the paper
    holdout = "holdout"  # on an inner split; Dice read off the untouched fold


@dataclass(frozen=True)
class Reported:
    """What a fold reports: its numbers and the thresholds table they come from."""

    metrics: dict[str, Any]
    sweep: SweepResult


class ReportProtocol(ABC):
    @abstractmethod
    def split(self, cases: np.ndarray, fold: Fold, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(images to train on, images to select the epoch on)."""

    @abstractmethod
    def report(self, fold: Fold, best: SweepResult, evaluate: Evaluate) -> Reported:
        """The fold's reported numbers; the best epoch's weights are loaded when this runs."""


class PaperProtocol(ReportProtocol):
    def split(self, cases: np.ndarray, fold: Fold, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return fold.train, fold.val

    def report(self, fold: Fold, best: SweepResult, evaluate: Evaluate) -> Reported:
        metrics = {**best.metrics, schema.ORACLE_BEST_DICE: best.metrics[schema.BEST_DICE]}
        return Reported(metrics, best)


@dataclass(frozen=True)
class HoldoutProtocol(ReportProtocol):
    inner_val_fraction: float = 0.2

    def split(self, cases: np.ndarray, fold: Fold, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return inner_split(cases, fold.train, self.inner_val_fraction, seed)

    def report(self, fold: Fold, best: SweepResult, evaluate: Evaluate) -> Reported:
        reported = evaluate(fold.val)
        chosen = best.metrics[schema.BEST_THRESHOLD]
        table = reported.table
        at_chosen = table.loc[np.isclose(table["threshold"], chosen)].iloc[0]
        metrics = {
            **reported.metrics,
            schema.BEST_THRESHOLD: chosen,
            schema.BEST_DICE: float(at_chosen["dice"]),
            schema.DICE_PER_IMAGE: float(at_chosen[schema.DICE_PER_IMAGE]),
            schema.ORACLE_BEST_DICE: reported.metrics[schema.BEST_DICE],
        }
        return Reported(metrics, reported)


PROTOCOLS: dict[ProtocolName, Callable[[float], ReportProtocol]] = {
    ProtocolName.paper: lambda inner_val_fraction: PaperProtocol(),
    ProtocolName.holdout: HoldoutProtocol,
}
"""``eval.protocol`` -> the protocol, given ``eval.inner_val_fraction``."""


def build_protocol(name: str, inner_val_fraction: float) -> ReportProtocol:
    return PROTOCOLS[ProtocolName(name)](inner_val_fraction)
