"""A paired comparison judged per dataset and pooled over datasets: equivalence (TOST) against a
margin, the smallest effect the design detects at 80 % power, the seeds that would settle an
inconclusive comparison, a meta-analysis across the real datasets, and the verdict each row
earns (``claims.VERDICT_RULE``).

Each dataset's effect is its mean paired difference with the corrected resampled t's variance
(``stats.CorrectedT``). Pooled with statsmodels' ``combine_effects`` (``method_re="dl"``,
``use_t=True``): ``fixed`` (inverse variance, normal interval), ``random_dl`` (DerSimonian-Laird,
normal interval) and ``random_hksj`` (its "random effect wls" row: DerSimonian-Laird weights
1 / (v_i + tau^2), the variance scaled by q = sum w (y - mu)^2 / (k - 1), on t with k - 1
degrees of freedom: Hartung-Knapp-Sidik-Jonkman, the headline below 10 datasets); ``equal``:
the plain mean of the datasets' effects. statsmodels 0.15 leaves tau^2 negative when
Q < k - 1; DerSimonian-Laird truncates it at 0, so there the random-effects rows are the fixed
ones. Not in statsmodels, so written here: the random-effects 95 % prediction interval (Higgins,
Thompson and Spiegelhalter 2009: mu +- t_{k-2} sqrt(tau^2 + se^2), from 3 datasets), and the
pooled TOST and power on the pooled estimate's normal (or t) approximation. One dataset is not
pooled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.power import NormalIndPower

from segact.report import tables
from segact.report.claims import SENSITIVITY_PERCENT, MarginRule, claimed_difference, verdict
from segact.report.stats import (
    ALPHA,
    COMPARISON,
    LEFT_OUT,
    POWER,
    RATIO,
    CorrectedT,
    family_keys,
    minimum_detectable,
    seeds_needed,
)

JUDGEMENT_COLUMNS: tuple[str, ...] = (
    "margin",
    "claimed",
    "tost_p",
    "mde_80",
    "seeds_needed",
    "verdict",
)
"""Added to each paired_summary row; ``claimed`` only with ``--paper-claims``."""
HKSJ = "random_hksj"
T_METHODS: tuple[str, ...] = (HKSJ, "equal")
"""Methods whose interval, TOST and power are on Student's t with k - 1 degrees of freedom."""
METHODS: tuple[str, ...] = (HKSJ, "random_dl", "fixed", "equal")
HKSJ_BELOW = 10
"""Below this many datasets the headline is ``random_hksj``, else ``random_dl``."""
POOLED_INTERVALS: tuple[str, ...] = (
    "ci_low", "ci_high", "tau2", "i2", "pi_low", "pi_high"
)  # fmt: skip
"""A pooled estimate's interval, heterogeneity and prediction interval."""
META_COLUMNS: tuple[str, ...] = (
    "scope",
    "method",
    "headline",
    "k",
    "datasets",
    "estimate",
    "se",
    *POOLED_INTERVALS,
    "baseline_mean",
    "relative_percent",
    "relative_ci_low",
    "relative_ci_high",
    "margin",
    "claimed",
    "tost_p",
    "mde_80",
    "verdict",
)
SCOPES = ("learned", "all")
"""Pooled over the datasets where both levels learned (verdicts), and over all of them."""


def _claimed(row: dict, paper_claims: bool) -> float:
    if not paper_claims:
        return np.nan
    return claimed_difference(
        row["factor"], row["a"], row["b"], row.get("loss"), row["metric"],
        row["mean_a"], row["mean_b"],
    )  # fmt: skip


def judge_datasets(summary: pd.DataFrame, rule: MarginRule, paper_claims: bool) -> pd.DataFrame:
    """``summary`` plus, per dataset row, the margin (of b's mean), the paper's claimed
    difference (``--paper-claims`` only), the corrected TOST p, the 80 %-power minimum
    detectable effect, the seeds an inconclusive row would need, and a verdict."""
    columns = [c for c in JUDGEMENT_COLUMNS if paper_claims or c != "claimed"]
    rows = []
    for row in summary.to_dict("records"):
        test = CorrectedT(row["mean_difference"], row["sd_difference"], row["n"], row[RATIO])
        margin = rule.margin(row["mean_b"])
        claimed = _claimed(row, paper_claims)
        tost = test.tost_p(margin)
        words = verdict(row["ci_low"], row["ci_high"], tost, margin, row["metric"], claimed)
        needed = np.nan
        if words == "inconclusive":
            needed = seeds_needed(margin, test.sd, int(row["folds"]), row[RATIO])
        judged = {"margin": margin, "claimed": claimed, "tost_p": tost, "mde_80": test.mde()}
        judged |= {"seeds_needed": needed, "verdict": words}
        rows.append({**row, **{c: judged[c] for c in columns}})
    return pd.DataFrame(rows, columns=[*summary.columns, *columns])


