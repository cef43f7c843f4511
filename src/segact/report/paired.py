"""The report's comparison of activations: the paired tests per dataset, their pooled estimates
(meta-analysis), and the paper's claims with verdicts; each section computed, written to its CSV
and put in words."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from segact.io import write_csv
from segact.report import claims, meta, stats
from segact.report.sections import as_markdown, drop_constant
from segact.runs.identity import pair_keys

SHOWN = (
    "n",
    "mean_a",
    "mean_b",
    "mean_difference",
    "ci_low",
    "ci_high",
    "t_p_holm",
    "wilcoxon_p_holm",
    "margin",
    "tost_p",
    "mde_80",
    "verdict",
)
"""The paired summary's columns shown in report.md (paired_summary.csv has them all)."""
FOREST_PNG = "forest.png"


def paired_frames(
    used: pd.DataFrame, pairs: Sequence[tuple[str, str]], aggregate: str = "selected"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-pair differences, summary per pair x group x metric) over the folds used, of the
    metrics the ``aggregate`` tables show."""
    keys = pair_keys(used)
    metrics = stats.PAIR_METRICS_BY_AGGREGATION[aggregate]
    frames = [stats.paired_differences(used, a, b, keys, metrics) for a, b in pairs]
    if not frames:  # no pair asked for: the files keep their columns
        frames = [stats.paired_differences(used.iloc[:0], "", "", keys, metrics)]
    differences = pd.concat(frames, ignore_index=True)
    return differences, stats.summarize_pairs(differences, keys)


def paired_sections(
    used: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    aggregate: str,
    rule: claims.MarginRule,
    out: Path,
) -> tuple[pd.DataFrame, list[str]]:
    """paired_differences.csv and paired_summary.csv (with margin, TOST, MDE and verdict per
    dataset) and their words; returns the summary (the pooled estimates read it)."""
    differences, summary = paired_frames(used, pairs, aggregate)
    summary = meta.judge_datasets(summary, differences, rule)
    write_csv(differences, out / "paired_differences.csv")
    write_csv(summary, out / "paired_summary.csv")
    return summary, _paired_words(summary, pairs, rule)


def _paired_words(
    summary: pd.DataFrame, pairs: Sequence[tuple[str, str]], rule: claims.MarginRule
) -> list[str]:
    lines = [
        "## Paired comparison, per dataset",
        "",
        "Per pair of runs equal in everything but the activation (same seed and fold): the "
        "difference a - b; its mean with the paired t-interval (95 %) and the paired t-test, "
        "the Wilcoxon signed-rank test as a second opinion, both Holm-adjusted over the datasets "
        "of one pair, loss and metric (`t_p_holm`, `wilcoxon_p_holm`); the equivalence margin "
        f"({rule.words()}), the TOST p against it, and mde_80: the smallest difference these "
        "pairs detect with 80 % power. paired_summary.csv has every column (sd, unadjusted p, "
        "the smallest Wilcoxon p reachable with n pairs).",
        "",
        claims.VERDICT_RULE,
        "",
    ]
    if summary.empty:
        found = ", ".join(f"{a} vs {b}" for a, b in pairs)
        return [*lines, f"No run pairs found for {found}.", ""]
    for (a, b, loss, metric), table in summary.groupby(list(stats.FAMILY), sort=False):
        key_columns = [
            c for c in table.columns if c not in (*stats.SUMMARY_COLUMNS, *meta.JUDGEMENT_COLUMNS)
        ]
        shown = table[[*key_columns, *SHOWN]].drop(columns=list(stats.FAMILY))
        shown = drop_constant(shown, keep=("dataset",))
        lines += [f"### {a} - {b}, loss {loss}: {metric}", "", as_markdown(shown), ""]
    return lines


def meta_sections(
    summary: pd.DataFrame, unlearned: pd.Series, rule: claims.MarginRule, out: Path
) -> tuple[pd.DataFrame, list[str]]:
    """meta_analysis.csv and its words: each claim pooled over the real datasets."""
    if summary.empty:
        return pd.DataFrame(), []
    pooled = meta.meta_analysis(summary, unlearned, rule)
    if pooled.empty:  # no real dataset (the synthetic set is never pooled)
        return pooled, []
    write_csv(pooled, out / "meta_analysis.csv")
    shown = pooled[pooled["scope"] == "learned"].drop(
        columns=["scope", "se", "relative_ci_low", "relative_ci_high", "claimed"]
    )
    return pooled, [
        "## Pooled over datasets (meta-analysis)",
        "",
        f"Each real dataset ({', '.join(claims.LEFT_OUT)} left out) counts once, at its "
        "headline input size, with its mean paired difference and variance sd^2 / n; pooled "
        "by inverse-variance weights (`fixed`) and by DerSimonian-Laird random effects "
        "(`random_dl`, tau2: the between-dataset variance, i2: its share of the total), with "
        "the 95 % CI, the 95 % prediction interval for a new dataset (from 3 datasets), b over "
        "a in % of a's mean (relative_percent), the pooled TOST p against the margin and "
        "mde_80. Shown: the datasets where both activations learned (scope `learned`); "
        "meta_analysis.csv also has scope `all`.",
        "",
        as_markdown(drop_constant(shown, keep=("loss", "metric"))),
        "",
    ]


def _sign_test(summary: pd.DataFrame, claim: claims.Claim, datasets: list[str]) -> float:
    """Two-sided sign test over the pooled datasets (ties left out): b ahead on how many?"""
    rows = summary[
        (summary["activation_a"] == claim.a)
        & (summary["activation_b"] == claim.b)
        & (summary["loss"] == claim.loss)
        & (summary["metric"].str.removeprefix("paper_") == claim.metric)
        & summary["dataset"].astype(str).isin(datasets)
    ]
    ahead, behind = (
        int((rows["mean_difference"] < 0).sum()),
        int((rows["mean_difference"] > 0).sum()),
    )
    return float(binomtest(ahead, ahead + behind, 0.5).pvalue) if ahead + behind else np.nan


def claims_table(pooled: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per claim the runs have, scope and method: the pooled numbers next to the
    paper's, and the sign test over the same datasets."""
    rows = []
    for claim in claims.CLAIMS:
        chosen = pooled[
            (pooled["activation_a"] == claim.a)
            & (pooled["activation_b"] == claim.b)
            & (pooled["loss"] == claim.loss)
            & (pooled["metric"].str.removeprefix("paper_") == claim.metric)
        ]
        for _, row in chosen.iterrows():
            datasets = row["datasets"].split(", ")
            rows.append(
                {
                    "claim": claim.words,
                    **row[["metric", "scope", "method", "k", "datasets"]].to_dict(),
                    "mean_a": row["baseline_mean"],
                    **row[["relative_percent", "relative_ci_low", "relative_ci_high"]].to_dict(),
                    "paper_mean_a": claim.paper_a,
                    "paper_relative_percent": claim.relative_percent,
                    "sign_test_p": _sign_test(summary, claim, datasets),
                    "verdict": row["verdict"],
                }
            )
    return pd.DataFrame(rows)


