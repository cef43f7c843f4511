"""Paired comparison of two levels of one factor, per dataset.

A factor is a choice or setting the runs vary (``loss``, ``activation``, ``model.encoder``,
``trainer.lr``, ...). Two runs equal in every other result-changing setting, seed and fold but
at levels ``a`` and ``b`` of the factor give one paired difference a - b; 3 seeds x 5 folds give
15 of them.

The folds of a repeated k-fold cross-validation share most of their training data, so their
differences are correlated and the plain paired t (kept as ``plain_*``) is too narrow. The
interval and p of a row come from the corrected resampled t (Nadeau & Bengio 2003, "Inference
for the generalization error"; Bouckaert & Frank 2004): the variance of the mean difference is
s^2 (1/n + n_test/n_train), n the number of differences and n_test/n_train the folds' report over
training sizes (1/(k - 1) for k equal folds), on Student's t with n - 1 degrees of freedom.
Equivalence (TOST), the smallest effect the pairs detect at 80 % power and the seeds a
comparison would need use the same variance. The Wilcoxon signed-rank p is a second opinion.
Holm adjusts over one family: the real datasets of one comparison and metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, TTestPower
from statsmodels.stats.weightstats import ttost_paired

from segact.errors import ReportError
from segact.report.tables import numeric
from segact.runs import schema
from segact.runs.identity import CHOICES, setting_columns, varies_within

PAIR_METRICS: tuple[str, ...] = (schema.BEST_DICE, schema.THRESHOLD_AVERAGED_DICE, schema.NLL)
PAIR_METRICS_BY_AGGREGATION: dict[str, tuple[str, ...]] = {
    "selected": PAIR_METRICS,
    "paper": tuple(map(schema.paper, PAIR_METRICS)),
}
"""What is paired under each ``segact-report --aggregate``: the metrics its tables show."""
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.8
CI_METHOD = "corrected_t"
LEFT_OUT: tuple[str, ...] = ("synthetic",)
"""Datasets that enter no Holm family and no pooled estimate: generated data, not a task."""
PAIRED_MEANS: tuple[str, ...] = ("n", "mean_a", "mean_b", "mean_difference", "ci_low", "ci_high")
"""The columns of a paired comparison's means and interval, in every table that has them."""
COMPARISON: tuple[str, ...] = ("factor", "a", "b")
"""The first columns of every paired file: the factor (its Hydra key) and its two levels."""
RATIO = "test_train_ratio"
FACTOR_NAMES: dict[str, str] = {
    column: key for key, column in schema.STORED_AS.items() if not key.endswith(".name")
}
"""A folds.csv column -> the key a user sweeps it by (``model.encoder=resnet18,resnet34``); a
config group's name column is swept by the group's own name (``loss=dice,bce``)."""
SUMMARY_COLUMNS: tuple[str, ...] = (
    "n",
    "seeds",
    "folds",
    RATIO,
    "mean_a",
    "mean_b",
    "mean_difference",
    "sd_difference",
    "se_corrected",
    "ci_low",
    "ci_high",
    "ci_method",
    "p",
    "p_holm",
    "plain_ci_low",
    "plain_ci_high",
    "plain_t_p",
    "plain_t_p_holm",
    "wilcoxon_p",
    "wilcoxon_p_holm",
    "min_p_reachable",
)
HOLM: dict[str, str] = {
    "p": "p_holm",
    "plain_t_p": "plain_t_p_holm",
    "wilcoxon_p": "wilcoxon_p_holm",
}
MAX_SEEDS = 2**20
"""``seeds_needed`` searches up to this many seeds."""


@dataclass(frozen=True)
class Comparison:
    """Levels ``a`` and ``b`` (as text) of the factor in the frames' column ``column``."""

    column: str
    a: str
    b: str

    @property
    def factor(self) -> str:
        """The factor's name in the files and words: its Hydra key."""
        return FACTOR_NAMES.get(self.column, self.column)

    def words(self) -> str:
        return f"{self.factor}: {self.a} - {self.b}"

    def labels(self) -> dict[str, str]:
        return {"factor": self.factor, "a": self.a, "b": self.b}


def factor_column(frame: pd.DataFrame, name: str) -> str | None:
    """The column of the factor a user names (``model.encoder`` or ``encoder``, ``trainer.lr``
    or ``lr``): folds.csv's own column where it has one; None where the frame has neither."""
    short = {v: k for k, v in FACTOR_NAMES.items()}.get(name, name)
    return next((c for c in (short, name) if c in frame.columns), None)


