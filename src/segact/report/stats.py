"""Paired comparison of two activations, per dataset.

Two runs equal in every result-changing setting but the activation (dataset, loss, head, ...,
any differing setting such as ``trainer.lr``, and the seed and fold) give one paired difference
a - b. With several seeds the pairs multiply (3 seeds x 5 folds = 15 pairs); pairs of one fold
share its data, so they are not independent draws: read the p-values with that in mind.

Over a row's pairs: the mean difference with a paired t-interval and the paired t-test's p (one
model, so the interval excludes 0 exactly when p < 0.05), the Wilcoxon signed-rank p as a second
opinion, both Holm-adjusted over the datasets of one claim (one pair of activations, loss and
metric), and the smallest p the Wilcoxon test can reach with the n at hand. Equivalence (TOST)
and the smallest effect the pairs detect at 80 % power come from statsmodels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from segact.errors import ReportError
from segact.report.tables import numeric

PAIR_METRICS: tuple[str, ...] = ("best_dice", "threshold_averaged_dice", "nll")
PAIR_METRICS_BY_AGGREGATION: dict[str, tuple[str, ...]] = {
    "selected": PAIR_METRICS,
    "paper": tuple(f"paper_{m}" for m in PAIR_METRICS),
}
"""What is paired under each ``segact-report --aggregate``: the metrics its tables show."""
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.8
FAMILY: tuple[str, ...] = ("activation_a", "activation_b", "loss", "metric")
"""One claim: the Holm adjustment runs over its datasets."""
SUMMARY_COLUMNS: tuple[str, ...] = (
    "n",
    "mean_a",
    "mean_b",
    "mean_difference",
    "sd_difference",
    "ci_low",
    "ci_high",
    "ci_method",
    "t_p",
    "t_p_holm",
    "wilcoxon_p",
    "wilcoxon_p_holm",
    "min_p_reachable",
)


def _undefined(differences: np.ndarray) -> bool:
    """No interval for fewer than 2 pairs or all-equal differences (no spread)."""
    return len(differences) < 2 or np.ptp(differences) == 0


def t_interval(differences: np.ndarray) -> tuple[float, float]:
    """Paired Student-t CI of the mean difference; NaN where it is undefined."""
    differences = np.asarray(differences, dtype=float)
    if _undefined(differences):
        return (np.nan, np.nan)
    low, high = stats.t.interval(
        CONFIDENCE,
        df=len(differences) - 1,
        loc=differences.mean(),
        scale=stats.sem(differences),
    )
    return (float(low), float(high))


def t_test_p(differences: np.ndarray) -> float:
    """Two-sided paired t-test p (the test whose interval ``t_interval`` is); NaN without spread."""
    differences = np.asarray(differences, dtype=float)
    if _undefined(differences):
        return np.nan
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; NaN when every difference is zero."""
    differences = np.asarray(differences, dtype=float)
    if len(differences) == 0 or np.all(differences == 0):
        return np.nan
    return float(stats.wilcoxon(differences).pvalue)


def min_p_reachable(differences: np.ndarray) -> float:
    """The smallest two-sided p the exact signed-rank test can give: 2 / 2^n, n the non-zero
    differences (zeros are dropped), when every sign agrees. 5 pairs can never reach 0.05."""
    return min(1.0, 2.0 ** (1 - int(np.count_nonzero(differences))))


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (statsmodels); NaN stays NaN and is not counted."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = ~np.isnan(p)
    if valid.any():
        adjusted[valid] = multipletests(p[valid], method="holm")[1]
    return adjusted


def tost_p(differences: np.ndarray, margin: float) -> float:
    """Paired TOST p for |mean difference| < ``margin`` (statsmodels' ``ttost_paired``): below
    0.05 the 90 % t-interval lies inside (-margin, margin). NaN without spread or margin."""
    differences = np.asarray(differences, dtype=float)
    if _undefined(differences) or not np.isfinite(margin) or margin <= 0:
        return np.nan
    zeros = np.zeros_like(differences)
    return float(ttost_paired(differences, zeros, -margin, margin)[0])


