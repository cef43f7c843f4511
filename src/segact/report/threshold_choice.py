"""How much of a best Dice is the threshold being tuned on the reported images: under
``eval.protocol=holdout`` a fold's threshold is chosen on an inner split and its Dice read off
the untouched fold (``best_dice``), while ``oracle_best_dice`` is what the fold's own best
threshold gives the same model, the number the ``paper`` protocol reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from segact.io import write_csv
from segact.report.sections import as_markdown
from segact.runs.schema import BEST_DICE, ORACLE_BEST_DICE

THRESHOLD_CHOICE_CSV = "threshold_choice.csv"


def threshold_choice_table(ok: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per row of the tables, over the holdout folds: the Dice at the inner split's threshold,
    at the fold's own best threshold, and their difference (mean, std, max); empty without
    holdout folds."""
    if ORACLE_BEST_DICE not in ok.columns or "protocol" not in ok.columns:
        return pd.DataFrame()
    holdout = ok[(ok["protocol"] == "holdout") & ok[ORACLE_BEST_DICE].notna()]
    if holdout.empty:
        return pd.DataFrame()
    holdout = holdout.assign(gain=holdout[ORACLE_BEST_DICE] - holdout[BEST_DICE])
    by = [k for k in dict.fromkeys(("dataset", *keys)) if k in holdout.columns]
    grouped = holdout.groupby(by, dropna=False, sort=True)
    table = grouped.agg(
        folds=("gain", "size"),
        **{metric: (metric, "mean") for metric in (BEST_DICE, ORACLE_BEST_DICE)},
        difference=("gain", "mean"),
        difference_std=("gain", "std"),
        difference_max=("gain", "max"),
    )
    return table.reset_index()


def threshold_choice_sections(ok: pd.DataFrame, keys: Sequence[str], out: Path) -> list[str]:
    table = threshold_choice_table(ok, keys)
    if table.empty:
        return []
    write_csv(table, out / THRESHOLD_CHOICE_CSV)
    gain = ok.loc[ok["protocol"] == "holdout", ORACLE_BEST_DICE] - ok[BEST_DICE]
    gain = gain.dropna()
    return [
        "## The threshold chosen on an inner split (eval.protocol=holdout)",
        "",
        "best_dice: Dice on the untouched validation fold at the threshold chosen on the inner "
        "split; oracle_best_dice: at the fold's own best threshold (what the paper protocol "
        f"reports). Over {len(gain)} folds, tuning the threshold on the reported images adds "
        f"{gain.mean():.4f} Dice on average (median {gain.median():.4f}, {gain.min():.4f} to "
        f"{gain.max():.4f}); the choice of epoch adds its own. Means over folds "
        f"({THRESHOLD_CHOICE_CSV}):",
        "",
        as_markdown(table),
        "",
    ]
