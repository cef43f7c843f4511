"""Pooled estimates, equivalence, power, verdicts and "learned or not", against hand-computed
numbers: DerSimonian-Laird and Hartung-Knapp-Sidik-Jonkman on three datasets, TOST and power by
their formulas, verdict words, the margin sensitivity table."""

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
    """paired_summary rows whose difference has mean ``effects`` and corrected variance of the
    mean ``variances`` (sd^2 (1/n + 1/4) with n = 10 pairs); b's mean is 0.8."""
    rows = []
    for dataset, effect, variance in zip(datasets, effects, variances, strict=True):
        sd = math.sqrt(variance / (1 / N + 0.25))
        test = stats.CorrectedT(effect, sd, N, 0.25)
        low, high = test.interval()
        rows.append(
            {
                "factor": "activation",
                "a": "sigmoid",
                "b": "arctan",
                "dataset": dataset,
                "loss": "mse",
                "metric": "best_dice",
                "n": N,
                "seeds": 2,
                "folds": 5,
                "test_train_ratio": 0.25,
                "mean_a": 0.8 + effect,
                "mean_b": 0.8,
                "mean_difference": effect,
                "sd_difference": sd,
                "se_corrected": test.se,
                "ci_low": low,
                "ci_high": high,
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
    assert random["relative_percent"] == pytest.approx(100 * random["estimate"] / 0.8)
    assert not random["headline"] and pooled.loc["random_hksj", "headline"]  # k = 3 < 10


def test_hartung_knapp_sidik_jonkman_by_hand():
    # DL weights 1/(v + tau^2), mu their mean; q = sum w (y - mu)^2 / (k - 1);
    # se = sqrt(q / sum w); the 95 % CI on t with k - 1 = 2 degrees of freedom
    pooled = _pooled(_summary())
    tau2 = 3 / 1.6e5
    w = 1 / (np.array(VARIANCES) + tau2)
    y = np.array(EFFECTS)
    mu = np.dot(w, y) / w.sum()
    q = np.dot(w, (y - mu) ** 2) / 2
    se = math.sqrt(q / w.sum())
    t = scipy_stats.t.ppf(0.975, 2)
    hksj = pooled.loc["random_hksj"]
    assert hksj["estimate"] == pytest.approx(mu)
    assert hksj["se"] == pytest.approx(se)
    assert (hksj["ci_low"], hksj["ci_high"]) == pytest.approx((mu - t * se, mu + t * se))
    assert hksj["tau2"] == pytest.approx(tau2)
    margin = 0.01  # ABSOLUTE
    expected = max(
        scipy_stats.t.sf((mu + margin) / se, 2), scipy_stats.t.cdf((mu - margin) / se, 2)
    )
    assert hksj["tost_p"] == pytest.approx(expected)
    half = scipy_stats.t.ppf(0.975, 1) * math.sqrt(tau2 + se**2)
    assert (hksj["pi_low"], hksj["pi_high"]) == pytest.approx((mu - half, mu + half))


def test_no_pooled_row_over_one_dataset_and_no_prediction_interval_below_three():
    two = _pooled(_summary(EFFECTS[:2], VARIANCES[:2], ("a", "b")))
    assert np.isnan(two.loc["random_dl", "pi_low"]) and np.isnan(two.loc["random_hksj", "pi_low"])
    assert set(two.index) == {"random_hksj", "random_dl", "fixed", "equal"}
    one = meta.meta_analysis(
        _summary(EFFECTS[:1], VARIANCES[:1], ("a",)), pd.Series([False]), ABSOLUTE
    )
    assert one.empty and "method" in one.columns
    # a real dataset beside the synthetic set: one real dataset, nothing pooled
    beside = _summary(EFFECTS[:2], VARIANCES[:2], ("a", "synthetic"))
    assert meta.meta_analysis(beside, pd.Series([False, False]), ABSOLUTE).empty


def test_pooled_tost_and_power_by_their_formulas():
    estimate, se, margin = 0.002, 0.004, 0.01
    expected = max(
        scipy_stats.norm.sf((estimate + margin) / se),
        scipy_stats.norm.cdf((estimate - margin) / se),
    )
    assert meta.pooled_tost_p(estimate, se, margin) == pytest.approx(expected)
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    assert meta.pooled_mde(se) == pytest.approx(z * se, rel=1e-3)


def test_judged_rows_use_the_corrected_variance_and_b_as_baseline():
    summary = meta.judge_datasets(_summary(), claims.MarginRule(), paper_claims=False)
    assert "claimed" not in summary.columns  # only with --paper-claims
    row = summary.iloc[1]
    assert row["margin"] == pytest.approx(0.008)  # 1 % of b's mean 0.8
    test = stats.CorrectedT(row["mean_difference"], row["sd_difference"], N, 0.25)
    assert row["tost_p"] == pytest.approx(test.tost_p(0.008))
    assert row["mde_80"] == pytest.approx(test.mde())
    assert row["verdict"] == "inconclusive"
    expected = stats.seeds_needed(0.008, row["sd_difference"], 5, 0.25)
    assert row["seeds_needed"] == pytest.approx(expected) or np.isnan(expected)
    judged = meta.judge_datasets(_summary(), claims.MarginRule(), paper_claims=True)
    assert judged["claimed"].isna().all()  # the paper claims nothing about MSE


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
        (-0.004, 0.004, 0.01, "equivalent (within ±0.016)"),
        (-0.02, 0.02, 0.4, "inconclusive"),
    ],
)
def test_verdicts_against_the_paper_claim(low, high, tost, words):
    claimed = DICE_CLAIM.claimed_difference(0.8)
    assert claimed == pytest.approx(-0.016)
    assert claims.verdict(low, high, tost, 0.016, "best_dice", claimed) == words


