"""segact.report.stats against scipy on hand-made numbers: pairs, t-intervals and tests,
Wilcoxon, Holm."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from segact.errors import ReportError
from segact.report import stats
from segact.runs.identity import pair_keys

D5 = np.array([0.01, -0.01, 0.03, 0.03, 0.05])


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
    differences = stats.paired_differences(folds, "sigmoid", "arctan", ["dataset", "loss"])
    assert len(differences) == 15
    assert differences["difference"].to_numpy() == pytest.approx(np.full(15, 0.005))
    summary = stats.summarize_pairs(differences, ["dataset", "loss"])
    assert summary[["n", "ci_method"]].values.tolist() == [[15, "t"]]


def test_pairs_only_between_runs_equal_but_for_the_activation():
    folds = pd.concat([_folds(lr=0.001), _folds(lr=0.1)])
    folds["activation.eps"] = folds["activation"].map({"sigmoid": "1e-07", "arctan": "1e-06"})
    keys = pair_keys(folds)
    assert keys == ["dataset", "loss", "lr"]  # activation.* differs with the activation
    differences = stats.paired_differences(folds, "sigmoid", "arctan", keys)
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
    differences = stats.paired_differences(folds, "sigmoid", "softmax", ["dataset", "loss"])
    assert len(differences) == 5


def test_an_unrecorded_setting_is_an_error_not_a_silent_first():
    folds = pd.concat([_folds(), _folds()])
    with pytest.raises(ReportError, match="cannot pair sigmoid: 5 fold result"):
        stats.paired_differences(folds, "sigmoid", "arctan", ["dataset", "loss"])


def test_summary_holm_runs_over_the_datasets_of_one_pair_loss_and_metric():
    folds = pd.concat([_folds(dataset=name) for name in ("a", "b", "c")])
    folds["nll"] = 1 - folds["best_dice"]
    folds.loc[folds["dataset"] == "b", "best_dice"] += np.where(
        folds.loc[folds["dataset"] == "b", "activation"] == "arctan", [0, 0.02, 0, 0.02, 0] * 2, 0
    )
    differences = stats.paired_differences(folds, "sigmoid", "arctan", ["dataset", "loss"])
    summary = stats.summarize_pairs(differences, ["dataset", "loss"])
    n = len(stats.SUMMARY_COLUMNS)
    assert list(summary.columns[-n:]) == list(stats.SUMMARY_COLUMNS)
    for _, table in summary.groupby(["metric"]):  # one pair and loss: a family per metric
        np.testing.assert_allclose(table["wilcoxon_p_holm"], stats.holm(table["wilcoxon_p"]))
        np.testing.assert_allclose(table["t_p_holm"], stats.holm(table["t_p"]))
    nll = summary[summary["metric"] == "nll"]
    assert nll["wilcoxon_p"].tolist() == pytest.approx([1 / 16] * 3)
    assert nll["wilcoxon_p_holm"].tolist() == pytest.approx([3 / 16] * 3)  # 3 p, 2 p, p: max
    best = summary[summary["metric"] == "best_dice"].set_index("dataset")
    d_b = differences.query("dataset == 'b' and metric == 'best_dice'")["difference"]
    assert best.loc["b", "wilcoxon_p"] == pytest.approx(scipy_stats.wilcoxon(d_b).pvalue)
    assert best["min_p_reachable"].tolist() == [1 / 16] * 3