def comparison_keys(folds: pd.DataFrame, column: str) -> list[str]:
    """What two runs must share to be paired on the factor ``column`` (besides seed and fold):
    the dataset, the loss, and every other choice or setting that varies among the runs of one
    dataset, loss and level. A setting that only follows the dataset (``dataset.root``) or the
    level (``loss.name`` with ``loss``; ``head`` where softmax comes only with the 2-channel
    head) adds no key. For ``activation`` these are ``identity.pair_keys``."""
    keys = [k for k in ("dataset", "loss") if k in folds.columns and k != column]
    for key in (*CHOICES, *setting_columns(folds)):
        if key not in folds.columns or key in keys or key == column:
            continue
        if varies_within(folds, [*keys, column], key):
            keys.append(key)
    return keys


def level_mask(values: pd.Series, level: str) -> pd.Series:
    """Rows whose value is ``level``: as text, or as a number where both are numbers (a learning
    rate read as 0.001 is the level "1e-3")."""
    text = values.astype(str)
    match = text == str(level)
    number = pd.to_numeric(pd.Series([level]), errors="coerce").iloc[0]
    if pd.notna(number):
        match |= pd.to_numeric(values, errors="coerce") == number
    return match & values.notna()


@dataclass(frozen=True)
class CorrectedT:
    """The corrected resampled t of n paired differences with mean ``mean`` and spread ``sd``
    (Nadeau & Bengio 2003): se = sd sqrt(1/n + ``ratio``), t on n - 1 degrees of freedom.
    ``ratio`` = n_test / n_train; 0 gives the plain paired t."""

    mean: float
    sd: float
    n: int
    ratio: float = 0.0

    @classmethod
    def of(cls, differences: np.ndarray, ratio: float = 0.0) -> CorrectedT:
        d = np.asarray(differences, dtype=float)
        sd = float(np.std(d, ddof=1)) if len(d) > 1 else np.nan
        sd = 0.0 if len(d) > 1 and np.ptp(d) == 0 else sd  # not a rounding error's spread
        mean = float(d.mean()) if len(d) else np.nan
        return cls(mean, sd, len(d), float(ratio))

    @property
    def defined(self) -> bool:
        """No test for fewer than 2 pairs or all-equal differences (no spread)."""
        return self.n >= 2 and bool(np.isfinite(self.sd)) and self.sd > 0

    @property
    def se(self) -> float:
        return self.sd * math.sqrt(1 / self.n + self.ratio) if self.defined else np.nan

    @property
    def df(self) -> int:
        return self.n - 1

    def interval(self) -> tuple[float, float]:
        """The 95 % CI of the mean difference; NaN where undefined."""
        if not self.defined:
            return (np.nan, np.nan)
        low, high = stats.t.interval(CONFIDENCE, self.df, loc=self.mean, scale=self.se)
        return (float(low), float(high))

    def p(self) -> float:
        """Two-sided p of mean difference 0 (the interval excludes 0 exactly when p < 0.05)."""
        if not self.defined:
            return np.nan
        return float(2 * stats.t.sf(abs(self.mean) / self.se, self.df))

    def tost_p(self, margin: float) -> float:
        """TOST p for |mean difference| < ``margin``: below 0.05 the 90 % interval lies inside
        (-margin, margin) (statsmodels' ``ttost_paired`` where ``ratio`` is 0)."""
        if not self.defined or not np.isfinite(margin) or margin <= 0:
            return np.nan
        above = stats.t.sf((self.mean + margin) / self.se, self.df)
        below = stats.t.cdf((self.mean - margin) / self.se, self.df)
        return float(max(above, below))

    def mde(self, power: float = POWER) -> float:
        """The smallest difference the two-sided test at 0.05 detects with ``power``:
        statsmodels' TTestPower gives the standardized effect d for n pairs, whose noncentrality
        d sqrt(n) is here mean / se, so the effect is d sd sqrt(1 + n ratio)."""
        if not self.defined:
            return np.nan
        effect = TTestPower().solve_power(
            nobs=self.n, alpha=ALPHA, power=power, alternative="two-sided"
        )
        return float(effect * self.sd * math.sqrt(1 + self.n * self.ratio))


def corrected_power(margin: float, sd: float, n: int, ratio: float) -> float:
    """Power of the corrected t at a true difference ``margin`` with n pairs (statsmodels'
    TTestPower at the effect whose noncentrality is margin / (sd sqrt(1/n + ratio)))."""
    effect = margin / (sd * math.sqrt(1 + n * ratio))
    return float(
        TTestPower().power(effect_size=effect, nobs=n, alpha=ALPHA, alternative="two-sided")
    )