def prediction_interval(mu: float, se: float, tau2: float, k: int) -> tuple[float, float]:
    """The random-effects model's 95 % prediction interval; NaN below 3 datasets."""
    if k < 3 or not np.isfinite(tau2):
        return (np.nan, np.nan)
    half = scipy_stats.t.ppf(1 - ALPHA / 2, k - 2) * np.sqrt(tau2 + se**2)
    return (mu - half, mu + half)


def pooled_tost_p(estimate: float, se: float, margin: float, df: float = np.inf) -> float:
    """TOST of a pooled estimate against +-margin: on its normal approximation, or on Student's
    t with ``df`` degrees of freedom."""
    if not (np.isfinite(se) and se > 0 and np.isfinite(margin) and margin > 0):
        return np.nan
    above = scipy_stats.t.sf((estimate + margin) / se, df)
    below = scipy_stats.t.cdf((estimate - margin) / se, df)
    return float(max(above, below))


def pooled_mde(se: float, k: int | None = None) -> float:
    """The smallest pooled effect a two-sided test at 0.05 detects with 80 % power: a z-test on
    the pooled estimate, or (``k`` datasets) a t-test on k - 1 degrees of freedom."""
    if not (np.isfinite(se) and se > 0):
        return np.nan
    if k is not None:
        return minimum_detectable(k, se * np.sqrt(k))
    effect = NormalIndPower().solve_power(nobs1=1, ratio=0, alpha=ALPHA, power=POWER)
    return float(effect * se)


def _pooled(estimate: float, se: float, interval: np.ndarray) -> dict[str, float]:
    return {
        "estimate": float(estimate),
        "se": float(se),
        "ci_low": float(interval[0]),
        "ci_high": float(interval[1]),
    }


def inverse_variance(effects: np.ndarray, variances: np.ndarray) -> dict[str, dict]:
    """``fixed``, ``random_dl`` and ``random_hksj`` from statsmodels' ``combine_effects`` (its
    "fixed effect", "random effect" and, on t, "random effect wls" rows), with tau^2
    (DerSimonian-Laird, truncated at 0) and I^2 = max(0, (Q - (k - 1)) / Q)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # Q = 0: I^2 is computed below
        result = combine_effects(effects, variances, method_re="dl", use_t=True, alpha=ALPHA)
    fixed, random, *_ = result.conf_int(alpha=ALPHA, use_t=False)
    *_, fixed_hksj, random_hksj = result.conf_int(alpha=ALPHA, use_t=True)
    homogeneous = result.tau2 <= 0  # DL truncates tau^2 at 0; statsmodels 0.15 does not
    tau2 = max(float(result.tau2), 0.0)
    df = len(effects) - 1
    i2 = max(0.0, (result.q - df) / result.q) if result.q > 0 else 0.0
    fe = _pooled(result.mean_effect_fe, result.sd_eff_w_fe, fixed)
    re = _pooled(result.mean_effect_re, result.sd_eff_w_re, random)
    hksj = _pooled(result.mean_effect_re, result.sd_eff_w_re_hksj, random_hksj)
    if homogeneous:  # tau^2 = 0: the random-effects rows are the fixed ones
        re = fe
        hksj = _pooled(result.mean_effect_fe, result.sd_eff_w_fe_hksj, fixed_hksj)
    return {
        "fixed": {**fe, "tau2": 0.0, "i2": i2},
        "random_dl": {**re, "tau2": tau2, "i2": i2},
        HKSJ: {**hksj, "tau2": tau2, "i2": i2},
    }


def equal_weights(effects: np.ndarray) -> dict[str, float]:
    """Each dataset's effect counts the same: their mean, a t-interval over the k datasets, and
    the interval a new dataset's effect falls in (t_{k-1} sd sqrt(1 + 1/k))."""
    k = len(effects)
    sd = float(np.std(effects, ddof=1))
    mean, se = float(effects.mean()), sd / np.sqrt(k)
    t = scipy_stats.t.ppf(1 - ALPHA / 2, k - 1)
    half_pi = t * sd * np.sqrt(1 + 1 / k)
    return {
        "estimate": mean, "se": se, "ci_low": mean - t * se, "ci_high": mean + t * se,
        "tau2": np.nan, "i2": np.nan, "pi_low": mean - half_pi, "pi_high": mean + half_pi,
    }  # fmt: skip


