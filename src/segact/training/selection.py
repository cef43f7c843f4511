"""``eval.select_metric``: the sweep metric that picks a fold's epoch, and the score that early
stopping and the LR schedule follow."""

from __future__ import annotations

from segact.choices import Choice
from segact.evaluation.sweep import SweepResult
from segact.runs import schema


class SelectMetric(Choice):
    """``eval.select_metric``: the sweep metric that picks a fold's epoch, and that early
    stopping and the LR schedule follow."""

    # the Dice averaged over the threshold grid (the paper's "total dice")
    threshold_averaged_dice = schema.THRESHOLD_AVERAGED_DICE
    mean_dice = schema.THRESHOLD_AVERAGED_DICE  # its former name (legacy.RENAMED_METRICS)
    best_dice = schema.BEST_DICE
    dice_at_05 = schema.DICE_AT_05
    nll = schema.NLL


def selection_score(sweep: SweepResult, metric: str) -> float:
    """The epoch's score for early stopping and the LR schedule: higher is better."""
    value = sweep.metrics[metric]
    return -value if schema.lower_is_better(metric) else value