def seeds_needed(margin: float, sd: float, folds: int, ratio: float, power: float = POWER) -> float:
    """The fewest seeds (at ``folds`` folds each) whose corrected t detects a true difference of
    ``margin`` with ``power``. With s seeds the variance is sd^2 (1/(s folds) + ratio): its
    second term does not shrink with seeds, so the power tends to a normal test's at
    noncentrality margin / (sd sqrt(ratio)); where that limit is below ``power`` no number of
    seeds settles the comparison: NaN (as for a missing spread or margin)."""
    if not (np.isfinite(margin) and margin > 0 and np.isfinite(sd) and sd > 0 and folds >= 1):
        return np.nan
    if ratio > 0:
        limit = NormalIndPower().power(
            effect_size=margin / (sd * math.sqrt(ratio)), nobs1=1, ratio=0, alpha=ALPHA
        )
        if limit <= power:
            return np.nan

    def enough(seeds: int) -> bool:
        return corrected_power(margin, sd, seeds * folds, ratio) >= power

    low = 1 if folds >= 2 else 2  # the t needs 2 pairs
    if enough(low):
        return float(low)
    high = low
    while not enough(high):
        if high >= MAX_SEEDS:
            return np.nan
        low, high = high, high * 2
    while high - low > 1:  # enough(high), not enough(low)
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return float(high)


def t_interval(differences: np.ndarray) -> tuple[float, float]:
    """Plain paired Student-t CI of the mean difference; NaN where it is undefined."""
    return CorrectedT.of(differences).interval()


def t_test_p(differences: np.ndarray) -> float:
    """Two-sided plain paired t-test p (the test ``t_interval`` belongs to); NaN without spread."""
    test = CorrectedT.of(differences)
    return float(stats.ttest_1samp(differences, 0.0).pvalue) if test.defined else np.nan


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
    """Plain paired TOST p for |mean difference| < ``margin`` (statsmodels' ``ttost_paired``);
    NaN without spread or margin."""
    differences = np.asarray(differences, dtype=float)
    if not CorrectedT.of(differences).defined or not np.isfinite(margin) or margin <= 0:
        return np.nan
    zeros = np.zeros_like(differences)
    return float(ttost_paired(differences, zeros, -margin, margin)[0])


def minimum_detectable(n: int, sd: float, power: float = POWER) -> float:
    """The smallest mean difference a two-sided plain paired t-test at 0.05 detects with
    ``power``, given n pairs of spread ``sd`` (statsmodels' TTestPower, in the metric's units)."""
    return CorrectedT(0.0, sd, n).mde(power)


def test_train_ratio(folds: pd.DataFrame) -> pd.Series:
    """Per fold row: its reported images over the images its fold trained with (``n_report`` /
    ``n_train``, plus ``n_select`` under ``eval.protocol=holdout``, whose inner split is carved
    from the training images); where a row lacks them, 1 / (k - 1) for its k folds
    (``trainer.folds``, else the folds the dataset's rows have)."""

    def column(name: str) -> pd.Series:
        values = folds[name] if name in folds.columns else pd.Series(np.nan, index=folds.index)
        return pd.to_numeric(values, errors="coerce")

    selected = column(schema.N_SELECT).fillna(0)
    if "protocol" in folds.columns:
        selected = selected.where(folds["protocol"].astype(str) == "holdout", 0)
    ratio = column(schema.N_REPORT) / (column(schema.N_TRAIN) + selected)
    k = column("trainer.folds")
    if schema.FOLD in folds.columns and "dataset" in folds.columns:
        k = k.fillna(folds.groupby("dataset", dropna=False)[schema.FOLD].transform("nunique"))
    fallback = 1 / (k - 1).where(k > 1)
    return ratio.where(np.isfinite(ratio) & (ratio > 0), fallback)


def _side(
    folds: pd.DataFrame, comparison: Comparison, level: str, index: list[str], metrics: list[str]
) -> pd.DataFrame:
    runs = folds[level_mask(folds[comparison.column], level)]
    repeated = int(runs.duplicated(index).sum())
    if repeated:
        raise ReportError(
            f"cannot pair {comparison.factor} {level}: {repeated} fold result(s) equal another in "
            f"every recorded setting ({', '.join(index)}); runs without a summary.json identity "
            "that differ in an unrecorded setting?"
        )
    values = numeric(runs, index, metrics).assign(**{RATIO: test_train_ratio(runs).to_numpy()})
    return values.melt(id_vars=[*index, RATIO], var_name="metric", value_name="value")


