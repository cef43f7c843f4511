"""The report's paired comparisons, one per factor and pair of its levels (``select``): the
paired tests per dataset, their pooled estimates (meta-analysis) with a margin sensitivity table,
the seeds that would settle what is inconclusive, the paper's claims (``--paper-claims`` only),
the forest plot, and report.md's opening sentences: each section computed, written to its CSV
and put in words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from segact.io import write_csv
from segact.report import claims, meta, stats
from segact.report.sections import as_markdown
from segact.report.stats import COMPARISON, Comparison
from segact.report.tables import METRIC_NAMES, loss_label
from segact.runs import schema

SHOWN = (
    *stats.PAIRED_MEANS,
    "p_holm",
    "wilcoxon_p_holm",
    *meta.JUDGEMENT_COLUMNS,
)
"""The paired summary's columns shown in report.md (paired_summary.csv has them all)."""
POOLED_SHOWN = (
    "method",
    "k",
    "estimate",
    *meta.POOLED_INTERVALS,
    "relative_percent",
    "margin",
    "claimed",
    "tost_p",
    "mde_80",
    "verdict",
)
FOREST_PNG = "forest.png"
METHOD_WORDS = {
    "random_hksj": "random effects with the Hartung-Knapp-Sidik-Jonkman interval",
    "random_dl": "DerSimonian-Laird random effects",
    "fixed": "inverse-variance fixed effect",
    "equal": "equal weights",
}
LISTED_SEEDS = 6
"""More seeds to add than this are written as Hydra's ``range(start,stop)``."""


@dataclass(frozen=True)
class Framing:
    """How a report judges its comparisons: the metrics (``--aggregate``), the margin
    (``--margin``) and whether the paper's claims frame them (``--paper-claims``)."""

    aggregate: str = "selected"
    rule: claims.MarginRule = field(default_factory=claims.MarginRule)
    paper_claims: bool = False

    @property
    def primary(self) -> str:
        """The metric the opening sentences and the forest plot read."""
        return schema.PAPER_BEST_DICE if self.aggregate == "paper" else schema.BEST_DICE


@dataclass
class Result:
    """One comparison: its pair keys, differences, judged summary, which summary rows a level
    did not learn in, and its pooled rows (none over fewer than 2 real datasets)."""

    comparison: Comparison
    keys: list[str]
    differences: pd.DataFrame
    summary: pd.DataFrame
    unlearned: pd.Series
    pooled: pd.DataFrame

    @property
    def others(self) -> list[str]:
        """The keys besides the dataset: a comparison splits into one family per value."""
        return [k for k in self.keys if k != "dataset"]


def compare(
    used: pd.DataFrame,
    comparisons: Sequence[Comparison],
    unlearned_cells: pd.DataFrame,
    framing: Framing,
) -> list[Result]:
    """Each comparison over the folds used: differences, summary, verdicts and pooled rows.
    ``unlearned_cells``: the ``learned.learned_table`` rows that did not learn."""
    metrics = stats.PAIR_METRICS_BY_AGGREGATION[framing.aggregate]
    results = []
    for comparison in comparisons:
        keys = stats.comparison_keys(used, comparison.column)
        differences = stats.paired_differences(used, comparison, keys, metrics)
        summary = stats.summarize_pairs(differences, keys)
        summary = meta.judge_datasets(summary, framing.rule, framing.paper_claims)
        unlearned = meta.unlearned_rows(summary, unlearned_cells, comparison.column)
        pooled = meta.meta_analysis(summary, unlearned, framing.rule, framing.paper_claims)
        results.append(Result(comparison, keys, differences, summary, unlearned, pooled))
    return results


def stack(frames: Sequence[pd.DataFrame], results: Sequence[Result]) -> pd.DataFrame:
    """The frames of several comparisons as one file (``stats.stack``)."""
    return stats.stack(frames, [k for r in results for k in r.keys])


def summary_of(results: Sequence[Result]) -> pd.DataFrame:
    """Every comparison's judged paired summary, as paired_summary.csv has them."""
    return stack([r.summary for r in results], results)