def minimum_detectable(n: int, sd: float, power: float = POWER) -> float:
    """The smallest mean difference a two-sided paired t-test at 0.05 detects with ``power``,
    given n pairs of spread ``sd`` (statsmodels' TTestPower, in the metric's units)."""
    if n < 2 or not np.isfinite(sd) or sd == 0:
        return np.nan
    effect = TTestPower().solve_power(nobs=n, alpha=ALPHA, power=power, alternative="two-sided")
    return float(effect * sd)


def _side(
    folds: pd.DataFrame, activation: str, index: list[str], metrics: list[str], name: str
) -> pd.DataFrame:
    runs = folds[folds["activation"] == activation]
    repeated = int(runs.duplicated(index).sum())
    if repeated:
        raise ReportError(
            f"cannot pair {activation}: {repeated} fold result(s) equal another in every "
            f"recorded setting ({', '.join(index)}); runs without a summary.json identity that "
            "differ in an unrecorded setting?"
        )
    values = numeric(runs, index, metrics)
    return values.melt(id_vars=index, var_name="metric", value_name=name)


def paired_differences(
    folds: pd.DataFrame,
    a: str,
    b: str,
    keys: Sequence[str],
    metrics: Sequence[str] = PAIR_METRICS,
) -> pd.DataFrame:
    """One row per ``keys`` x seed x fold x metric where both activations have a value:
    ``value_a``, ``value_b`` and ``difference`` = a - b."""
    index = [*keys, "seed", "fold"]
    metrics = [m for m in metrics if m in folds.columns]
    side_a = _side(folds, a, index, metrics, "value_a")
    side_b = _side(folds, b, index, metrics, "value_b")
    out = side_a.merge(side_b, on=[*index, "metric"]).dropna(subset=["value_a", "value_b"])
    out["difference"] = out["value_a"] - out["value_b"]
    out.insert(0, "activation_a", a)
    out.insert(1, "activation_b", b)
    return out.reset_index(drop=True)


def _summary(group: pd.DataFrame) -> dict[str, object]:
    d = group["difference"].to_numpy(dtype=float)
    low, high = t_interval(d)
    return {
        "n": len(d),
        "mean_a": group["value_a"].mean(),
        "mean_b": group["value_b"].mean(),
        "mean_difference": d.mean(),
        "sd_difference": float(np.std(d, ddof=1)) if len(d) > 1 else np.nan,
        "ci_low": low,
        "ci_high": high,
        "ci_method": "t",
        "t_p": t_test_p(d),
        "wilcoxon_p": wilcoxon_p(d),
        "min_p_reachable": min_p_reachable(d),
    }


def summarize_pairs(differences: pd.DataFrame, group_keys: Sequence[str]) -> pd.DataFrame:
    """Per pair of activations, group and metric: n pairs, means of a and b, the mean difference,
    its spread and paired t-interval, the t-test and Wilcoxon p, each Holm-adjusted over the
    datasets of one claim (``FAMILY``), and the smallest Wilcoxon p reachable with that n."""
    by = ["activation_a", "activation_b", *group_keys, "metric"]
    if differences.empty:
        return pd.DataFrame(columns=[*by, *SUMMARY_COLUMNS])
    rows = [
        {**dict(zip(by, key, strict=True)), **_summary(group)}
        for key, group in differences.groupby(by, sort=True, dropna=False)
    ]
    table = pd.DataFrame(rows)
    family = table.groupby(list(FAMILY), dropna=False)
    table["t_p_holm"] = family["t_p"].transform(holm)
    table["wilcoxon_p_holm"] = family["wilcoxon_p"].transform(holm)
    return table[[*by, *SUMMARY_COLUMNS]]
