"""segact.report.stats against scipy, statsmodels and hand computations: pairs, the corrected
resampled t (Nadeau & Bengio), the plain t, Wilcoxon, Holm, TOST, power and the seeds needed."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from segact.errors import ReportError
from segact.report import stats
from segact.report.stats import Comparison
from segact.runs.identity import pair_keys

D5 = np.array([0.01, -0.01, 0.03, 0.03, 0.05])
ACTIVATIONS = Comparison("activation", "sigmoid", "arctan")


def _folds(activations=("sigmoid", "arctan"), seeds=(0,), folds=5, **columns) -> pd.DataFrame:
    """A full grid: best Dice = 0.7 + 0.01 fold + 0.02 seed, arctan 0.005 lower."""
    rows = [
        {
            "dataset": "toy",
            "loss": "dice",
            "activation": activation,
            "seed": seed,
            "fold": fold,
            "best_dice": 0.7 + 0.01 * fold + 0.02 * seed - 0.005 * (activation == "arctan"),
        }
        for activation in activations
        for seed in seeds
        for fold in range(folds)
    ]
    return pd.DataFrame(rows).assign(**columns)


def test_paired_t_interval_and_t_test():
    low, high = stats.t_interval(D5)
    expected = scipy_stats.t.interval(
        0.95, df=4, loc=D5.mean(), scale=D5.std(ddof=1) / math.sqrt(5)
    )
    assert (low, high) == pytest.approx(expected)
    assert stats.t_test_p(D5) == pytest.approx(scipy_stats.ttest_rel(D5, np.zeros(5)).pvalue)


@pytest.mark.parametrize("d", [np.array([0.1]), np.full(4, 0.02), np.full(12, 0.02)])
def test_no_interval_without_spread(d):
    assert all(math.isnan(x) for x in stats.t_interval(d))
    assert math.isnan(stats.t_test_p(d))


def test_wilcoxon_and_the_smallest_reachable_p():
    assert stats.wilcoxon_p(D5) == pytest.approx(scipy_stats.wilcoxon(D5).pvalue)
    assert math.isnan(stats.wilcoxon_p(np.zeros(3)))
    assert stats.min_p_reachable(np.ones(5)) == 2 / 2**5
    assert stats.min_p_reachable(np.array([0.0, 1, 2, 3, 4, 5])) == 2 / 2**5  # zeros dropped
    assert stats.min_p_reachable(np.zeros(3)) == 1.0
    # the floor is reached exactly when every sign agrees
    assert scipy_stats.wilcoxon(np.arange(1, 6)).pvalue == stats.min_p_reachable(np.ones(5))


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max
    expected = [0.03, 0.06, 0.06, 0.02, np.nan]
    np.testing.assert_allclose(stats.holm(p), expected)
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    assert stats.holm([]).shape == (0,)


def test_seeds_multiply_the_pairs():
    folds = _folds(seeds=(0, 1, 2))
    differences = stats.paired_differences(folds, ACTIVATIONS, ["dataset", "loss"])
    assert len(differences) == 15
    assert differences["difference"].to_numpy() == pytest.approx(np.full(15, 0.005))
    summary = stats.summarize_pairs(differences, ["dataset", "loss"])
    assert summary[["n", "seeds", "folds", "ci_method"]].values.tolist() == [
        [15, 3, 5, "corrected_t"]
    ]
    assert differences[list(stats.COMPARISON)].drop_duplicates().values.tolist() == [
        ["activation", "sigmoid", "arctan"]
    ]


def test_pairs_only_between_runs_equal_but_for_the_activation():
    folds = pd.concat([_folds(lr=0.001), _folds(lr=0.1)])
    folds["activation.eps"] = folds["activation"].map({"sigmoid": "1e-07", "arctan": "1e-06"})
    keys = pair_keys(folds)
    assert keys == ["dataset", "loss", "lr"]  # activation.* differs with the activation
    assert stats.comparison_keys(folds, "activation") == keys
    differences = stats.paired_differences(folds, ACTIVATIONS, keys)
    assert differences["difference"].to_numpy() == pytest.approx(np.full(10, 0.005))
    summary = stats.summarize_pairs(differences, keys)
    assert summary[["lr", "n"]].values.tolist() == [[0.001, 5], [0.1, 5]]


def test_settings_that_follow_the_dataset_add_no_pair_key():
    """A synthetic set's own settings are NaN for a folder dataset: implied by the dataset."""
    synthetic = _folds(**{"dataset.noise": 0.6, "dataset.root": np.nan})
    folder = _folds(**{"dataset.noise": np.nan, "dataset.root": "/data/ph2"}).assign(dataset="ph2")
    folds = pd.concat([synthetic, folder])
    assert pair_keys(folds) == ["dataset", "loss"]
    within = pd.concat([folds, _folds(**{"dataset.noise": 0.9, "dataset.root": np.nan})])
    assert pair_keys(within) == ["dataset", "loss", "dataset.noise"]