def _empty_files(used: pd.DataFrame, framing: Framing) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(differences, summary) without a pair, with their columns."""
    none = Comparison("activation", "", "")
    metrics = stats.PAIR_METRICS_BY_AGGREGATION[framing.aggregate]
    differences = stats.paired_differences(used.iloc[:0], none, ["dataset"], metrics)
    summary = stats.summarize_pairs(differences, ["dataset"])
    return differences, meta.judge_datasets(summary, framing.rule, framing.paper_claims)


def _title(result: Result, values: Sequence[object]) -> str:
    """``loss: dice - bce, activation sigmoid``: a comparison and its other keys' values."""
    parts = [result.comparison.words()]
    for key, value in zip(result.others, values, strict=True):
        parts.append(loss_label(value) if key == "loss" else f"{key} {value}")
    return ", ".join(parts)


def _families(result: Result, frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, metric, rows) per family of ``frame`` (a summary or pooled frame of ``result``)."""
    by = [*result.others, "metric"]
    return [
        (_title(result, values[:-1]), str(values[-1]), rows)
        for values, rows in frame.groupby(by, sort=False, dropna=False)
    ]


def paired_sections(
    results: Sequence[Result], used: pd.DataFrame, framing: Framing, out: Path
) -> list[str]:
    """paired_differences.csv and paired_summary.csv, and their words."""
    differences = stack([r.differences for r in results], results)
    summary = summary_of(results)
    if summary.empty:
        differences, summary = _empty_files(used, framing)
    write_csv(differences, out / "paired_differences.csv")
    write_csv(summary, out / "paired_summary.csv")
    lines = [
        "## Paired comparison, per dataset",
        "",
        "Per factor and pair of its levels a, b: runs equal in everything else (same seed and "
        "fold) give the difference a - b. Its mean with the 95 % CI and p of the corrected "
        "resampled t (Nadeau & Bengio 2003: the folds of a cross-validation share training "
        "data, so the variance of the mean is s^2 (1/n + n_test/n_train), not s^2 / n; "
        "paired_summary.csv keeps the plain paired t as plain_ci_low/high, plain_t_p), the "
        "Wilcoxon signed-rank test as a second opinion, both Holm-adjusted over one family: the "
        "real datasets of one comparison and metric (`p_holm`, `wilcoxon_p_holm`; the synthetic "
        f"set is in no family); the margin m ({framing.rule.words()}), the TOST p against it, "
        "mde_80 (the smallest difference these pairs detect with 80 % power) and seeds_needed "
        "(below).",
        "",
        claims.VERDICT_RULE,
        "",
    ]
    if framing.paper_claims:
        lines += [claims.CLAIM_VERDICT_RULE, ""]
    if not any(not r.summary.empty for r in results):
        found = "; ".join(r.comparison.words() for r in results) or "no comparison"
        return [*lines, f"No run pairs found for {found}.", ""]
    for result in results:
        for title, metric, table in _families(result, result.summary):
            shown = [c for c in ("dataset", *SHOWN) if c in table.columns]
            lines += [
                f"### {title}: {METRIC_NAMES.get(metric, metric)}",
                "",
                as_markdown(table[shown]),
                "",
            ]
    return [*lines, *seeds_lines(results, used, framing)]


def seed_override(present: Sequence[int], total: int) -> str:
    """The override that adds seeds after ``present`` up to ``total`` seeds in all."""
    start = max(present, default=-1) + 1
    stop = start + total - len(present)
    if stop - start > LISTED_SEEDS:
        return f"trainer.seed='range({start},{stop})'"
    return "trainer.seed=" + ",".join(map(str, range(start, stop)))


def _seeds_sentence(rows: pd.DataFrame, present: Sequence[int]) -> str:
    """What more seeds would do for a family's inconclusive rows."""
    settle = rows[np.isfinite(rows["seeds_needed"].astype(float))]
    never = rows[~rows.index.isin(settle.index)]
    parts = []
    if not settle.empty:
        needed = int(settle["seeds_needed"].max())
        names = ", ".join(settle["dataset"].astype(str))
        if needed <= len(present):
            parts.append(
                f"{names}: the {len(present)} seeds already give 80 % power at the margin; the "
                "difference lies near it"
            )
        else:
            parts.append(
                f"{names}: {needed} seeds (now {len(present)}) give 80 % power at the margin; "
                f"add them with `segact-train -m <the sweep's overrides> "
                f"{seed_override(present, needed)}`"
            )
    if not never.empty:
        parts.append(
            f"{', '.join(never['dataset'].astype(str))}: more seeds cannot settle this at this "
            "margin (the term n_test/n_train of the variance does not shrink with seeds)"
        )
    return "; ".join(parts)


