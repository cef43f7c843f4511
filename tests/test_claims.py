"""The paper's claims next to a report's paired summary, and the 2-channel argmax count."""

import pandas as pd
import pytest

from segact.report import claims
from segact.report.sections import argmax_agreement_table


def _summary(rows: list[tuple[str, str, float, float, float]]) -> pd.DataFrame:
    """rows: (dataset, loss, mean sigmoid, mean other, Holm p); the pair follows the loss."""
    other = {"dice": "arctan", "bce": "normal_cdf"}
    return pd.DataFrame(
        [
            {
                "activation_a": "sigmoid",
                "activation_b": other[loss],
                "metric": "best_dice",
                "dataset": dataset,
                "loss": loss,
                "n": 15,
                "mean_a": a,
                "mean_b": b,
                "mean_difference": a - b,
                "wilcoxon_p_holm": p,
            }
            for dataset, loss, a, b, p in rows
        ]
    )


def test_cross_dataset_means_count_each_real_dataset_once():
    summary = _summary(
        [
            ("kvasir_seg", "dice", 0.70, 0.705, 0.01),
            ("ph2", "dice", 0.90, 0.91, 0.30),
            ("synthetic", "dice", 0.50, 0.40, 0.001),  # left out: not a medical set
        ]
    )
    (row,) = claims.compare_with_paper(summary).to_dict("records")
    assert row["datasets"] == "kvasir_seg, ph2"
    assert (row["mean_a"], row["mean_b"]) == pytest.approx((0.80, 0.8075))
    assert row["relative_percent"] == pytest.approx(100 * 0.0075 / 0.80)
    assert (row["paper_mean_a"], row["paper_relative_percent"]) == (0.7266, 2.0)
    assert row["sign_test_p"] == pytest.approx(0.5)  # ahead on 2 of 2: 2 * 0.5**2
    assert row["verdict"] == (
        "does not replicate (same direction, smaller); "
        "ahead on 2 of 2 dataset(s); Holm p < 0.05: 1 for, 0 against"
    )


@pytest.mark.parametrize(
    ("b", "p", "verdict"),
    [
        (0.81, 0.01, "replicates (same direction and size); "
                     "ahead on 1 of 1 dataset(s); Holm p < 0.05: 1 for, 0 against"),
        (0.79, 0.01, "does not replicate (other direction); "
                     "ahead on 0 of 1 dataset(s); Holm p < 0.05: 0 for, 1 against"),
        (0.8004, 0.6, "not detectable here (same direction, smaller); "
                      "ahead on 1 of 1 dataset(s); Holm p < 0.05: 0 for, 0 against"),
    ],
)  # fmt: skip
def test_verdict_reads_direction_size_and_tests(b, p, verdict):
    (row,) = claims.compare_with_paper(_summary([("ph2", "bce", 0.80, b, p)])).to_dict("records")
    assert row["claim"].startswith("BCE: normal CDF")
    assert row["verdict"] == verdict


def test_no_claim_rows_without_the_claimed_pairs():
    summary = _summary([("ph2", "dice", 0.8, 0.8, 1.0)]).assign(activation_b="softsign")
    assert claims.compare_with_paper(summary).empty
    assert claims.compare_with_paper(pd.DataFrame()).empty


def test_argmax_count_sums_every_fold_and_separates_ties():
    folds = pd.DataFrame(
        {
            "dataset": ["ph2"] * 3,
            "loss": ["ce", "ce", "dice"],
            "n_pixels": [100, 200, 300],
            "argmax_disagreements": [2, 0, float("nan")],  # the Dice run had 1 channel
            "argmax_ties": [2, 0, float("nan")],
        }
    )
    table = argmax_agreement_table(folds)
    assert table.to_dict("records") == [
        {
            "dataset": "ph2",
            "loss": "ce",
            "n_pixels": 300,
            "argmax_disagreements": 2,
            "argmax_ties": 2,
            "disagreements_not_ties": 0,
        }
    ]
    assert argmax_agreement_table(folds.drop(columns=["argmax_disagreements"])).empty


def test_datasets_with_degenerate_folds_get_a_second_scope():
    summary = _summary([("ph2", "dice", 0.90, 0.92, 0.01), ("isbi2012", "dice", 0.876, 0.876, 1.0)])
    compared = claims.compare_with_paper(summary, pd.DataFrame({"dataset": ["isbi2012"]}))
    assert compared[["scope", "datasets"]].values.tolist() == [
        ["real datasets", "isbi2012, ph2"],
        ["real datasets, without degenerate folds", "ph2"],
    ]
    assert compared["relative_percent"].iloc[1] == pytest.approx(100 * 0.02 / 0.90)
    unrelated = pd.DataFrame({"dataset": ["drive_vessels"]})
    assert len(claims.compare_with_paper(summary, unrelated)) == 1


def test_datasets_at_two_sizes_also_average_at_each_ones_largest():
    summary = _summary(
        [
            ("ph2", "dice", 0.90, 0.92, 0.01),
            ("isbi2012", "dice", 0.876, 0.876, 1.0),  # 48 px: degenerate
            ("isbi2012", "dice", 0.90, 0.91, 0.2),  # 96 px
        ]
    ).assign(**{claims.SIZE: ["48", "48", "96"]})
    degenerate = pd.DataFrame({"dataset": ["isbi2012"], claims.SIZE: ["48"]})
    compared = claims.compare_with_paper(summary, degenerate)
    assert compared[["scope", claims.SIZE, "datasets"]].fillna("").values.tolist() == [
        ["real datasets", "48", "isbi2012, ph2"],
        ["real datasets", "96", "isbi2012"],
        ["real datasets, each at its largest input size", "", "isbi2012, ph2"],
    ]  # without the degenerate 48 px ISBI rows: the same rows as the largest sizes, not repeated
    largest = compared.iloc[2]
    assert (largest["mean_a"], largest["mean_b"]) == pytest.approx((0.90, 0.915))
    assert compared["sign_test_p"].tolist() == pytest.approx([1.0, 1.0, 0.5])  # 48 px: one tie
