"""The paper's claims next to a report's pooled estimates (only with --paper-claims), and the
2-channel argmax count."""

import numpy as np
import pandas as pd
import pytest

from segact.report import paired
from segact.report.sections import argmax_agreement_table
from segact.report.stats import Comparison

NOISE = np.array([0.002, -0.0024, 0.0008, 0.003, -0.0034])
"""Added to sigmoid's folds: the pairs' spread (mean 0)."""


def _folds(rows: list[tuple[str, str, float, float]], other: str = "arctan") -> pd.DataFrame:
    """rows: (dataset, loss, mean sigmoid, mean ``other``); 3 seeds x 5 folds each."""
    return pd.DataFrame(
        [
            {
                "dataset": dataset,
                "loss": loss,
                "activation": activation,
                "seed": seed,
                "fold": fold,
                "best_dice": mean + (NOISE[fold] * (1 + seed) if activation == "sigmoid" else 0),
            }
            for dataset, loss, sigmoid, mean_other in rows
            for activation, mean in (("sigmoid", sigmoid), (other, mean_other))
            for seed in range(3)
            for fold in range(5)
        ]
    )


def _results(folds: pd.DataFrame, paper_claims: bool = True, other: str = "arctan"):
    framing = paired.Framing(paper_claims=paper_claims)
    comparison = Comparison("activation", "sigmoid", other)
    return paired.compare(folds, [comparison], pd.DataFrame(), framing), framing


def test_each_real_dataset_counts_once_next_to_the_papers_figures():
    folds = _folds(
        [
            ("kvasir_seg", "dice", 0.70, 0.705),
            ("ph2", "dice", 0.90, 0.91),
            ("synthetic", "dice", 0.50, 0.40),  # left out: not a medical set
        ]
    )
    results, _ = _results(folds)
    table = paired.claims_table(results)
    row = table[(table["scope"] == "learned") & (table["method"] == "equal")].iloc[0]
    assert row["datasets"] == "kvasir_seg, ph2" and row["k"] == 2
    assert row["relative_percent"] == pytest.approx(100 * -0.0075 / 0.8075)  # of b's mean
    assert row["claimed_relative_percent"] == pytest.approx(100 * -0.02 * 0.80 / 0.8075)
    assert (row["paper_mean_a"], row["paper_relative_percent"]) == (0.7266, 2.0)
    assert row["sign_test_p"] == pytest.approx(0.5)  # behind on 2 of 2: 2 * 0.5**2
    assert set(table["method"]) == {"random_hksj", "random_dl", "fixed", "equal"}
    assert set(table["scope"]) == {"learned", "all"}


def test_a_claim_the_runs_do_not_have_gives_no_row():
    folds = _folds([("ph2", "dice", 0.8, 0.8), ("kvasir_seg", "dice", 0.8, 0.8)], "softsign")
    results, _ = _results(folds, other="softsign")
    assert paired.claims_table(results).empty


def test_pooled_verdict_reads_the_claim():
    # kvasir and ph2 about 0.016 behind: the paper's 2 % of sigmoid's 0.8
    folds = _folds([("kvasir_seg", "dice", 0.80, 0.8155), ("ph2", "dice", 0.80, 0.8165)])
    results, _ = _results(folds)
    table = paired.claims_table(results)
    assert set(table["verdict"]) == {"replicates"}
    assert np.isfinite(table["sign_test_p"]).all()
    assert (table["tost_p_at_claim"] > 0.05).all()  # not smaller than claimed


def test_without_paper_claims_no_claim_frames_a_comparison(tmp_path):
    folds = _folds([("kvasir_seg", "dice", 0.80, 0.8155), ("ph2", "dice", 0.80, 0.8165)])
    results, framing = _results(folds, paper_claims=False)
    assert "claimed" not in results[0].summary.columns
    assert "claimed" not in results[0].pooled.columns
    assert set(results[0].pooled["verdict"]) <= {"b better", "inconclusive"}
    assert paired.claims_sections(results, framing, tmp_path) == []
    assert not (tmp_path / "paper_claims.csv").exists()


def test_one_dataset_has_no_pooled_rows_and_no_paper_section(tmp_path):
    folds = _folds([("kvasir_seg", "dice", 0.80, 0.8155), ("synthetic", "dice", 0.5, 0.5)])
    results, framing = _results(folds)
    assert results[0].pooled.empty
    lines = paired.comparison_sections(results, folds, framing, tmp_path)
    text = "\n".join(lines)
    assert "## Pooled" not in text and "## The paper's claims" not in text
    assert not (tmp_path / "meta_analysis.csv").exists()
    assert not (tmp_path / "paper_claims.csv").exists()
    assert "prediction interval" not in text.lower()


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