def seeds_lines(results: Sequence[Result], used: pd.DataFrame, framing: Framing) -> list[str]:
    """Per family with inconclusive datasets in the primary metric: how many seeds (at the same
    folds) would give 80 % power at the margin, and the override that adds them."""
    present = sorted(int(s) for s in pd.to_numeric(used["seed"], errors="coerce").dropna().unique())
    lines = []
    for result in results:
        primary = result.summary[result.summary["metric"] == framing.primary]
        open_rows = primary[primary["verdict"] == "inconclusive"]
        for title, _, rows in _families(result, open_rows):
            lines.append(f"- {title}: {_seeds_sentence(rows, present)}.")
    if not lines:
        return []
    return [
        f"### Seeds that would settle the inconclusive {METRIC_NAMES[framing.primary]} rows",
        "",
        "With s seeds of k folds the corrected variance is s_d^2 (1/(s k) + n_test/n_train): "
        "its second term does not shrink with seeds, so a margin below what it allows stays "
        "out of reach.",
        "",
        *lines,
        "",
    ]


def meta_sections(results: Sequence[Result], out: Path) -> list[str]:
    """meta_analysis.csv, margin_sensitivity.csv and their words: each family pooled over its
    real datasets (from 2), with the margin sensitivity table under each."""
    pooled = stack([r.pooled for r in results], results)
    if pooled.empty:
        return []
    sensitivity = meta.margin_sensitivity(pooled)
    write_csv(pooled, out / "meta_analysis.csv")
    write_csv(sensitivity, out / "margin_sensitivity.csv")
    lines = [
        "## Pooled over datasets (meta-analysis)",
        "",
        f"Each real dataset ({', '.join(stats.LEFT_OUT)} left out) counts once, at its headline "
        "input size, with its mean paired difference and the corrected variance; pooled by "
        "DerSimonian-Laird random effects with the Hartung-Knapp-Sidik-Jonkman interval "
        f"(`random_hksj`, t on k - 1 df: the headline below {meta.HKSJ_BELOW} datasets), with "
        "a normal interval (`random_dl`), by inverse-variance weights (`fixed`) and with equal "
        "weights (`equal`). tau2: the between-dataset variance, i2: its share of the total; the "
        "95 % prediction interval for a new dataset from 3 datasets on; relative_percent: a - b "
        "in % of b's mean. Shown: the datasets where both levels learned (scope `learned`; "
        "meta_analysis.csv also has scope `all`). Under each: the headline's TOST p and verdict "
        "at margins of " + ", ".join(f"{p:g}" for p in claims.SENSITIVITY_PERCENT) + " % of b's "
        "mean.",
        "",
    ]
    for result in results:
        learned = (
            result.pooled[result.pooled["scope"] == "learned"]
            if not result.pooled.empty
            else result.pooled
        )
        for title, metric, rows in _families(result, learned):
            shown = rows[[c for c in POOLED_SHOWN if c in rows.columns]]
            chosen = sensitivity.merge(rows[[*result.others, "metric"]].drop_duplicates())
            lines += [
                f"### {title}: {METRIC_NAMES.get(metric, metric)}, over {rows['datasets'].iloc[0]}",
                "",
                as_markdown(shown),
                "",
                "Margin sensitivity (headline method):",
                "",
                as_markdown(chosen[["margin_percent", "margin", "tost_p", "verdict"]]),
                "",
            ]
    return lines


def _sign_test(result: Result, row: pd.Series) -> float:
    """Two-sided sign test over the pooled datasets of ``row`` (ties left out)."""
    datasets = str(row["datasets"]).split(", ")
    summary = result.summary
    chosen = summary[
        (summary["metric"] == row["metric"]) & summary["dataset"].astype(str).isin(datasets)
    ]
    for key in result.others:
        chosen = chosen[chosen[key].astype(str) == str(row[key])]
    below, above = (
        int((chosen["mean_difference"] < 0).sum()),
        int((chosen["mean_difference"] > 0).sum()),
    )
    return float(binomtest(below, below + above, 0.5).pvalue) if below + above else np.nan


