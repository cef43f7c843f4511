"""The report's holdout section: how much Dice the threshold tuned on the reported images adds."""

import pandas as pd
import pytest

from segact.report.threshold_choice import threshold_choice_sections, threshold_choice_table


def _folds(protocol: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": ["a", "a", "b", "b"],
            "loss": "dice",
            "activation": ["sigmoid", "sigmoid", "sigmoid", "sigmoid"],
            "protocol": protocol,
            "best_dice": [0.70, 0.80, 0.50, 0.60],
            "oracle_best_dice": [0.72, 0.81, 0.50, 0.64],
        }
    )


def test_holdout_folds_give_the_difference_per_row_and_dataset(tmp_path):
    table = threshold_choice_table(_folds("holdout"), ["loss", "activation"])
    assert table["dataset"].tolist() == ["a", "b"]
    assert table["folds"].tolist() == [2, 2]
    assert table["difference"].tolist() == pytest.approx([0.015, 0.02])
    assert table["difference_max"].tolist() == pytest.approx([0.02, 0.04])
    lines = threshold_choice_sections(_folds("holdout"), ["loss", "activation"], tmp_path)
    said = next(line for line in lines if "Over 4 folds" in line)
    assert "adds 0.0175 Dice on average" in said
    assert (tmp_path / "threshold_choice.csv").is_file()


def test_no_section_without_holdout_folds(tmp_path):
    assert threshold_choice_sections(_folds("paper"), ["loss"], tmp_path) == []
    assert not (tmp_path / "threshold_choice.csv").exists()
