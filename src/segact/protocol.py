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

from segact.data.splits import Fold, inner_split
from segact.metrics import SweepResult

Evaluate = Callable[[np.ndarray], SweepResult]
"""Sweep of the current model over the given image indices."""


@dataclass(frozen=True)
class Reported:
    """What a fold reports: the summary numbers and the thresholds table they come from."""

    summary: dict[str, Any]
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
        summary = {**best.summary, "oracle_best_dice": best.summary["best_dice"]}
        return Reported(summary, best)


@dataclass(frozen=True)
class HoldoutProtocol(ReportProtocol):
    inner_val_fraction: float = 0.2

    def split(self, cases: np.ndarray, fold: Fold, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return inner_split(cases, fold.train, self.inner_val_fraction, seed)

    def report(self, fold: Fold, best: SweepResult, evaluate: Evaluate) -> Reported:
        reported = evaluate(fold.val)
        chosen = best.summary["best_threshold"]
        table = reported.table
        at_chosen = table.loc[np.isclose(table["threshold"], chosen)].iloc[0]
        summary = {
            **reported.summary,
            "best_threshold": chosen,
            "best_dice": float(at_chosen["dice"]),
            "dice_per_image": float(at_chosen["dice_per_image"]),
            "oracle_best_dice": reported.summary["best_dice"],
        }
        return Reported(summary, reported)


def build_protocol(name: str, inner_val_fraction: float) -> ReportProtocol:
    protocols: dict[str, Callable[[], ReportProtocol]] = {
        "paper": PaperProtocol,
        "holdout": lambda: HoldoutProtocol(inner_val_fraction),
    }
    return protocols[name]()
