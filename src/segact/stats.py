"""Paired comparison of two activations: the same dataset, loss, seed and fold, trained once with
each, gives one paired difference; over all such pairs a mean difference with a bootstrap 95% CI
and a Wilcoxon signed-rank p-value (scipy.stats)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

PAIR_METRICS: tuple[str, ...] = ("best_dice", "mean_dice", "nll")
CONFIDENCE = 0.95
N_RESAMPLES = 9999


def bootstrap_ci(
    differences: np.ndarray, seed: int = 0, n_resamples: int = N_RESAMPLES
) -> tuple[float, float]:
    """BCa bootstrap CI of the mean difference; NaN where it is undefined (n < 2, all equal)."""
    differences = np.asarray(differences, dtype=float)
    if len(differences) < 2 or np.ptp(differences) == 0:
        return (np.nan, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (differences,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=n_resamples,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; NaN when every difference is zero."""
    differences = np.asarray(differences, dtype=float)
    if len(differences) == 0 or np.all(differences == 0):
        return np.nan
    return float(stats.wilcoxon(differences).pvalue)


def paired_differences(
    folds: pd.DataFrame,
    a: str,
    b: str,
    group_keys: Sequence[str],
    metrics: Sequence[str] = PAIR_METRICS,
) -> pd.DataFrame:
    """One row per group x seed x fold x metric where both activations have a result:
    ``value_a``, ``value_b`` and ``difference`` = a - b."""
    index = [*group_keys, "seed", "fold"]
    chosen = folds[folds["activation"].isin([a, b])]
    metrics = [m for m in metrics if m in chosen.columns]
    long = chosen.melt(id_vars=[*index, "activation"], value_vars=metrics, var_name="metric")
    wide = long.pivot_table(
        index=[*index, "metric"], columns="activation", values="value", aggfunc="first"
    )
    if a not in wide.columns or b not in wide.columns:
        return pd.DataFrame(columns=[*index, "metric", "value_a", "value_b", "difference"])
    wide = wide[[a, b]].dropna().rename(columns={a: "value_a", b: "value_b"})
    wide["difference"] = wide["value_a"] - wide["value_b"]
    out = wide.reset_index()
    out.columns.name = None
    out.insert(0, "activation_a", a)
    out.insert(1, "activation_b", b)
    return out


def summarize_pairs(differences: pd.DataFrame, group_keys: Sequence[str]) -> pd.DataFrame:
    """Per group and metric: n pairs, means of a and b, mean difference, its CI, Wilcoxon p."""
    by = ["activation_a", "activation_b", *group_keys, "metric"]

    def summary(group: pd.DataFrame) -> pd.Series:
        d = group["difference"].to_numpy()
        low, high = bootstrap_ci(d)
        return pd.Series(
            {
                "n": len(d),
                "mean_a": group["value_a"].mean(),
                "mean_b": group["value_b"].mean(),
                "mean_difference": d.mean(),
                "ci_low": low,
                "ci_high": high,
                "wilcoxon_p": wilcoxon_p(d),
            }
        )

    if differences.empty:
        return pd.DataFrame(columns=[*by, "n", "mean_difference", "ci_low", "ci_high"])
    rows = [
        {**dict(zip(by, key, strict=True)), **summary(group)}
        for key, group in differences.groupby(by, sort=True)
    ]
    table = pd.DataFrame(rows)
    table["n"] = table["n"].astype(int)
    return table
