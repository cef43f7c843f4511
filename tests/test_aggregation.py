import numpy as np
import pandas as pd
import pytest

from segact.evaluation.aggregation import all_foreground_dice, is_degenerate, paper_aggregates


def test_each_paper_aggregate_takes_its_own_best_epoch():
    epochs = pd.DataFrame(
        {
            "fold": [0] * 5,
            "epoch": [1, 2, 3, 4, 5],
            "val_best_dice": [0.70, 0.81, 0.79, np.nan, 0.78],
            "val_threshold_averaged_dice": [0.50, 0.60, 0.66, 0.64, np.nan],
            "val_nll": [0.40, 0.35, 0.33, 0.31, 0.36],
        }
    )
    assert paper_aggregates(epochs) == {
        "paper_best_dice": 0.81,  # epoch 2
        "paper_threshold_averaged_dice": 0.66,  # epoch 3
        "paper_nll": 0.31,  # epoch 4
    }


def test_nan_epochs_as_generate_table_treats_them():
    epochs = pd.DataFrame(
        {
            "val_best_dice": [np.nan, np.nan],
            "val_threshold_averaged_dice": [np.nan] * 2,
            "val_nll": [np.nan] * 2,
        }
    )
    got = paper_aggregates(epochs)
    assert got["paper_best_dice"] == 0.0  # best_dice starts at 0 in generate_table.py
    assert np.isnan(got["paper_threshold_averaged_dice"]) and np.isnan(got["paper_nll"])


@pytest.mark.parametrize(
    "epochs",
    [
        pd.DataFrame({"val_best_dice": [0.5], "val_nll": [0.1]}),
        pd.DataFrame({"val_best_dice": [], "val_threshold_averaged_dice": [], "val_nll": []}),
        pd.DataFrame(
            {
                "fold": [0, 1],
                "val_best_dice": [0.5] * 2,
                "val_threshold_averaged_dice": [0.4] * 2,
                "val_nll": [1] * 2,
            }
        ),
    ],
    ids=["missing-column", "empty", "two-folds"],
)
def test_bad_epoch_tables_are_refused(epochs):
    with pytest.raises(ValueError):
        paper_aggregates(epochs)


GRID = [0.0, 0.25, 0.5, 0.75, 1.0]


def table(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    """A thresholds table from (tp, fp, fn, tn) per grid point."""
    frame = pd.DataFrame(rows, columns=["tp", "fp", "fn", "tn"])
    frame.insert(0, "threshold", GRID[: len(rows)])
    frame["dice"] = 2 * frame.tp / (2 * frame.tp + frame.fp + frame.fn)
    return frame


# 100 pixels, 30 positives; all-foreground Dice = 60 / 130.
ALL_FOREGROUND = table([(30, 70, 0, 0)] * 5)
ALL_BACKGROUND = table([(30, 70, 0, 0)] + [(0, 0, 30, 70)] * 4)
HEALTHY = table([(30, 70, 0, 0), (29, 20, 1, 50), (27, 5, 3, 65), (20, 2, 10, 68), (0, 0, 30, 70)])
# Best at the first grid point, but the model already separates: informative, not trivial.
EDGE_INFORMATIVE = table([(28, 10, 2, 60), (20, 4, 10, 66), (12, 1, 18, 69), (5, 0, 25, 70)])
# 1000 pixels, 30 positives; best at the first grid point with 98 % foreground, scoring within
# 0.005 of what all-foreground scores.
EDGE_TRIVIAL = table([(30, 950, 0, 20), (20, 900, 10, 70), (10, 500, 20, 470), (0, 0, 30, 970)])


@pytest.mark.parametrize(
    ("name", "frame", "threshold", "expected"),
    [
        ("all-foreground", ALL_FOREGROUND, 0.0, True),
        ("all-foreground-at-0.5", ALL_FOREGROUND, 0.5, True),
        ("all-background", ALL_BACKGROUND, 0.5, True),
        ("healthy", HEALTHY, 0.5, False),
        ("healthy-reported-at-0", HEALTHY, 0.0, True),
        ("edge-informative", EDGE_INFORMATIVE, 0.0, False),
        ("edge-trivial", EDGE_TRIVIAL, 0.0, True),
    ],
)
def test_is_degenerate(name, frame, threshold, expected):
    assert is_degenerate(frame, threshold) is expected, name


def test_edge_trivial_case_is_caught_by_the_dice_rule_alone():
    row = EDGE_TRIVIAL.iloc[0]
    foreground = (row.tp + row.fp) / 1000
    assert 0.01 < foreground < 0.99
    assert abs(row.dice - all_foreground_dice(30, 970)) <= 0.005


def test_threshold_outside_the_grid_is_refused():
    with pytest.raises(ValueError, match="not in the table"):
        is_degenerate(HEALTHY, 0.3)


def test_all_foreground_dice():
    assert all_foreground_dice(30, 70) == pytest.approx(60 / 130)
    assert all_foreground_dice(0, 10) == 0.0 and all_foreground_dice(0, 0) == 1.0
