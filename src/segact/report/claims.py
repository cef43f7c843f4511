"""The paper's headline claims (Nieradzik et al. 2021), the equivalence margin of a comparison,
and the verdict a difference earns against them.

A difference here is always a - b of the paired comparison (``paired_summary.csv``); the paper
claims b ahead of a, i.e. a negative difference in Dice of ``relative_percent`` % of a's mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from segact.errors import ReportError
from segact.evaluation.aggregation import LOWER_IS_BETTER

LEFT_OUT: tuple[str, ...] = ("synthetic",)
"""Datasets no pooled estimate or claim counts (the paper averaged medical sets only)."""
DEFAULT_MARGIN_PERCENT = 1.0
"""Without a claim (or ``--margin``): the equivalence margin, in % of the baseline's mean."""
PAPER_DATASETS = ("ACDC", "ISLES 2018", "Kvasir-SEG", "MSD Prostate")


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

    def matches(self, a: str, b: str, loss: str, metric: str) -> bool:
        return (a, b, loss) == (self.a, self.b, self.loss) and metric.removeprefix(
            "paper_"
        ) == self.metric

    def claimed_difference(self, baseline_mean: float) -> float:
        """The claim as a - b in the metric's units: negative, b ahead."""
        return -self.relative_percent / 100 * baseline_mean


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


def find_claim(a: str, b: str, loss: str, metric: str) -> Claim | None:
    return next((c for c in CLAIMS if c.matches(a, b, loss, metric)), None)


@dataclass(frozen=True)
class MarginRule:
    """``--margin``: ``None`` (the claim's size, else ``DEFAULT_MARGIN_PERCENT`` %), ``"2%"``
    (relative to the baseline activation's mean) or ``"0.01"`` (absolute, the metric's units)."""

    spec: str | None = None

    def __post_init__(self) -> None:
        if self.spec is not None and not re.fullmatch(r"\d+(\.\d*)?%?", self.spec.strip()):
            raise ReportError(
                f"--margin {self.spec}: give a percentage of the baseline's mean (e.g. 2%) "
                "or an absolute difference (e.g. 0.01)"
            )

    def margin(self, claim: Claim | None, baseline_mean: float) -> float:
        if self.spec is None:
            percent = claim.relative_percent if claim else DEFAULT_MARGIN_PERCENT
            return abs(percent / 100 * baseline_mean)
        text = self.spec.strip()
        if text.endswith("%"):
            return abs(float(text[:-1]) / 100 * baseline_mean)
        return float(text)

    def words(self) -> str:
        if self.spec is None:
            return (
                "the paper's claimed size where it made a claim (2 % of the baseline's mean for "
                f"the Dice loss, 0.1 % for BCE), else {DEFAULT_MARGIN_PERCENT:g} % of it"
            )
        return f"--margin {self.spec}" + (" of the baseline's mean" if "%" in self.spec else "")


VERDICT_RULE = (
    "Verdicts read the 95 % CI of a - b (per dataset: paired t; pooled: the meta-analysis) and "
    "the TOST p against the margin: **replicates**: the CI excludes 0 on the paper's side and "
    "includes the paper's size; **same direction, smaller** (or **larger**): it excludes 0 on "
    "the paper's side and excludes the paper's size; **opposite**: it excludes 0 on the other "
    "side; **excluded (equivalent within ±margin)**: it includes 0 and TOST p < 0.05 (the 90 % "
    "CI lies inside ±margin); **inconclusive**: none of these (the MDE says what the design "
    "could have seen). Without a claim: **<activation> ahead**, **equivalent within ±margin** "
    "or **inconclusive**."
)


def _names_ahead(low: float, high: float, a: str, b: str, metric: str) -> str | None:
    """Who is ahead where the CI excludes 0 (a - b < 0: b higher; lower NLL is better)."""
    if not (low > 0 or high < 0):
        return None
    b_higher = high < 0
    lower_wins = metric.removeprefix("paper_") in LOWER_IS_BETTER
    return a if b_higher == lower_wins else b


def verdict(row: dict, claim: Claim | None, claimed: float) -> str:
    """The words a difference earns (``VERDICT_RULE``); ``row`` has ci_low, ci_high, tost_p,
    mde_80, activation_a, activation_b, metric, margin."""
    low, high = row["ci_low"], row["ci_high"]
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no interval"
    ahead = _names_ahead(low, high, row["activation_a"], row["activation_b"], row["metric"])
    equivalent = bool(np.isfinite(row["tost_p"]) and row["tost_p"] < 0.05)
    if claim is not None and ahead is not None:
        if ahead != claim.b:
            return "opposite"
        if low <= claimed <= high:
            return "replicates"
        return "same direction, larger" if high < claimed else "same direction, smaller"
    if ahead is not None:
        return f"{ahead} ahead"
    if equivalent:
        return (
            f"excluded (equivalent within ±{row['margin']:.3g})"
            if claim
            else (f"equivalent within ±{row['margin']:.3g}")
        )
    return f"inconclusive (MDE {row['mde_80']:.3g})"
