"""A paired comparison judged per dataset and pooled over datasets: equivalence (TOST) against a
margin, the smallest effect the design detects at 80 % power, a meta-analysis across datasets
(statsmodels' ``combine_effects``: fixed effect and DerSimonian-Laird random effects), and the
verdict each row earns (``claims.VERDICT_RULE``).

Each dataset's effect is its mean paired difference with variance sd^2 / n (n pairs over seeds
and folds). DerSimonian-Laird's tau^2 is max(0, (Q - (k - 1)) / C); statsmodels 0.15 leaves it
negative when Q < k - 1, so there the random-effects row is the fixed one (tau^2 = 0, as DL
defines it), and I^2 = max(0, (Q - (k - 1)) / Q). Written by hand, because statsmodels has
neither: the 95 % prediction interval of
the random-effects model (Higgins, Thompson and Spiegelhalter 2009: mu +- t_{k-2} sqrt(tau^2 +
se^2), for k >= 3 datasets) and the pooled TOST and power, which use the pooled estimate's
normal approximation like ``combine_effects``' own intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.power import NormalIndPower

from segact.report import tables
from segact.report.claims import LEFT_OUT, MarginRule, find_claim, verdict
from segact.report.stats import ALPHA, FAMILY, POWER, SUMMARY_COLUMNS, minimum_detectable, tost_p

JUDGEMENT_COLUMNS: tuple[str, ...] = ("margin", "claimed", "tost_p", "mde_80", "verdict")
METHODS: dict[str, str] = {"fixed": "fixed effect", "random_dl": "random effect"}
"""``method`` column -> the row of statsmodels' ``summary_frame``; besides these, ``equal``: the
plain mean of the datasets' effects, each dataset one unit (a sensitivity analysis: inverse
variance weights let the datasets with the tightest differences decide the pooled estimate)."""
META_COLUMNS: tuple[str, ...] = (
    "scope",
    "method",
    "k",
    "datasets",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "tau2",
    "i2",
    "pi_low",
    "pi_high",
    "baseline_mean",
    "relative_percent",
    "relative_ci_low",
    "relative_ci_high",
    *JUDGEMENT_COLUMNS,
)
SCOPES = ("learned", "all")
"""Pooled over the datasets where both activations learned (verdicts), and over all of them."""


def family_keys(summary: pd.DataFrame) -> list[str]:
    """What one claim is: the pair, the loss, any other pair key (e.g. a differing
    ``trainer.lr``) and the metric; the datasets are its rows."""
    fixed = {*FAMILY, *SUMMARY_COLUMNS, *JUDGEMENT_COLUMNS, "dataset"}
    extra = [c for c in summary.columns if c not in fixed]
    return [*FAMILY[:3], *extra, FAMILY[3]]


def _claim_and_margin(row: pd.Series, baseline: float, rule: MarginRule) -> tuple:
    claim = find_claim(row["activation_a"], row["activation_b"], row["loss"], row["metric"])
    claimed = claim.claimed_difference(baseline) if claim else np.nan
    return claim, claimed, rule.margin(claim, baseline)


def judge_datasets(
    summary: pd.DataFrame, differences: pd.DataFrame, rule: MarginRule
) -> pd.DataFrame:
    """``summary`` plus, per dataset row, the margin, the paper's claimed difference (where it
    made a claim), the paired TOST p, the 80 %-power minimum detectable effect and a verdict."""
    if summary.empty:
        return summary.assign(**dict.fromkeys(JUDGEMENT_COLUMNS, np.nan))
    by = [c for c in summary.columns if c not in (*SUMMARY_COLUMNS, *JUDGEMENT_COLUMNS)]
    groups = dict(list(differences.groupby(by, sort=False, dropna=False)))
    rows = []
    for _, row in summary.iterrows():
        d = groups[tuple(row[by])]["difference"].to_numpy(dtype=float)
        claim, claimed, margin = _claim_and_margin(row, row["mean_a"], rule)
        judged = {"margin": margin, "claimed": claimed, "tost_p": tost_p(d, margin)}
        judged["mde_80"] = minimum_detectable(len(d), float(row["sd_difference"]))
        judged["verdict"] = verdict({**row.to_dict(), **judged}, claim, claimed)
        rows.append({**row.to_dict(), **judged})
    return pd.DataFrame(rows, columns=[*summary.columns, *JUDGEMENT_COLUMNS])


def prediction_interval(mu: float, se: float, tau2: float, k: int) -> tuple[float, float]:
    """The random-effects model's 95 % prediction interval; NaN below 3 datasets."""
    if k < 3 or not np.isfinite(tau2):
        return (np.nan, np.nan)
    half = scipy_stats.t.ppf(1 - ALPHA / 2, k - 2) * np.sqrt(tau2 + se**2)
    return (mu - half, mu + half)


