"""The paper's headline claims (Nieradzik et al. 2021) next to what the report's runs measure.

The paper averages each activation's Dice over four medical datasets. Here each real dataset's
mean (over its seeds and folds) counts once, and the synthetic set is left out of the average,
since it is not one of the kind of sets the paper's claim is about. The verdict reads the size of
the cross-dataset difference against the paper's and the Holm-adjusted paired tests per dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from segact.report.stats import FAMILY, SUMMARY_COLUMNS

LEFT_OUT: tuple[str, ...] = ("synthetic",)
"""Datasets the cross-dataset average leaves out (the paper averaged medical sets only)."""
ALPHA = 0.05
SIZE = "dataset.image_size"
"""The input size column: runs of one dataset at two sizes are two rows of a claim."""


@dataclass(frozen=True)
class Claim:
    """``b`` is ``relative_percent`` % above ``a`` in ``metric`` with ``loss``, per the paper."""

    loss: str
    a: str
    b: str
    metric: str
    relative_percent: float
    paper_a: float | None
    words: str


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "dice", "sigmoid", "arctan", "best_dice", 2.0, 0.7266,
        "Dice loss: arctan about 2 % above sigmoid (0.7266, mean of four medical datasets)",
    ),
    Claim(
        "bce", "sigmoid", "normal_cdf", "best_dice", 0.1, None,
        "BCE: normal CDF about 0.1 % above sigmoid on average, up to 1 % on some datasets",
    ),
)  # fmt: skip


def _verdict(
    relative: float, claimed: float, ahead: int, n: int, significant: int, against: int
) -> str:
    """Plain words: direction and size of the cross-dataset mean, then what the per-dataset
    paired tests can tell apart from noise."""
    if not np.isfinite(relative):
        return "no value"
    if relative <= 0:
        words = "other direction"
    elif relative >= claimed / 2:
        words = "same direction and size"
    else:
        words = "same direction, smaller"
    tests = f"ahead on {ahead} of {n} dataset(s); Holm p < {ALPHA}: "
    tests += f"{significant} for, {against} against"
    if significant == against == 0:
        return f"not detectable here ({words}); {tests}"
    replicates = "replicates" if relative >= claimed / 2 and not against else "does not replicate"
    return f"{replicates} ({words}); {tests}"


def _sign_test(ahead: int, behind: int) -> float:
    """Two-sided sign test over the datasets (ties left out): could b be ahead on this many of
    them by chance? 5 of 5 gives 0.0625, so five datasets alone never reach p < 0.05."""
    if ahead + behind == 0:
        return float("nan")
    return float(binomtest(ahead, ahead + behind, 0.5).pvalue)


def _extra_keys(summary: pd.DataFrame) -> list[str]:
    """Pair keys besides dataset and loss (e.g. a differing ``trainer.lr``): one row each."""
    fixed = {*FAMILY, *SUMMARY_COLUMNS, "dataset", "loss"}
    return [c for c in summary.columns if c not in fixed]


def _claim_rows(summary: pd.DataFrame, claim: Claim) -> list[dict[str, object]]:
    chosen = summary[
        (summary["activation_a"] == claim.a)
        & (summary["activation_b"] == claim.b)
        & (summary["loss"] == claim.loss)
        & summary["metric"].isin([claim.metric, f"paper_{claim.metric}"])
        & ~summary["dataset"].isin(LEFT_OUT)
    ]
    if chosen.empty:
        return []
    extra = _extra_keys(chosen)
    groups = chosen.groupby(extra, dropna=False, sort=True) if extra else [((), chosen)]
    rows = []
    for values, group in groups:
        mean_a, mean_b = group["mean_a"].mean(), group["mean_b"].mean()
        relative = 100 * (mean_b - mean_a) / mean_a
        b_ahead = group["mean_b"] > group["mean_a"]
        b_behind = group["mean_b"] < group["mean_a"]
        held = group["wilcoxon_p_holm"] < ALPHA
        rows.append(
            {
                "claim": claim.words,
                **dict(zip(extra, values if extra else (), strict=True)),
                "metric": group["metric"].iloc[0],
                "datasets": ", ".join(sorted(group["dataset"].astype(str))),
                "mean_a": mean_a,
                "mean_b": mean_b,
                "relative_percent": relative,
                "paper_mean_a": claim.paper_a,
                "paper_relative_percent": claim.relative_percent,
                "sign_test_p": _sign_test(int(b_ahead.sum()), int(b_behind.sum())),
                "verdict": _verdict(
                    relative,
                    claim.relative_percent,
                    int(b_ahead.sum()),
                    len(group),
                    int((held & b_ahead).sum()),
                    int((held & ~b_ahead).sum()),
                ),
            }
        )
    return rows


def _largest_size(summary: pd.DataFrame) -> pd.DataFrame | None:
    """Each dataset's rows at its largest input size, the size column dropped so that the
    datasets average together; None unless the runs have more than one size."""
    if SIZE not in summary or summary[SIZE].nunique(dropna=False) < 2:
        return None
    size = pd.to_numeric(summary[SIZE], errors="coerce")
    largest = size.groupby(summary["dataset"]).transform("max")
    return summary[size == largest].drop(columns=SIZE)


def _matches(summary: pd.DataFrame, keys: pd.DataFrame | None) -> pd.Series:
    """Rows of ``summary`` whose values in ``keys``' columns (dataset, maybe input size) are one
    of ``keys``' rows."""
    if keys is None or keys.empty:
        return pd.Series(False, index=summary.index)
    columns = [c for c in keys.columns if c in summary]
    wanted = set(keys[columns].astype(str).itertuples(index=False, name=None))
    found = summary[columns].astype(str).itertuples(index=False, name=None)
    return pd.Series([row in wanted for row in found], index=summary.index)


def compare_with_paper(
    summary: pd.DataFrame, degenerate: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per claim (and per differing extra setting) whose pair and loss the runs have:
    our cross-dataset means of a and b, b over a in %, the paper's figures, and a verdict.

    Scopes: every real dataset; where runs have several input sizes, also each dataset at its
    largest (the scale where its structures survive best) as one average; and each again
    without the ``degenerate`` keys (rows of dataset and, where given, input size whose folds
    learned a trivial mask), where that leaves a different set."""
    if summary.empty:
        return pd.DataFrame()
    trivial = _matches(summary, degenerate)
    scopes = {"real datasets": summary}
    largest = _largest_size(summary)
    if largest is not None:
        scopes["real datasets, each at its largest input size"] = largest
    for name, chosen in list(scopes.items()):
        kept = chosen[~trivial.loc[chosen.index]]
        if all(not kept.index.equals(other.index) for other in scopes.values()):
            scopes[f"{name}, without degenerate folds"] = kept
    rows = [
        {"scope": scope, **row}
        for scope, chosen in scopes.items()
        for claim in CLAIMS
        for row in _claim_rows(chosen, claim)
    ]
    return pd.DataFrame(rows)