def paired_differences(
    folds: pd.DataFrame,
    comparison: Comparison,
    keys: Sequence[str],
    metrics: Sequence[str] = PAIR_METRICS,
) -> pd.DataFrame:
    """One row per ``keys`` x seed x fold x metric where both levels have a value: the
    comparison, ``value_a``, ``value_b``, ``difference`` = a - b and the fold's
    ``test_train_ratio`` (``test_train_ratio``, of a's run)."""
    index = [*keys, "seed", "fold"]
    metrics = [m for m in metrics if m in folds.columns]
    side_a = _side(folds, comparison, comparison.a, index, metrics)
    side_b = _side(folds, comparison, comparison.b, index, metrics).drop(columns=RATIO)
    out = side_a.merge(side_b, on=[*index, "metric"], suffixes=("_a", "_b"))
    out = out.dropna(subset=["value_a", "value_b"])
    out["difference"] = out["value_a"] - out["value_b"]
    out = out[[*index, "metric", "value_a", "value_b", "difference", RATIO]]
    for position, (name, value) in enumerate(comparison.labels().items()):
        out.insert(position, name, value)
    return out.reset_index(drop=True)


def stack(frames: Sequence[pd.DataFrame], keys: Sequence[str]) -> pd.DataFrame:
    """Frames of several comparisons as one: the comparison, ``keys`` (the union of theirs, in
    order; empty where one does not pair on a key), then the rest in the first frame's order."""
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    lead = [c for c in dict.fromkeys((*COMPARISON, *keys)) if c in table.columns]
    return table[[*lead, *(c for c in table.columns if c not in lead)]]


def summarize(differences: pd.DataFrame) -> dict[str, object]:
    """The columns ``SUMMARY_COLUMNS`` (Holm-adjusted ones aside) of one row's differences."""
    d = differences["difference"].to_numpy(dtype=float)
    ratio = float(differences[RATIO].mean()) if RATIO in differences else np.nan
    corrected = CorrectedT.of(d, ratio)
    plain = CorrectedT.of(d)
    low, high = corrected.interval()
    plain_low, plain_high = plain.interval()
    return {
        "n": len(d),
        "seeds": differences["seed"].nunique(),
        "folds": differences["fold"].nunique(),
        RATIO: ratio,
        "mean_a": differences["value_a"].mean(),
        "mean_b": differences["value_b"].mean(),
        "mean_difference": corrected.mean,
        "sd_difference": corrected.sd,
        "se_corrected": corrected.se,
        "ci_low": low,
        "ci_high": high,
        "ci_method": CI_METHOD,
        "p": corrected.p(),
        "plain_ci_low": plain_low,
        "plain_ci_high": plain_high,
        "plain_t_p": t_test_p(d),
        "wilcoxon_p": wilcoxon_p(d),
        "min_p_reachable": min_p_reachable(d),
    }


def family_keys(summary: pd.DataFrame) -> list[str]:
    """What one family of a summary is: the comparison, every key but the dataset, the metric."""
    fixed = {*COMPARISON, *SUMMARY_COLUMNS, "dataset", "metric"}
    keys = [c for c in summary.columns if c not in fixed and not c.startswith("_")]
    return [*COMPARISON, *keys, "metric"]


def summarize_pairs(differences: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per comparison, ``keys`` and metric (``differences`` of one comparison or several with
    the same ``keys``): ``SUMMARY_COLUMNS``. The ``*_holm`` p-values adjust over one family, the
    real datasets of a comparison, its other keys and a metric; a ``LEFT_OUT`` dataset is in no
    family (its adjusted p is its own)."""
    by = [*COMPARISON, *keys, "metric"]
    if differences.empty:
        return pd.DataFrame(columns=[*by, *SUMMARY_COLUMNS])
    rows = [
        {**dict(zip(by, key, strict=True)), **summarize(group)}
        for key, group in differences.groupby(by, sort=True, dropna=False)
    ]
    table = pd.DataFrame(rows)
    real = ~table["dataset"].astype(str).isin(LEFT_OUT)
    for column, adjusted in HOLM.items():
        table[adjusted] = table[column]
        family = table[real].groupby(family_keys(table[by]), dropna=False)[column]
        table.loc[real, adjusted] = family.transform(holm)
    return table[[*by, *SUMMARY_COLUMNS]]