def judge_pooled(row: dict, margin: float, claimed: float = np.nan) -> dict[str, object]:
    """TOST p, power and verdict of a pooled ``row`` (``method``, ``k``, ``estimate``, ``se``,
    ``ci_low``, ``ci_high``, ``metric``) against ``margin``."""
    t = row["method"] in T_METHODS
    tost = pooled_tost_p(row["estimate"], row["se"], margin, row["k"] - 1 if t else np.inf)
    words = verdict(row["ci_low"], row["ci_high"], tost, margin, row["metric"], claimed)
    return {
        "tost_p": tost,
        "mde_80": pooled_mde(row["se"], row["k"] if t else None),
        "verdict": words,
    }


def _pooled_rows(rows: pd.DataFrame, rule: MarginRule, paper_claims: bool) -> list[dict]:
    """The rows of one family over ``rows`` (one per dataset, at least 2), one per method."""
    effects = rows["mean_difference"].to_numpy(dtype=float)
    variances = rows["se_corrected"].to_numpy(dtype=float) ** 2
    variances = np.where(variances > 0, variances, np.finfo(float).tiny)  # no spread: exact
    first = rows.iloc[0].to_dict()
    means = {"mean_a": float(rows["mean_a"].mean()), "mean_b": float(rows["mean_b"].mean())}
    baseline = means["mean_b"]
    margin = rule.margin(baseline)
    claimed = _claimed({**first, **means}, paper_claims)
    k = len(rows)
    methods = {**inverse_variance(effects, variances), "equal": equal_weights(effects)}
    for name in ("random_dl", HKSJ):
        method = methods[name]
        pi = prediction_interval(method["estimate"], method["se"], method["tau2"], k)
        method |= {"pi_low": pi[0], "pi_high": pi[1]}
    headline = HKSJ if k < HKSJ_BELOW else "random_dl"
    out = []
    for name in METHODS:
        row = {"method": name, "headline": name == headline, "k": k, **methods[name]}
        row |= {"metric": first["metric"], "margin": margin, "claimed": claimed}
        row |= judge_pooled(row, margin, claimed) | relative(row, baseline)
        row["datasets"] = ", ".join(rows["dataset"].astype(str))
        out.append(row)
    return out


def relative(row: dict, baseline: float) -> dict[str, float]:
    """a - b in % of b's (the baseline's) mean, with its CI."""
    scale = 100 / baseline if baseline else np.nan
    return {
        "baseline_mean": baseline,
        "relative_percent": row["estimate"] * scale,
        "relative_ci_low": row["ci_low"] * scale,
        "relative_ci_high": row["ci_high"] * scale,
    }


def _family(summary: pd.DataFrame) -> list[str]:
    return [k for k in family_keys(summary) if k not in JUDGEMENT_COLUMNS]


def meta_analysis(
    summary: pd.DataFrame, unlearned: pd.Series, rule: MarginRule, paper_claims: bool = False
) -> pd.DataFrame:
    """Per family (a comparison, its other keys and a metric) and scope, over 2 or more real
    datasets (``LEFT_OUT`` never counts): ``METHODS`` with heterogeneity, prediction interval,
    equivalence, power and verdict. ``unlearned``: per ``summary`` row, whether either level
    did not learn there (left out of the ``learned`` scope)."""
    keys = _family(summary)
    columns = [*keys, *(c for c in META_COLUMNS if paper_claims or c != "claimed")]
    real = ~summary["dataset"].astype(str).isin(LEFT_OUT)
    rows = []
    for scope in SCOPES:
        chosen = summary[real & (~unlearned if scope == "learned" else True)]
        for values, group in chosen.groupby(keys, sort=True, dropna=False):
            if len(group) < 2:
                continue
            named = dict(zip(keys, values, strict=True))
            rows += [
                {**named, "scope": scope, **r} for r in _pooled_rows(group, rule, paper_claims)
            ]
    return pd.DataFrame(rows, columns=columns)


