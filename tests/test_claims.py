"""The paper's claims next to a report's pooled estimates, and the 2-channel argmax count."""

import numpy as np
import pandas as pd
import pytest

from segact.report import claims, meta
from segact.report.paired import claims_table
from segact.report.sections import argmax_agreement_table


def _summary(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    """rows: (dataset, loss, mean sigmoid, mean other); the pair follows the loss; 15 pairs
    with a spread of 0.01 each."""
    other = {"dice": "arctan", "bce": "normal_cdf"}
    return pd.DataFrame(
        [
            {
                "activation_a": "sigmoid",
                "activation_b": other[loss],
                "dataset": dataset,
                "loss": loss,
                "metric": "best_dice",
                "n": 15,
                "mean_a": a,
                "mean_b": b,
                "mean_difference": a - b,
                "sd_difference": 0.01,
            }
            for dataset, loss, a, b in rows
        ]
    )


def _claims(summary: pd.DataFrame) -> pd.DataFrame:
    pooled = meta.meta_analysis(summary, pd.Series(False, index=summary.index), claims.MarginRule())
    return claims_table(pooled, summary)


def test_each_real_dataset_counts_once_next_to_the_papers_figures():
    summary = _summary(
        [
            ("kvasir_seg", "dice", 0.70, 0.705),
            ("ph2", "dice", 0.90, 0.91),
            ("synthetic", "dice", 0.50, 0.40),  # left out: not a medical set
        ]
    )
    table = _claims(summary)
    row = table[(table["scope"] == "learned") & (table["method"] == "fixed")].iloc[0]
    assert row["datasets"] == "kvasir_seg, ph2" and row["k"] == 2
    assert row["mean_a"] == pytest.approx(0.80)
    assert row["relative_percent"] == pytest.approx(100 * 0.0075 / 0.80)  # equal weights
    assert (row["paper_mean_a"], row["paper_relative_percent"]) == (0.7266, 2.0)
    assert row["sign_test_p"] == pytest.approx(0.5)  # ahead on 2 of 2: 2 * 0.5**2
    assert set(table["method"]) == {"fixed", "random_dl", "equal"}
    assert set(table["scope"]) == {"learned", "all"}


def test_a_claim_the_runs_do_not_have_gives_no_row():
    summary = _summary([("ph2", "dice", 0.8, 0.8)]).assign(activation_b="softsign")
    assert _claims(summary).empty


def test_pooled_verdict_reads_the_claim():
    # kvasir and ph2 about 0.016 behind with a tight spread: the paper's 2 % of 0.8 = 0.016
    summary = _summary([("kvasir_seg", "dice", 0.80, 0.815), ("ph2", "dice", 0.80, 0.817)])
    table = _claims(summary)
    assert set(table["verdict"]) == {"replicates"}
    assert np.isfinite(table["sign_test_p"]).all()


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
