"""A fold's numbers as the paper aggregates them, and whether a fold's prediction is trivial.

``paper_aggregates`` follows ``generate_table.py`` of github.com/lars76/segmentation_activations:
each metric takes its own best epoch (best Dice: max over thresholds and over all epochs; total
Dice: max over epochs of the mean Dice over thresholds; NLL: min over epochs), which is more
optimistic than reporting one selected epoch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segact.runs import schema

EPOCH_COLUMNS: tuple[str, ...] = (
    schema.VAL_BEST_DICE, schema.VAL_THRESHOLD_AVERAGED_DICE, schema.VAL_NLL,
)  # fmt: skip
"""Per-epoch validation columns of epochs.csv that the paper's aggregation reads."""

TRIVIAL_FOREGROUND_FRACTION = 0.99
"""A prediction with at least this fraction of pixels foreground is an all-foreground mask."""
TRIVIAL_BACKGROUND_FRACTION = 0.01
"""A prediction with at most this fraction of pixels foreground is an all-background mask."""
EDGE_DICE_TOLERANCE = 0.005
"""Best Dice at the grid's first/last threshold within this of all-foreground Dice: trivial."""
THRESHOLD_TOLERANCE = 1e-9
"""How close a table's threshold must be to the reported one to be that row."""


def _paper_max(values: pd.Series) -> float:
    """generate_table.py's best Dice: ``best = 0; if best < dice: best = dice`` (NaN never wins)."""
    best = 0.0
    for value in values.to_numpy(dtype=np.float64):
        if best < value:
            best = float(value)
    return best


def paper_aggregates(epochs: pd.DataFrame) -> dict[str, float]:
    """One fold's ``paper_best_dice``, ``paper_threshold_averaged_dice``, ``paper_nll`` from its
    epoch rows.

    ``epochs``: the fold's rows of epochs.csv (columns ``val_best_dice``,
    ``val_threshold_averaged_dice``, ``val_nll``), every epoch trained. As generate_table.py:
    pandas' max/min skip NaN (an all-NaN column gives NaN), except best Dice, which starts at 0
    and so is 0 when no epoch has one. ``val_nll`` is the mean NLL over all pixels of p clipped
    to [eps, 1 - eps], the paper's ``nll`` column.
    """
    missing = [c for c in EPOCH_COLUMNS if c not in epochs.columns]
    if missing:
        raise ValueError(f"epochs lack the column(s) {', '.join(missing)}")
    if "fold" in epochs.columns and epochs["fold"].nunique() > 1:
        raise ValueError("paper_aggregates takes the epochs of one fold")
    if epochs.empty:
        raise ValueError("no epochs to aggregate")
    return {
        # max over thresholds of max over epochs == max over epochs of the per-epoch best
        schema.PAPER_BEST_DICE: _paper_max(epochs[schema.VAL_BEST_DICE]),
        schema.PAPER_THRESHOLD_AVERAGED_DICE: float(
            epochs[schema.VAL_THRESHOLD_AVERAGED_DICE].max()
        ),
        schema.PAPER_NLL: float(epochs[schema.VAL_NLL].min()),
    }


def all_foreground_dice(positives: float, negatives: float) -> float:
    """Dice of predicting every pixel foreground: 2P / (2P + N); 1 for an empty fold."""
    denominator = 2 * positives + negatives
    return 2 * positives / denominator if denominator > 0 else 1.0


def _row_at(table: pd.DataFrame, threshold: float) -> pd.Series:
    at = np.flatnonzero(np.abs(table["threshold"].to_numpy() - threshold) <= THRESHOLD_TOLERANCE)
    if at.size == 0:
        raise ValueError(f"threshold {threshold} is not in the table's grid")
    return table.iloc[int(at[0])]


def is_degenerate(table: pd.DataFrame, threshold: float) -> bool:
    """Whether a fold's reported prediction is a trivial mask.

    ``table``: the fold's thresholds table (``threshold, tp, fp, fn, tn, dice``, one row per
    grid point); ``threshold``: the reported one, a grid point. Trivial: at the reported
    threshold the predicted foreground is >= 99 % or <= 1 % of the pixels, or the best
    threshold is the grid's first or last point with a Dice that all-foreground scores too.
    """
    if table.empty:
        raise ValueError("empty thresholds table")
    table = table.sort_values("threshold", kind="stable")
    row = _row_at(table, threshold)
    n_pixels = row["tp"] + row["fp"] + row["fn"] + row["tn"]
    foreground = (row["tp"] + row["fp"]) / n_pixels if n_pixels > 0 else 0.0
    if foreground >= TRIVIAL_FOREGROUND_FRACTION or foreground <= TRIVIAL_BACKGROUND_FRACTION:
        return True
    dice = table["dice"].to_numpy(dtype=np.float64)
    best = int(np.argmax(dice))
    if best not in (0, len(table) - 1):
        return False
    trivial = all_foreground_dice(row["tp"] + row["fn"], row["fp"] + row["tn"])
    return bool(abs(dice[best] - trivial) <= EDGE_DICE_TOLERANCE)