def test_a_claim_read_the_other_way_round_is_the_same_claim():
    forward = claims.claimed_difference(
        "activation", "sigmoid", "arctan", "dice", "best_dice", 0.8, 0.82
    )
    backward = claims.claimed_difference(
        "activation", "arctan", "sigmoid", "dice", "best_dice", 0.82, 0.8
    )
    assert forward == pytest.approx(-0.016) and backward == pytest.approx(0.016)
    assert np.isnan(
        claims.claimed_difference("loss", "sigmoid", "arctan", "dice", "best_dice", 1, 1)
    )


@pytest.mark.parametrize(
    ("low", "high", "metric", "words"),
    [
        (0.01, 0.02, "best_dice", "a better"),
        (-0.02, -0.01, "best_dice", "b better"),
        (0.01, 0.02, "nll", "b better"),  # a's NLL higher: b better
        (-0.02, -0.01, "paper_nll", "a better"),
    ],
)
def test_verdicts_without_a_claim_say_which_level_is_better(low, high, metric, words):
    assert claims.verdict(low, high, np.nan, 0.01, metric) == words


def test_margin_rule():
    assert claims.MarginRule().margin(0.8) == pytest.approx(0.008)  # 1 % of b's mean
    assert claims.MarginRule("2%").margin(0.5) == pytest.approx(0.01)
    assert claims.MarginRule("0.03").margin(0.8) == pytest.approx(0.03)
    with pytest.raises(ReportError, match="--margin"):
        claims.MarginRule("two")


def test_unlearned_datasets_leave_the_learned_scope_only():
    summary = _summary()
    cells = pd.DataFrame([{"dataset": "c", "loss": "mse", "activation": "arctan"}])
    unlearned = meta.unlearned_rows(summary, cells, "activation")
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
    assert pooled.loc["random_hksj", "estimate"] == pytest.approx(-0.016)
    assert pooled.loc["random_hksj", "tau2"] == 0


def test_margin_sensitivity_under_each_headline():
    pooled = meta.meta_analysis(_summary(), pd.Series(False, index=range(3)), ABSOLUTE)
    table = meta.margin_sensitivity(pooled)
    assert table["margin_percent"].tolist() == [0.5, 1.0, 2.0]
    assert set(table["method"]) == {"random_hksj"}
    hksj = pooled[(pooled["scope"] == "learned") & (pooled["method"] == "random_hksj")].iloc[0]
    for _, row in table.iterrows():
        assert row["margin"] == pytest.approx(row["margin_percent"] / 100 * 0.8)
        expected = meta.pooled_tost_p(hksj["estimate"], hksj["se"], row["margin"], 2)
        assert row["tost_p"] == pytest.approx(expected)
