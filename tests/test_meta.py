"""Pooled estimates, equivalence, power, verdicts and "learned or not", against hand-computed
numbers: a DerSimonian-Laird estimate on three datasets, TOST and power by their formulas."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from segact.errors import ReportError
from segact.report import claims, learned, meta, stats
from segact.report.select import headline_scope

EFFECTS = [0.01, 0.005, 0.0]
VARIANCES = [1e-5, 2e-5, 1e-5]
N = 10


def _summary(effects=EFFECTS, variances=VARIANCES, datasets=("a", "b", "c"), **keys):
    """paired_summary rows whose difference has mean ``effects`` and variance of the mean
    ``variances`` (sd^2 / n with n = 10 pairs)."""
    rows = []
    for dataset, effect, variance in zip(datasets, effects, variances, strict=True):
        sd = math.sqrt(variance * N)
        low, high = scipy_stats.t.interval(0.95, N - 1, loc=effect, scale=sd / math.sqrt(N))
        rows.append(
            {
                "activation_a": "sigmoid",
                "activation_b": "arctan",
                "dataset": dataset,
                "loss": "mse",
                "metric": "best_dice",
                "n": N,
                "mean_a": 0.8,
                "mean_b": 0.8 - effect,
                "mean_difference": effect,
                "sd_difference": sd,
                "ci_low": low,
                "ci_high": high,
                "tost_p": np.nan,
                "mde_80": np.nan,
                **keys,
            }
        )
    return pd.DataFrame(rows)


ABSOLUTE = claims.MarginRule("0.01")


def _pooled(summary, rule=ABSOLUTE):
    unlearned = pd.Series(False, index=summary.index)
    table = meta.meta_analysis(summary, unlearned, rule)
    return table[table["scope"] == "learned"].set_index("method")


def test_dersimonian_laird_on_three_datasets_by_hand():
    # w = 1/v = 1e5, 5e4, 1e5; fixed mu = 0.005; Q = 1e5 (0.005^2) 2 = 5 on 2 df;
    # C = 2.5e5 - 2.25e10 / 2.5e5 = 1.6e5; tau^2 = (5 - 2) / 1.6e5; I^2 = (5 - 2) / 5.
    pooled = _pooled(_summary())
    tau2 = 3 / 1.6e5
    assert pooled.loc["fixed", "estimate"] == pytest.approx(0.005)
    assert pooled.loc["fixed", "se"] == pytest.approx(math.sqrt(1 / 2.5e5))
    random = pooled.loc["random_dl"]
    assert random["tau2"] == pytest.approx(tau2)
    assert random["i2"] == pytest.approx(0.6)
    weights = 1 / (np.array(VARIANCES) + tau2)
    assert random["estimate"] == pytest.approx(np.dot(weights, EFFECTS) / weights.sum())
    assert random["se"] == pytest.approx(math.sqrt(1 / weights.sum()))
    z = scipy_stats.norm.ppf(0.975)
    assert random["ci_low"] == pytest.approx(random["estimate"] - z * random["se"])
    half = scipy_stats.t.ppf(0.975, 1) * math.sqrt(tau2 + random["se"] ** 2)
    assert random["pi_low"] == pytest.approx(random["estimate"] - half)
    assert random["pi_high"] == pytest.approx(random["estimate"] + half)
    assert random["k"] == 3 and random["datasets"] == "a, b, c"
    assert random["relative_percent"] == pytest.approx(-100 * random["estimate"] / 0.8)


def test_no_prediction_interval_below_three_datasets_and_one_dataset_is_itself():
    two = _pooled(_summary(EFFECTS[:2], VARIANCES[:2], ("a", "b")))
    assert np.isnan(two.loc["random_dl", "pi_low"])
    one = _pooled(_summary(EFFECTS[:1], VARIANCES[:1], ("a",)))
    assert one.loc["random_dl", "estimate"] == pytest.approx(0.01)
    assert one.loc["random_dl", "se"] == pytest.approx(math.sqrt(1e-5))
    assert np.isnan(one.loc["random_dl", "tau2"])


def test_pooled_tost_and_power_by_their_formulas():
    estimate, se, margin = 0.002, 0.004, 0.01
    expected = max(
        scipy_stats.norm.sf((estimate + margin) / se),
        scipy_stats.norm.cdf((estimate - margin) / se),
    )
    assert meta.pooled_tost_p(estimate, se, margin) == pytest.approx(expected)
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    assert meta.pooled_mde(se) == pytest.approx(z * se, rel=1e-3)


def test_paired_tost_and_mde_per_dataset():
    d = np.array([0.01, -0.01, 0.03, 0.03, 0.05])
    se = d.std(ddof=1) / math.sqrt(5)
    lower = scipy_stats.t.sf((d.mean() + 0.1) / se, 4)
    upper = scipy_stats.t.cdf((d.mean() - 0.1) / se, 4)
    assert stats.tost_p(d, 0.1) == pytest.approx(max(lower, upper))
    mde = stats.minimum_detectable(5, d.std(ddof=1))
    power = scipy_stats.nct.sf(scipy_stats.t.ppf(0.975, 4), 4, mde / se)
    assert power == pytest.approx(0.8, abs=0.01)


def test_t_interval_and_t_test_agree():
    rng = np.random.default_rng(0)
    for _ in range(50):
        d = rng.normal(0.01, 0.02, size=15)
        low, high = stats.t_interval(d)
        assert (low > 0 or high < 0) == (stats.t_test_p(d) < 0.05)


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, np.nan]
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, np.nan])


DICE_CLAIM = claims.CLAIMS[0]


@pytest.mark.parametrize(
    ("low", "high", "tost", "words"),
    [
        (-0.03, -0.01, np.nan, "replicates"),  # claimed -0.016 inside, 0 outside
        (-0.008, -0.002, np.nan, "same direction, smaller"),
        (-0.04, -0.02, np.nan, "same direction, larger"),
        (0.002, 0.01, np.nan, "opposite"),
        (-0.004, 0.004, 0.01, "excluded (equivalent within ±0.016)"),
        (-0.02, 0.02, 0.4, "inconclusive (MDE 0.03)"),
    ],
)
def test_verdicts_against_the_paper_claim(low, high, tost, words):
    row = {
        "ci_low": low,
        "ci_high": high,
        "tost_p": tost,
        "mde_80": 0.03,
        "margin": 0.016,
        "activation_a": "sigmoid",
        "activation_b": "arctan",
        "metric": "best_dice",
    }
    claimed = DICE_CLAIM.claimed_difference(0.8)
    assert claimed == pytest.approx(-0.016)
    assert claims.verdict(row, DICE_CLAIM, claimed) == words


def test_verdicts_without_a_claim_say_who_is_ahead_lower_nll_wins():
    row = {"ci_low": 0.01, "ci_high": 0.02, "tost_p": np.nan, "mde_80": 0.0, "margin": 0.0}
    row |= {"activation_a": "sigmoid", "activation_b": "arctan"}
    assert claims.verdict({**row, "metric": "best_dice"}, None, np.nan) == "sigmoid ahead"
    assert claims.verdict({**row, "metric": "nll"}, None, np.nan) == "arctan ahead"


def test_margin_rule():
    assert claims.MarginRule().margin(DICE_CLAIM, 0.8) == pytest.approx(0.016)
    assert claims.MarginRule().margin(None, 0.8) == pytest.approx(0.008)
    assert claims.MarginRule("2%").margin(None, 0.5) == pytest.approx(0.01)
    assert claims.MarginRule("0.03").margin(DICE_CLAIM, 0.8) == pytest.approx(0.03)
    with pytest.raises(ReportError, match="--margin"):
        claims.MarginRule("two")


def test_unlearned_datasets_leave_the_learned_scope_only():
    summary = _summary()
    cells = pd.DataFrame([{"dataset": "c", "loss": "mse", "activation": "arctan"}])
    unlearned = meta.unlearned_rows(summary, cells)
    assert unlearned.tolist() == [False, False, True]
    table = meta.meta_analysis(summary, unlearned, claims.MarginRule())
    assert set(table.loc[table["scope"] == "learned", "datasets"]) == {"a, b"}
    assert set(table.loc[table["scope"] == "all", "datasets"]) == {"a, b, c"}


def test_synthetic_is_never_pooled():
    table = _pooled(_summary(datasets=("a", "synthetic", "c")))
    assert table.loc["fixed", "datasets"] == "a, c"


def _thresholds(run, fold, tp, fp, fn, tn):
    return {"run_path": run, "fold": fold, "threshold": 0.5, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def test_trivial_dice_of_all_foreground_and_all_background():
    frame = pd.DataFrame([_thresholds("r", 0, 80, 10, 20, 10), _thresholds("r", 1, 0, 5, 0, 95)])
    trivial = learned.trivial_dice(frame).set_index("fold")["trivial_dice"]
    assert trivial[0] == pytest.approx(2 * 100 / (2 * 100 + 20))  # all foreground: P = 100
    assert trivial[1] == 1.0  # no foreground: the empty mask is perfect


def test_a_cell_that_does_not_close_ten_percent_of_the_gap_is_not_learned():
    thresholds = pd.DataFrame(
        [_thresholds(run, f, 80, 10, 20, 10) for run in ("x", "y") for f in range(3)]
    )  # trivial Dice 0.909
    folds = pd.DataFrame(
        [
            {"run_path": run, "fold": f, "dataset": "d", "loss": "bce", "activation": act,
             "best_dice": dice}
            for run, act, dice in (("x", "sigmoid", 0.95), ("y", "arctan", 0.91))
            for f in range(3)
        ]
    )  # fmt: skip
    table = learned.learned_table(folds, thresholds, ["loss", "activation"]).set_index("activation")
    trivial = 200 / 220
    assert table.loc["sigmoid", "median_gain"] == pytest.approx((0.95 - trivial) / (1 - trivial))
    assert not table.loc["sigmoid", "not_learned"]
    assert table.loc["arctan", "not_learned"]


def test_headline_scope_keeps_each_datasets_largest_size():
    ok = pd.DataFrame(
        {
            "dataset": ["isbi", "isbi", "ph2"],
            "dataset.image_size": ["48", "96", "48"],
            "fold": [0, 0, 0],
        }
    )
    notes: list[str] = []
    headline, other = headline_scope(ok, notes)
    assert headline["dataset.image_size"].tolist() == ["96", "48"]
    assert other["dataset.image_size"].tolist() == ["48"]
    assert "isbi at 48 px" in notes[0]


def test_homogeneous_datasets_give_tau2_zero_and_random_equals_fixed():
    # Q = 0 < k - 1: DL truncates tau^2 at 0 (statsmodels 0.15 would give a negative one)
    pooled = _pooled(_summary([-0.016, -0.016], [1e-5, 1e-5], ("a", "b")))
    assert pooled.loc["random_dl", "tau2"] == 0 and pooled.loc["random_dl", "i2"] == 0
    for column in ("estimate", "se", "ci_low", "ci_high"):
        assert pooled.loc["random_dl", column] == pytest.approx(pooled.loc["fixed", column])