def pooled_tost_p(estimate: float, se: float, margin: float, df: float = np.inf) -> float:
    """TOST of a pooled estimate against +-margin: on its normal approximation, or on Student's
    t with ``df`` degrees of freedom (the equal-weights mean over datasets)."""
    if not (np.isfinite(se) and se > 0 and np.isfinite(margin) and margin > 0):
        return np.nan
    above = scipy_stats.t.sf((estimate + margin) / se, df)
    below = scipy_stats.t.cdf((estimate - margin) / se, df)
    return float(max(above, below))


def pooled_mde(se: float, k: int | None = None) -> float:
    """The smallest pooled effect a two-sided test at 0.05 detects with 80 % power: a z-test on
    the pooled estimate, or (``k`` datasets, equal weights) a one-sample t-test over them."""
    if not (np.isfinite(se) and se > 0):
        return np.nan
    if k is not None:
        return minimum_detectable(k, se * np.sqrt(k))
    effect = NormalIndPower().solve_power(nobs1=1, ratio=0, alpha=ALPHA, power=POWER)
    return float(effect * se)


def _normal_ci(estimate: float, se: float) -> dict[str, float]:
    z = scipy_stats.norm.ppf(1 - ALPHA / 2)
    return {
        "estimate": estimate,
        "se": se,
        "ci_low": estimate - z * se,
        "ci_high": estimate + z * se,
    }


def _inverse_variance(effects: np.ndarray, variances: np.ndarray) -> dict[str, dict]:
    """``fixed`` and ``random_dl`` (one dataset: the dataset itself, no tau^2)."""
    if len(effects) == 1:
        one = _normal_ci(float(effects[0]), float(np.sqrt(variances[0])))
        return {method: {**one, "tau2": np.nan, "i2": np.nan} for method in METHODS}
    with np.errstate(divide="ignore", invalid="ignore"):  # Q = 0: I^2 is computed below
        result = combine_effects(effects, variances, method_re="dl", alpha=ALPHA)
    frame = result.summary_frame()
    tau2 = float(result.tau2)
    homogeneous = tau2 <= 0  # DL truncates tau^2 at 0; statsmodels 0.15 does not
    df = len(effects) - 1
    i2 = max(0.0, (result.q - df) / result.q) if result.q > 0 else 0.0
    out = {}
    for method, name in METHODS.items():
        row = frame.loc[METHODS["fixed"] if homogeneous else name]
        out[method] = {
            "estimate": float(row["eff"]),
            "se": float(row["sd_eff"]),
            "ci_low": float(row["ci_low"]),
            "ci_high": float(row["ci_upp"]),
            "tau2": max(tau2, 0.0) if method == "random_dl" else 0.0,
            "i2": i2,
        }
    return out


def _equal_weights(effects: np.ndarray) -> dict[str, float] | None:
    """Each dataset's effect counts the same: their mean, a t-interval over the k datasets, and
    the interval a new dataset's effect falls in (t_{k-1} sd sqrt(1 + 1/k)); from 2 datasets."""
    k = len(effects)
    if k < 2:
        return None
    sd = float(np.std(effects, ddof=1))
    mean, se = float(effects.mean()), sd / np.sqrt(k)
    t = scipy_stats.t.ppf(1 - ALPHA / 2, k - 1)
    half_pi = t * sd * np.sqrt(1 + 1 / k)
    return {
        "estimate": mean, "se": se, "ci_low": mean - t * se, "ci_high": mean + t * se,
        "tau2": np.nan, "i2": np.nan, "pi_low": mean - half_pi, "pi_high": mean + half_pi,
    }  # fmt: skip