def claims_table(results: Sequence[Result]) -> pd.DataFrame:
    """One row per pooled row about a claim of the paper (scope and method): the pooled numbers
    next to the paper's, and the sign test over the same datasets."""
    rows = []
    for result in results:
        pooled = result.pooled
        if pooled.empty or "claimed" not in pooled.columns:
            continue
        for _, row in pooled[np.isfinite(pooled["claimed"].astype(float))].iterrows():
            claim, _ = claims.find_claim(
                row["factor"], row["a"], row["b"], row.get("loss"), row["metric"]
            )
            assert claim is not None  # claimed is a number only for a claim
            at_claim = meta.judge_pooled(row.to_dict(), abs(row["claimed"]))
            rows.append(
                {
                    "claim": claim.words,
                    **row[[*COMPARISON, "metric", "scope", "method", "k", "datasets"]].to_dict(),
                    "relative_percent": row["relative_percent"],
                    "relative_ci_low": row["relative_ci_low"],
                    "relative_ci_high": row["relative_ci_high"],
                    "claimed_relative_percent": 100 * row["claimed"] / row["baseline_mean"],
                    "tost_p_at_claim": at_claim["tost_p"],
                    "paper_mean_a": claim.paper_a,
                    "paper_relative_percent": claim.relative_percent,
                    "sign_test_p": _sign_test(result, row),
                    "verdict": row["verdict"],
                }
            )
    return pd.DataFrame(rows)


def claims_sections(results: Sequence[Result], framing: Framing, out: Path) -> list[str]:
    """paper_claims.csv and its words (``--paper-claims`` only)."""
    table = claims_table(results) if framing.paper_claims else pd.DataFrame()
    if table.empty:
        return []
    write_csv(table, out / "paper_claims.csv")
    return [
        "## The paper's claims",
        "",
        f"The paper averaged four medical datasets ({', '.join(claims.PAPER_DATASETS)}); of "
        "these only Kvasir-SEG is among this replication's datasets, so its pooled figures "
        "are over other datasets than the paper's. relative_percent: a - b in % of b's mean, "
        "with its 95 % CI, next to the claim in the same terms (claimed_relative_percent) and "
        "as the paper wrote it (paper_relative_percent: b above a in % of a); tost_p_at_claim: "
        "the TOST p with the claimed size as the margin (below 0.05: the difference is smaller "
        "than claimed); sign_test_p: two-sided sign test over the pooled datasets.",
        "",
        as_markdown(table.drop(columns=["claim"]).assign(claim=table["claim"].str[:40])),
        "",
    ]


def forest_sections(results: Sequence[Result], framing: Framing, out: Path) -> list[str]:
    """forest.png: each real dataset's difference in the primary metric with its CI, the pooled
    estimates as diamonds (from 2 datasets), zero, the margin band and (``--paper-claims``) the
    paper's claimed size."""
    frames = [
        meta.forest_frames(r.summary, r.pooled, [framing.primary], r.unlearned)
        for r in results
        if not r.summary.empty
    ]
    shown = [studies for studies, _ in frames if not studies.empty]
    if not shown:  # only synthetic or unlearned datasets: nothing to draw
        return []
    studies = pd.concat(shown, ignore_index=True)
    from segact.report import plots  # matplotlib only when a report is drawn

    pooled = pd.concat([p for _, p in frames if not p.empty] or [pd.DataFrame()], ignore_index=True)
    plots.forest(studies, pooled, out / FOREST_PNG)
    parts = [
        "Each real dataset's mean paired difference a - b (square) with its 95 % CI (corrected "
        "resampled t over its pairs)"
    ]
    if not pooled.empty:
        parts.append(
            "where 2 or more datasets are pooled, the headline and the fixed-effect estimates "
            "(diamonds spanning their 95 % CI, the thin line the prediction interval from 3 "
            "datasets)"
        )
    parts.append("zero and the equivalence margin (green band)")
    if "claimed" in studies.columns and studies["claimed"].notna().any():
        parts.append("the paper's claimed difference (dashed)")
    caption = "; ".join(parts) + "."
    return ["## Forest plot", "", f"![{FOREST_PNG}]({FOREST_PNG})", "", f"*{caption}*", ""]