def claims_sections(pooled: pd.DataFrame, summary: pd.DataFrame, out: Path) -> list[str]:
    """paper_claims.csv and its words."""
    table = claims_table(pooled, summary) if not pooled.empty else pd.DataFrame()
    if table.empty:
        return []
    write_csv(table, out / "paper_claims.csv")
    return [
        "## The paper's claims",
        "",
        f"The paper averaged four medical datasets ({', '.join(claims.PAPER_DATASETS)}); of "
        "these only Kvasir-SEG is among this replication's datasets, so its pooled figures "
        "are over other datasets than the paper's. relative_percent = b over a in % of a's "
        "mean, with its 95 % CI; sign_test_p: two-sided sign test over the pooled datasets.",
        "",
        as_markdown(table.drop(columns=["claim"]).assign(claim=table["claim"].str[:40])),
        "",
    ]


def forest_sections(
    summary: pd.DataFrame, pooled: pd.DataFrame, unlearned: pd.Series, out: Path
) -> list[str]:
    """forest.png: each real dataset's best-Dice difference with its CI, the pooled estimates
    as diamonds, zero, the margin band and the paper's claimed size."""
    if pooled.empty:
        return []
    from segact.report import plots  # matplotlib only when a report is drawn

    best = [m for m in summary["metric"].unique() if m.removeprefix("paper_") == "best_dice"]
    studies, diamonds = meta.forest_frames(summary, pooled, best, unlearned)
    if studies.empty:
        return []
    plots.forest(studies, diamonds, out / FOREST_PNG)
    caption = (
        "Each real dataset's mean paired difference a - b in best Dice (square) with its 95 % "
        "t-interval over its pairs (seeds x folds), the pooled estimates (diamonds spanning "
        "their 95 % CI; fixed and random effects, the thin line the prediction interval), the "
        "equivalence margin (green band) and the paper's claimed difference (dashed)."
    )
    return ["## Forest plot", "", f"![{FOREST_PNG}]({FOREST_PNG})", "", f"*{caption}*", ""]
