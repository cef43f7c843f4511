"""Learned or not: a fold's Dice next to the Dice of the trivial masks on the same validation
fold (all foreground, all background), and the cells (dataset x configuration) whose median
best Dice does not close ``min_gain`` of the gap between the trivial mask and 1.

Such a cell did not learn the task (DRIVE + BCE stopping at epoch 9 with Dice 0.21; ISBI 2012,
where predicting every pixel foreground already scores 0.876): its numbers say nothing about the
activation, so it is listed and left out of the verdicts and pooled estimates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from segact.evaluation.aggregation import all_foreground_dice
from segact.runs import schema

DEFAULT_MIN_GAIN = 0.10
LEARNED_COLUMNS = ("n", "median_dice", "median_trivial_dice", "median_gain", "not_learned")


def trivial_dice(thresholds: pd.DataFrame) -> pd.DataFrame:
    """Per run x fold: the better of the all-foreground mask's Dice 2P / (2P + N) and the
    all-background mask's (1 on a fold without foreground, else 0), from the counts of any
    threshold (they sum to the fold's pixels at every threshold)."""
    first = thresholds.drop_duplicates(["run_path", "fold"])
    positives = (first["tp"] + first["fn"]).to_numpy(dtype=float)
    negatives = (first["fp"] + first["tn"]).to_numpy(dtype=float)
    foreground = [all_foreground_dice(p, n) for p, n in zip(positives, negatives, strict=True)]
    background = np.where(positives == 0, 1.0, 0.0)
    trivial = np.maximum(foreground, background)
    return first[["run_path", "fold"]].assign(trivial_dice=trivial).reset_index(drop=True)


def gain(dice: pd.Series, trivial: pd.Series) -> pd.Series:
    """The share of the gap between the trivial mask and a perfect 1 that ``dice`` closes."""
    gap = (1 - trivial).where(1 - trivial > 0)
    return (dice - trivial) / gap


def learned_table(
    folds: pd.DataFrame,
    thresholds: pd.DataFrame,
    keys: Sequence[str],
    metric: str = schema.BEST_DICE,
    min_gain: float = DEFAULT_MIN_GAIN,
) -> pd.DataFrame:
    """Per dataset x ``keys``: folds, median Dice (``metric``), median trivial Dice, median gain
    over the trivial mask, and ``not_learned`` (median gain below ``min_gain``). Empty without
    thresholds (a report read from a results CSV)."""
    if thresholds.empty or "run_path" not in folds.columns:
        return pd.DataFrame(columns=["dataset", *keys, *LEARNED_COLUMNS])
    rows = folds.merge(trivial_dice(thresholds), on=["run_path", "fold"], how="left")
    rows = rows.assign(
        dice=pd.to_numeric(rows[metric], errors="coerce"),
        gain=lambda r: gain(r["dice"], r["trivial_dice"]),
    )
    by = ["dataset", *dict.fromkeys(k for k in keys if k != "dataset")]
    table = rows.groupby(by, sort=True, dropna=False).agg(
        n=("dice", "size"),
        median_dice=("dice", "median"),
        median_trivial_dice=("trivial_dice", "median"),
        median_gain=("gain", "median"),
    )
    table["not_learned"] = table["median_gain"] < min_gain
    return table.reset_index()


def learned_sections(table: pd.DataFrame, min_gain: float) -> list[str]:
    """The section's words and table (the caller writes learned.csv)."""
    if table.empty:
        return []
    unlearned = table[table["not_learned"]]
    names = "; ".join(
        " ".join(map(str, row)) for row in unlearned.drop(columns=list(LEARNED_COLUMNS)).values
    )
    summary = (
        f"{len(unlearned)} of {len(table)} cell(s) did not learn ({names}): left out of the "
        "verdicts and pooled estimates (meta_analysis.csv scope `learned`; scope `all` keeps "
        "them)."
        if len(unlearned)
        else f"Every one of the {len(table)} cells learned."
    )
    return [
        "## Learned or not",
        "",
        "Per fold, the Dice of the trivial masks on the same validation fold (all foreground, "
        "all background; the better of the two); gain = (Dice - trivial) / (1 - trivial), the "
        "share of the gap to a perfect mask that the network closes. A cell (dataset x "
        f"configuration) whose median gain is below {min_gain:g} (`--min-gain`) is "
        "`not_learned`.",
        "",
        summary,
        "",
        table.to_markdown(index=False, floatfmt=".4g"),
        "",
    ]
