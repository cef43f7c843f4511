"""The equivalence margin of a comparison, the verdict a difference earns, and the paper's
headline claims (Nieradzik et al. 2021), which frame a report only with ``--paper-claims``.

A difference is always a - b of the paired comparison (``paired_summary.csv``); ``b`` is the
baseline: the margin is a share of b's mean. The paper claims arctan (normal CDF) ahead of
sigmoid, i.e. sigmoid - arctan negative by ``relative_percent`` % of sigmoid's mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from segact.errors import ReportError
from segact.runs import schema

DEFAULT_MARGIN_PERCENT = 1.0
"""Without ``--margin``: the equivalence margin, in % of the baseline's (b's) mean."""
SENSITIVITY_PERCENT: tuple[float, ...] = (0.5, 1.0, 2.0)
"""The margins (in % of the baseline's mean) of the sensitivity table under each pooled result."""
PAPER_DATASETS = ("ACDC", "ISLES 2018", "Kvasir-SEG", "MSD Prostate")
PAPER_EXPERIMENTS: tuple[str, ...] = ("sigmoid_vs_arctan", "paper_grid")
"""``experiment_name`` of the paper's own grids: their reports show its claims by default."""
CLAIM_FACTOR = "activation"


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

    def sign(self, factor: str, a: str, b: str, loss: object, metric: str) -> int:
        """+1 where the comparison is the claim's a - b, -1 where it is b - a, else 0."""
        if factor != CLAIM_FACTOR or loss != self.loss:
            return 0
        if metric.removeprefix(schema.PAPER_PREFIX) != self.metric:
            return 0
        return {(self.a, self.b): 1, (self.b, self.a): -1}.get((a, b), 0)

    def claimed_difference(self, sigmoid_mean: float, sign: int = 1) -> float:
        """The claim in the comparison's units: ``relative_percent`` % of the claim's ``a``
        mean, b ahead, so negative for a - b (``sign`` -1: b - a, positive)."""
        return -sign * self.relative_percent / 100 * sigmoid_mean


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "dice", "sigmoid", "arctan", schema.BEST_DICE, 2.0, 0.7266,
        "Dice loss: arctan about 2 % above sigmoid (0.7266, mean of four medical datasets)",
    ),
    Claim(
        "bce", "sigmoid", "normal_cdf", schema.BEST_DICE, 0.1, None,
        "BCE: normal CDF about 0.1 % above sigmoid on average, up to 1 % on some datasets",
    ),
)  # fmt: skip


def find_claim(factor: str, a: str, b: str, loss: object, metric: str) -> tuple[Claim | None, int]:
    """The paper's claim about this comparison and its orientation (+1 as claimed, -1 reversed);
    (None, 0) where it made none."""
    for claim in CLAIMS:
        if sign := claim.sign(factor, a, b, loss, metric):
            return claim, sign
    return None, 0


def claimed_difference(
    factor: str, a: str, b: str, loss: object, metric: str, mean_a: float, mean_b: float
) -> float:
    """The paper's claimed a - b in the metric's units (its baseline is sigmoid's mean); NaN
    where it made no claim about this comparison."""
    claim, sign = find_claim(factor, a, b, loss, metric)
    if claim is None:
        return np.nan
    return claim.claimed_difference(mean_a if sign > 0 else mean_b, sign)


@dataclass(frozen=True)
class MarginRule:
    """``--margin``: ``None`` (``DEFAULT_MARGIN_PERCENT`` % of the baseline's mean), ``"2%"``
    (of the baseline's mean) or ``"0.01"`` (absolute, in the metric's units)."""

    spec: str | None = None

    def __post_init__(self) -> None:
        if self.spec is not None and not re.fullmatch(r"\d+(\.\d*)?%?", self.spec.strip()):
            raise ReportError(
                f"--margin {self.spec}: give a percentage of the baseline's mean (e.g. 2%) "
                "or an absolute difference (e.g. 0.01)"
            )

    @property
    def percent(self) -> float | None:
        """The margin in % of the baseline's mean; None for an absolute one."""
        if self.spec is None:
            return DEFAULT_MARGIN_PERCENT
        text = self.spec.strip()
        return float(text[:-1]) if text.endswith("%") else None

    def margin(self, baseline_mean: float) -> float:
        if self.percent is not None:
            return abs(self.percent / 100 * baseline_mean)
        return float(self.spec or "nan")

    def words(self) -> str:
        if self.percent is None:
            return f"--margin {self.spec}, in the metric's units"
        where = f"--margin {self.spec}" if self.spec else "the default"
        return f"{self.percent:g} % of the baseline's (b's) mean ({where})"


VERDICT_RULE = (
    "Verdicts read the 95 % CI of a - b (per dataset: the corrected resampled t; pooled: the "
    "headline meta-analysis) and the TOST p against the margin m: **a better** / **b better**: "
    "the CI excludes 0 (lower NLL is better); **equivalent (within ±m)**: the CI includes 0 and "
    "the TOST p < 0.05 (the 90 % CI lies inside ±m); **inconclusive**: neither (mde_80 says "
    "what the pairs could have detected, seeds_needed how many seeds would)."
)
CLAIM_VERDICT_RULE = (
    "Against the paper's claim (`claimed`, a - b in the metric's units): **replicates**: the CI "
    "excludes 0 on the claim's side and includes the claimed size; **same direction, "
    "smaller** (or **larger**): it excludes 0 on the claim's side and excludes the claimed size; "
    "**opposite**: it excludes 0 on the other side."
)


def verdict(
    low: float,
    high: float,
    tost: float,
    margin: float,
    metric: str,
    claimed: float = np.nan,
) -> str:
    """The words a difference a - b earns (``VERDICT_RULE``, and ``CLAIM_VERDICT_RULE`` where
    ``claimed`` is a number)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no interval"
    if low > 0 or high < 0:
        positive = low > 0
        if np.isfinite(claimed) and claimed != 0:
            if positive != (claimed > 0):
                return "opposite"
            if low <= claimed <= high:
                return "replicates"
            beyond = low > claimed if positive else high < claimed
            return "same direction, larger" if beyond else "same direction, smaller"
        lower_wins = schema.lower_is_better(metric.removeprefix(schema.PAPER_PREFIX))
        return "a better" if positive != lower_wins else "b better"
    if np.isfinite(tost) and tost < 0.05:
        return f"equivalent (within ±{margin:.3g})"
    return "inconclusive"