def test_a_head_that_follows_the_activation_adds_no_pair_key():
    folds = _folds(activations=("sigmoid", "softmax"))
    folds["head"] = folds["activation"].map({"sigmoid": "sigmoid1", "softmax": "softmax2"})
    assert pair_keys(folds) == ["dataset", "loss"]
    differences = stats.paired_differences(
        folds, Comparison("activation", "sigmoid", "softmax"), ["dataset", "loss"]
    )
    assert len(differences) == 5


def test_an_unrecorded_setting_is_an_error_not_a_silent_first():
    folds = pd.concat([_folds(), _folds()])
    with pytest.raises(ReportError, match="cannot pair activation sigmoid: 5 fold result"):
        stats.paired_differences(folds, ACTIVATIONS, ["dataset", "loss"])


def test_summary_holm_runs_over_the_datasets_of_one_pair_loss_and_metric():
    folds = pd.concat([_folds(dataset=name) for name in ("a", "b", "c")])
    folds["nll"] = 1 - folds["best_dice"]
    folds.loc[folds["dataset"] == "b", "best_dice"] += np.where(
        folds.loc[folds["dataset"] == "b", "activation"] == "arctan", [0, 0.02, 0, 0.02, 0] * 2, 0
    )
    differences = stats.paired_differences(folds, ACTIVATIONS, ["dataset", "loss"])
    summary = stats.summarize_pairs(differences, ["dataset", "loss"])
    n = len(stats.SUMMARY_COLUMNS)
    assert list(summary.columns[-n:]) == list(stats.SUMMARY_COLUMNS)
    for _, table in summary.groupby(["metric"]):  # one pair and loss: a family per metric
        np.testing.assert_allclose(table["wilcoxon_p_holm"], stats.holm(table["wilcoxon_p"]))
        np.testing.assert_allclose(table["p_holm"], stats.holm(table["p"]))
        np.testing.assert_allclose(table["plain_t_p_holm"], stats.holm(table["plain_t_p"]))
    nll = summary[summary["metric"] == "nll"]
    assert nll["wilcoxon_p"].tolist() == pytest.approx([1 / 16] * 3)
    assert nll["wilcoxon_p_holm"].tolist() == pytest.approx([3 / 16] * 3)  # 3 p, 2 p, p: max
    best = summary[summary["metric"] == "best_dice"].set_index("dataset")
    d_b = differences.query("dataset == 'b' and metric == 'best_dice'")["difference"]
    assert best.loc["b", "wilcoxon_p"] == pytest.approx(scipy_stats.wilcoxon(d_b).pvalue)
    assert best["min_p_reachable"].tolist() == [1 / 16] * 3


def test_the_synthetic_set_enters_no_holm_family():
    folds = pd.concat([_folds(dataset=name) for name in ("a", "b", "synthetic")])
    folds["best_dice"] += np.where(folds["activation"] == "arctan", 0.001 * folds["fold"] ** 2, 0)
    differences = stats.paired_differences(folds, ACTIVATIONS, ["dataset", "loss"])
    summary = stats.summarize_pairs(differences, ["dataset", "loss"]).set_index("dataset")
    real = summary.loc[["a", "b"]]
    np.testing.assert_allclose(real["p_holm"], stats.holm(real["p"]))  # a family of two
    assert summary.loc["synthetic", "p_holm"] == summary.loc["synthetic", "p"]


# --- the corrected resampled t ---------------------------------------------------------------

D15 = np.array([0.012, -0.004, 0.020, 0.008, 0.001, 0.015, -0.002, 0.010, 0.006, 0.018,
                0.003, 0.009, -0.006, 0.014, 0.007])  # fmt: skip


def _nadeau_bengio(d: np.ndarray, ratio: float) -> tuple[float, float, float]:
    """By hand: var(mean) = s^2 (1/n + n_test/n_train), t on n - 1 df: (low, high, p)."""
    n, mean, s2 = len(d), d.mean(), d.var(ddof=1)
    se = math.sqrt(s2 * (1 / n + ratio))
    t = scipy_stats.t.ppf(0.975, n - 1)
    p = 2 * (1 - scipy_stats.t.cdf(abs(mean) / se, n - 1))
    return mean - t * se, mean + t * se, p


def test_corrected_t_is_the_nadeau_bengio_formula():
    test = stats.CorrectedT.of(D15, ratio=0.25)
    low, high, p = _nadeau_bengio(D15, 0.25)
    assert test.interval() == pytest.approx((low, high))
    assert test.p() == pytest.approx(p)
    plain = stats.CorrectedT.of(D15)  # ratio 0: the plain paired t
    assert plain.interval() == pytest.approx(stats.t_interval(D15))
    assert plain.p() == pytest.approx(scipy_stats.ttest_1samp(D15, 0).pvalue)
    # 5 folds: 1/n + 1/4 against 1/n, the interval sqrt(1 + 15/4) = 2.18 times wider
    assert (high - low) / np.ptp(plain.interval()) == pytest.approx(math.sqrt(1 + 15 / 4))