def margin_sensitivity(pooled: pd.DataFrame) -> pd.DataFrame:
    """Under each headline pooled result of scope ``learned``: its TOST p and verdict at margins
    of ``SENSITIVITY_PERCENT`` % of the baseline's mean."""
    chosen = pooled[(pooled["scope"] == "learned") & pooled["headline"].astype(bool)]
    keys = [c for c in pooled.columns if c not in META_COLUMNS]
    rows = []
    for row in chosen.to_dict("records"):
        for percent in SENSITIVITY_PERCENT:
            margin = MarginRule(f"{percent:g}%").margin(row["baseline_mean"])
            judged = judge_pooled(row, margin, row.get("claimed", np.nan))
            rows.append(
                {
                    **{k: row[k] for k in keys},
                    "method": row["method"],
                    "margin_percent": percent,
                    "margin": margin,
                    "tost_p": judged["tost_p"],
                    "verdict": judged["verdict"],
                }
            )
    return pd.DataFrame(
        rows, columns=[*keys, "method", "margin_percent", "margin", "tost_p", "verdict"]
    )


def unlearned_rows(summary: pd.DataFrame, unlearned_cells: pd.DataFrame, column: str) -> pd.Series:
    """Per ``summary`` row (one comparison of the factor in ``column``): whether level a or b
    did not learn on that dataset (cells: dataset, the row keys and ``column``, of
    ``learned.not_learned`` rows; compared as text)."""
    flags = pd.Series(False, index=summary.index)
    if unlearned_cells.empty or summary.empty:
        return flags
    shared = [
        c for c in unlearned_cells.columns
        if c in summary.columns and c != column and c not in (*COMPARISON, "n")
    ]  # fmt: skip
    own = [column] if column in unlearned_cells.columns else []
    cells = {tuple(map(str, r)) for r in unlearned_cells[[*shared, *own]].to_numpy()}
    for side in ("a", "b"):
        keys = summary[shared].astype(str)
        if own:
            keys = keys.assign(_level=summary[side].astype(str))
        rows = keys.itertuples(index=False, name=None)
        flags |= pd.Series([r in cells for r in rows], index=summary.index)
    return flags


def panel_names(frame: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """``loss: dice - bce, activation sigmoid: best Dice (a - b)``: a forest panel's title."""
    parts = frame[["factor", "a", "b"]].astype(str)
    title = parts["factor"] + ": " + parts["a"] + " - " + parts["b"]
    for key in keys:
        values = frame[key].astype(str)
        shown = values.map(tables.loss_label) if key == "loss" else key + " " + values
        title = title + ", " + shown
    metrics = frame["metric"].map(lambda m: tables.METRIC_NAMES.get(m, m))
    return title + ": " + metrics + " (a - b)"


def forest_frames(
    summary: pd.DataFrame, meta: pd.DataFrame, metrics: Sequence[str], unlearned: pd.Series
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(studies, pooled) for ``plots.forest``: the real datasets of one comparison (those where
    a level did not learn marked: they are not pooled), and each family's headline and fixed
    pooled rows of scope ``learned``, in the ``metrics`` (e.g. best Dice), a panel per family."""
    keys = [k for k in _family(summary) if k not in (*COMPARISON, "metric")]
    chosen = ~summary["dataset"].astype(str).isin(LEFT_OUT) & summary["metric"].isin(metrics)
    label = summary["dataset"].astype(str).where(~unlearned, summary["dataset"] + " (not learned)")
    studies = summary[chosen].assign(panel=panel_names(summary[chosen], keys), label=label[chosen])
    studies = studies.rename(columns={"mean_difference": "estimate"})
    marks = [c for c in ("margin", "claimed") if c in summary.columns]
    columns = ["panel", "method", "estimate", "ci_low", "ci_high", "pi_low", "pi_high"]
    if meta.empty:
        pooled = pd.DataFrame(columns=[*columns, *marks])
    else:
        shown = meta["headline"].astype(bool) | (meta["method"] == "fixed")
        pooled = meta[(meta["scope"] == "learned") & meta["metric"].isin(metrics) & shown]
        pooled = pooled.assign(panel=panel_names(pooled, keys))[[*columns, *marks]]
    return studies[["panel", "label", "estimate", "ci_low", "ci_high", *marks]], pooled