def _pooled_rows(rows: pd.DataFrame, rule: MarginRule) -> list[dict]:
    """The rows of one claim over ``rows`` (one per dataset), one per method."""
    effects = rows["mean_difference"].to_numpy(dtype=float)
    variances = (rows["sd_difference"].to_numpy(dtype=float) ** 2) / rows["n"].to_numpy()
    variances = np.where(variances > 0, variances, np.finfo(float).tiny)  # no spread: exact
    baseline = float(rows["mean_a"].mean())
    claim, claimed, margin = _claim_and_margin(rows.iloc[0], baseline, rule)
    k = len(rows)
    methods = _inverse_variance(effects, variances)
    for method in methods.values():
        pi = prediction_interval(method["estimate"], method["se"], method["tau2"], k)
        method |= {"pi_low": pi[0], "pi_high": pi[1]}
    if (equal := _equal_weights(effects)) is not None:
        methods["equal"] = equal
    keys = rows.iloc[0][["activation_a", "activation_b", "metric"]].to_dict()
    out = []
    for method, pooled in methods.items():
        df = k - 1 if method == "equal" else np.inf
        row = {**pooled, "method": method, "k": k, **_relative(pooled, baseline)}
        row |= {"margin": margin, "claimed": claimed}
        row["tost_p"] = pooled_tost_p(row["estimate"], row["se"], margin, df)
        row["mde_80"] = pooled_mde(row["se"], k if method == "equal" else None)
        row["verdict"] = verdict({**keys, **row}, claim, claimed)
        row["datasets"] = ", ".join(rows["dataset"].astype(str))
        out.append(row)
    return out


def _relative(row: dict, baseline: float) -> dict[str, float]:
    """b over a in % of a's mean: -(a - b) / mean_a."""
    scale = -100 / baseline if baseline else np.nan
    return {
        "baseline_mean": baseline,
        "relative_percent": row["estimate"] * scale,
        "relative_ci_low": row["ci_high"] * scale,
        "relative_ci_high": row["ci_low"] * scale,
    }


def meta_analysis(summary: pd.DataFrame, unlearned: pd.Series, rule: MarginRule) -> pd.DataFrame:
    """Per claim (``family_keys``) and scope: the fixed and random-effects pooled difference over
    the real datasets (``LEFT_OUT`` excepted), with heterogeneity, prediction interval,
    equivalence, power and verdict. ``unlearned``: per ``summary`` row, whether either
    activation did not learn there (left out of the ``learned`` scope)."""
    keys = family_keys(summary)
    real = ~summary["dataset"].isin(LEFT_OUT)
    rows = []
    for scope in SCOPES:
        chosen = summary[real & (~unlearned if scope == "learned" else True)]
        for values, group in chosen.groupby(keys, sort=True, dropna=False):
            named = dict(zip(keys, values, strict=True))
            rows += [{**named, "scope": scope, **r} for r in _pooled_rows(group, rule)]
    return pd.DataFrame(rows, columns=[*keys, *META_COLUMNS])


def unlearned_rows(summary: pd.DataFrame, unlearned_cells: pd.DataFrame) -> pd.Series:
    """Per ``summary`` row: whether activation a or b did not learn on that dataset (cells:
    dataset, the row keys and the activation, of ``learned.not_learned`` rows)."""
    flags = pd.Series(False, index=summary.index)
    if unlearned_cells.empty:
        return flags
    shared = [c for c in unlearned_cells.columns if c in summary.columns and c != "activation"]
    cells = {tuple(map(str, r)) for r in unlearned_cells[[*shared, "activation"]].to_numpy()}
    for side in ("activation_a", "activation_b"):
        keys = summary[[*shared, side]].astype(str).itertuples(index=False, name=None)
        flags |= pd.Series([k in cells for k in keys], index=summary.index)
    return flags


def forest_frames(
    summary: pd.DataFrame, meta: pd.DataFrame, metrics: Sequence[str], unlearned: pd.Series
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(studies, pooled) for ``plots.forest``: the real datasets (those where an activation did
    not learn marked: they are not pooled) and the ``learned`` pooled rows of each claim, in the
    ``metrics`` (e.g. best Dice), one panel per claim."""
    keys = family_keys(summary)

    def panel(frame: pd.DataFrame) -> pd.Series:
        parts = frame[keys].astype(str)
        losses = parts["loss"].map(tables.loss_label)
        metrics = parts["metric"].map(lambda m: tables.METRIC_NAMES.get(m, m))
        pair = parts["activation_a"] + " - " + parts["activation_b"]
        return pair + ", " + losses + ": " + metrics + " (a - b)"

    chosen = ~summary["dataset"].isin(LEFT_OUT) & summary["metric"].isin(metrics)
    label = summary["dataset"].astype(str).where(~unlearned, summary["dataset"] + " (not learned)")
    studies = summary[chosen].assign(panel=panel(summary[chosen]), label=label[chosen])
    studies = studies.rename(columns={"mean_difference": "estimate"})
    pooled = meta[(meta["scope"] == "learned") & meta["metric"].isin(metrics)]
    pooled = pooled.assign(panel=panel(pooled))
    columns = ["panel", "method", "estimate", "ci_low", "ci_high", "pi_low", "pi_high"]
    return (
        studies[["panel", "label", "estimate", "ci_low", "ci_high"]],
        pooled[[*columns, "margin", "claimed"]],
    )
