"""Paired comparison of two activations.

Two runs equal in every result-changing setting but the activation (dataset, loss, head, ...,
any differing setting such as ``trainer.lr``, and the seed and fold) give one paired difference
a - b. With several seeds the pairs multiply (3 seeds x 5 folds = 15 pairs); pairs of one fold
share its data, so they are not independent draws: read the p-values with that in mind.

Over a row's pairs: the mean difference with a 95% CI (a t-interval below ``BCA_MIN_PAIRS``
pairs, where a bootstrap has too few distinct resamples; BCa bootstrap from there on), the
two-sided Wilcoxon signed-rank p (scipy.stats), the smallest p that test can reach with the n
at hand, and Holm-adjusted p-values across the rows of one paired table (one pair of
activations, one metric).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from segact.errors import ReportError
from segact.report.tables import numeric

PAIR_METRICS: tuple[str, ...] = ("best_dice", "mean_dice", "nll")
PAIR_METRICS_BY_AGGREGATION: dict[str, tuple[str, ...]] = {
    "selected": PAIR_METRICS,
    "paper": tuple(f"paper_{m}" for m in PAIR_METRICS),
}
"""What is paired under each ``segact-report --aggregate``: the metrics its tables show."""
CONFIDENCE = 0.95
N_RESAMPLES = 9999
BCA_MIN_PAIRS = 10
FAMILY: tuple[str, ...] = ("activation_a", "activation_b", "metric")
"""The rows of one paired table: the family the Holm adjustment runs over."""
SUMMARY_COLUMNS: tuple[str, ...] = (
    "n",
    "mean_a",
    "mean_b",
    "mean_difference",
    "ci_low",
    "ci_high",
    "ci_method",
    "wilcoxon_p",
    "wilcoxon_p_holm",
    "min_p_reachable",
)


def _undefined(differences: np.ndarray) -> bool:
    """No interval for fewer than 2 pairs or all-equal differences (no spread to resample)."""
    return len(differences) < 2 or np.ptp(differences) == 0


def bootstrap_ci(
    differences: np.ndarray, seed: int = 0, n_resamples: int = N_RESAMPLES
) -> tuple[float, float]:
    """BCa bootstrap CI of the mean difference; NaN where it is undefined."""
    differences = np.asarray(differences, dtype=float)
    if _undefined(differences):
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


def t_interval(differences: np.ndarray) -> tuple[float, float]:
    """Student-t CI of the mean difference; NaN where it is undefined."""
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


def mean_ci(differences: np.ndarray, seed: int = 0) -> tuple[float, float, str]:
    """(low, high, method): ``t`` below ``BCA_MIN_PAIRS`` pairs, ``bca`` from there on."""
    if len(differences) >= BCA_MIN_PAIRS:
        return (*bootstrap_ci(differences, seed), "bca")
    return (*t_interval(differences), "t")


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
    """Holm's step-down adjusted p-values (family-wise error); NaN stays NaN and is not counted.

    Written out because scipy has only Benjamini-Hochberg (``false_discovery_control``, which
    controls the false discovery rate, not the family-wise error) and statsmodels'
    ``multipletests`` is not a dependency: the i-th smallest of m p-values becomes
    max over j <= i of min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * (len(order) - np.arange(len(order)))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


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
    low, high, method = mean_ci(d)
    return {
        "n": len(d),
        "mean_a": group["value_a"].mean(),
        "mean_b": group["value_b"].mean(),
        "mean_difference": d.mean(),
        "ci_low": low,
        "ci_high": high,
        "ci_method": method,
        "wilcoxon_p": wilcoxon_p(d),
        "min_p_reachable": min_p_reachable(d),
    }


def summarize_pairs(differences: pd.DataFrame, group_keys: Sequence[str]) -> pd.DataFrame:
    """Per pair of activations, group and metric: n pairs, means of a and b, the mean difference
    and its CI (``ci_method`` t|bca), Wilcoxon p, Holm-adjusted p over the rows of the same pair
    and metric, and the smallest p reachable with that n."""
    by = ["activation_a", "activation_b", *group_keys, "metric"]
    if differences.empty:
        return pd.DataFrame(columns=[*by, *SUMMARY_COLUMNS])
    rows = [
        {**dict(zip(by, key, strict=True)), **_summary(group)}
        for key, group in differences.groupby(by, sort=True, dropna=False)
    ]
    table = pd.DataFrame(rows)
    table["wilcoxon_p_holm"] = table.groupby(list(FAMILY))["wilcoxon_p"].transform(holm)
    return table[[*by, *SUMMARY_COLUMNS]]