def _interval(estimate: float, low: float, high: float) -> str:
    return f"{estimate:+.4f} [{low:+.4f}, {high:+.4f}]"


def _verdict_words(verdict: str, comparison: Comparison, margin: float) -> str:
    if verdict == "a better":
        return f"{comparison.a} better"
    if verdict == "b better":
        return f"{comparison.b} better"
    if verdict == "inconclusive":
        return f"inconclusive at ±{margin:.3g}"
    return verdict


def _dataset_sentence(c: Comparison, title: str, name: str, row: pd.Series) -> str:
    """One dataset's estimate in words (no interval: said why)."""
    pairs = f"{row['n']} pairs ({row['seeds']} seed(s) x {row['folds']} folds)"
    head = f"- {title}, {name}, dataset {row['dataset']}: a - b = "
    if not (np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"])):
        return f"{head}{row['mean_difference']:+.4f} over {pairs}, every pair alike: no interval."
    words = _verdict_words(row["verdict"], c, row["margin"])
    if row["verdict"] == "inconclusive":
        needed = row.get("seeds_needed", np.nan)
        words += (
            f"; {int(needed)} seeds would give 80 % power at the margin"
            if np.isfinite(needed)
            else "; more seeds cannot settle this at this margin"
        )
    return (
        f"{head}{_interval(row['mean_difference'], row['ci_low'], row['ci_high'])}, the mean "
        f"paired difference over {pairs}; 95 % CI of the corrected resampled t: {words}."
    )


def _opening(result: Result, title: str, metric: str, rows: pd.DataFrame) -> list[str]:
    """One sentence: the pooled headline where 2 or more real datasets are pooled, else each
    dataset's mean paired difference."""
    c, name = result.comparison, METRIC_NAMES.get(metric, metric)
    pooled = result.pooled
    if not pooled.empty:
        chosen = pooled[
            (pooled["scope"] == "learned")
            & pooled["headline"].astype(bool)
            & (pooled["metric"] == metric)
        ]
        for key in result.others:
            chosen = chosen[chosen[key].astype(str) == str(rows[key].iloc[0])]
        if not chosen.empty:
            row = chosen.iloc[0]
            return [
                f"- {title}, {name}: a - b = "
                f"{_interval(row['estimate'], row['ci_low'], row['ci_high'])}, the mean paired "
                f"difference pooled over {row['k']} datasets ({row['datasets']}) by "
                f"{METHOD_WORDS[row['method']]} (95 % CI), {row['relative_percent']:+.2f} % of "
                f"{c.b}'s mean: {_verdict_words(row['verdict'], c, row['margin'])}."
            ]
    return [_dataset_sentence(c, title, name, row) for _, row in rows.iterrows()]


PAPER_PROTOCOL_WARNING = (
    "These runs used `eval.protocol=paper`: each fold's epoch and threshold were chosen on the "
    "very images it reports, so its Dice is optimistic (each level's, and their difference can "
    "be too). For an unbiased estimate run the comparison with `eval.protocol=holdout` (epoch "
    "and threshold chosen on an inner split, Dice read on the untouched fold)."
)


def opening_lines(results: Sequence[Result], used: pd.DataFrame, framing: Framing) -> list[str]:
    """report.md's first words: per comparison (and its other keys), the estimate to quote in
    the primary metric and what it is; a warning where the protocol makes it optimistic."""
    sentences = []
    for result in results:
        primary = result.summary[result.summary["metric"] == framing.primary]
        for title, metric, rows in _families(result, primary):
            sentences += _opening(result, title, metric, rows)
    paper = "protocol" in used.columns and bool((used["protocol"].astype(str) == "paper").any())
    if not sentences and not paper:
        return []
    return [
        "## What to quote",
        "",
        *sentences,
        *([""] if sentences else []),
        *([PAPER_PROTOCOL_WARNING, ""] if paper else []),
    ]


def comparison_sections(
    results: Sequence[Result], used: pd.DataFrame, framing: Framing, out: Path
) -> list[str]:
    """Every section of the comparisons, in report order."""
    return [
        *paired_sections(results, used, framing, out),
        *meta_sections(results, out),
        *claims_sections(results, framing, out),
        *forest_sections(results, framing, out),
    ]