def test_corrected_tost_and_mde_by_hand():
    test = stats.CorrectedT.of(D15, ratio=0.25)
    se = D15.std(ddof=1) * math.sqrt(1 / 15 + 0.25)
    margin = 0.02
    above = scipy_stats.t.sf((D15.mean() + margin) / se, 14)
    below = scipy_stats.t.cdf((D15.mean() - margin) / se, 14)
    assert test.tost_p(margin) == pytest.approx(max(above, below))
    plain = stats.CorrectedT.of(D15)
    assert plain.tost_p(margin) == pytest.approx(stats.tost_p(D15, margin))  # statsmodels'
    # at the MDE, a noncentral t with noncentrality mde / se has 80 % power
    t = scipy_stats.t.ppf(0.975, 14)
    nc = test.mde() / se
    power = scipy_stats.nct.sf(t, 14, nc) + scipy_stats.nct.cdf(-t, 14, nc)
    assert power == pytest.approx(0.8, abs=1e-4)


def _folds_with_sizes(**sizes) -> pd.DataFrame:
    """3 seeds x 5 folds, sigmoid - arctan = 0.005 + D15."""
    folds = _folds(seeds=(0, 1, 2))
    folds.loc[folds["activation"] == "sigmoid", "best_dice"] += D15
    return folds.assign(**sizes)


@pytest.mark.parametrize(
    ("sizes", "ratio"),
    [
        ({}, 1 / 4),  # 5 folds, no sizes recorded: 1 / (k - 1)
        ({"trainer.folds": "3"}, 1 / 2),
        ({"protocol": "paper", "n_train": 160, "n_select": 40, "n_report": 40}, 40 / 160),
        ({"protocol": "holdout", "n_train": 128, "n_select": 32, "n_report": 40}, 40 / 160),
        ({"protocol": "paper", "n_train": 100, "n_select": 20, "n_report": 20}, 20 / 100),
    ],
)
def test_the_test_train_ratio_from_folds_csv(sizes, ratio):
    folds = _folds_with_sizes(**sizes)
    assert stats.test_train_ratio(folds).tolist() == pytest.approx([ratio] * len(folds))
    differences = stats.paired_differences(folds, ACTIVATIONS, ["dataset", "loss"])
    summary = stats.summarize_pairs(differences, ["dataset", "loss"]).iloc[0]
    d = differences["difference"].to_numpy()
    low, high, p = _nadeau_bengio(d, ratio)
    assert summary["test_train_ratio"] == pytest.approx(ratio)
    assert (summary["ci_low"], summary["ci_high"], summary["p"]) == pytest.approx((low, high, p))
    plain = scipy_stats.t.interval(0.95, 14, loc=d.mean(), scale=scipy_stats.sem(d))
    assert (summary["plain_ci_low"], summary["plain_ci_high"]) == pytest.approx(plain)
    assert summary["plain_t_p"] == pytest.approx(scipy_stats.ttest_1samp(d, 0).pvalue)


def _power_by_hand(margin: float, sd: float, n: int, ratio: float) -> float:
    """Two-sided corrected t at 0.05: noncentral t with nc = margin / (sd sqrt(1/n + ratio))."""
    nc = margin / (sd * math.sqrt(1 / n + ratio))
    t = scipy_stats.t.ppf(0.975, n - 1)
    return scipy_stats.nct.sf(t, n - 1, nc) + scipy_stats.nct.cdf(-t, n - 1, nc)


@pytest.mark.parametrize(
    ("margin", "sd", "folds"),
    [(0.02, 0.01, 5), (0.01, 0.004, 5), (0.03, 0.01, 3), (0.015, 0.01, 5)],
)
def test_seeds_needed_by_hand(margin, sd, folds):
    ratio = 1 / (folds - 1)
    needed = stats.seeds_needed(margin, sd, folds, ratio)
    seeds = next(s for s in range(1, 10_000) if _power_by_hand(margin, sd, s * folds, ratio) >= 0.8)
    assert needed == seeds
    assert _power_by_hand(margin, sd, int(needed) * folds, ratio) >= 0.8


def test_seeds_cannot_settle_a_margin_below_what_the_folds_allow():
    # with infinitely many seeds the variance is sd^2 / 4 (5 folds): the z-test at
    # noncentrality margin / (sd / 2) needs 2.80 for 80 % power, so margin / sd > 1.40
    assert math.isnan(stats.seeds_needed(0.013, 0.01, 5, 0.25))
    assert stats.seeds_needed(0.015, 0.01, 5, 0.25) == 9  # just above: many seeds
    assert math.isnan(stats.seeds_needed(0.01, 0.0, 5, 0.25))  # no spread: nothing to power
    assert stats.seeds_needed(0.01, 0.01, 5, 0.0) == pytest.approx(2)  # plain t: 10 pairs
