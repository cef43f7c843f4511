"""segact.report.tables: rows split by every differing setting, cells that say how many folds they
average, the paper's layout under both aggregations."""

import numpy as np
import pandas as pd
import pytest

from segact.report import tables
from segact.runs.folder import summary_numbers
from segact.runs.identity import row_keys


def _folds(**columns) -> pd.DataFrame:
    """Ten fold rows: loss dice, sigmoid/arctan alternating, best Dice 0.60 .. 0.69."""
    base = {
        "dataset": "toy",
        "loss": "dice",
        "activation": ["sigmoid", "arctan"] * 5,
        "fold": np.repeat(range(5), 2),
        "status": "ok",
        "best_dice": np.arange(10) / 100 + 0.6,
        "nll": np.arange(10) / 10,
        "best_threshold": 0.5,
        "threshold_averaged_dice": 0.5,
    }
    return pd.DataFrame({**base, **columns})


def test_rows_split_by_a_differing_setting_and_not_by_its_alias():
    lr = [0.001] * 6 + [0.1] * 4
    folds = _folds(lr=lr, **{"trainer.lr": [str(x) for x in lr], "trainer.seed": range(10)})
    assert row_keys(folds) == ["dataset", "loss", "activation", "lr"]
    table = tables.paper_table(folds, ["activation", "lr"])
    assert table[("n", "")].tolist() == [3, 2, 3, 2]  # arctan/sigmoid x 0.001/0.1
    assert tables.hidden_settings(folds, ["activation", "lr"]) == []  # trainer.lr is lr
    confounded = _folds(lr=[0.001, 0.1] * 5, **{"activation.eps": ["1e-7", "1e-6"] * 5})
    assert row_keys(confounded) == ["dataset", "loss", "activation"]
    assert tables.hidden_settings(confounded, ["activation"]) == ["lr"]


def test_a_setting_that_follows_the_dataset_makes_no_row():
    folds = pd.concat(
        [
            _folds(dataset="a", **{"dataset.root": "/data/a"}),
            _folds(dataset="b", **{"dataset.root": "/data/b"}),
            _folds(dataset="b", **{"dataset.root": "/data/c"}),
        ]
    )
    assert row_keys(folds) == ["dataset", "loss", "activation", "dataset.root"]
    assert row_keys(folds.iloc[:20]) == ["dataset", "loss", "activation"]


def test_cells_show_mean_std_and_n_of_non_nan_values():
    folds = _folds(best_dice=[0.6, 0.7, np.nan, 0.7, 0.8, 0.7, 0.6, 0.7, 0.6, 0.7])
    folds.loc[folds["activation"] == "arctan", "nll"] = np.nan
    table = tables.paper_table(folds, ["activation"])
    cells = tables.format_cells(table, {"best_dice": "best", "nll": "NLL"}, "markdown", rank=True)
    sigmoid = folds[folds["activation"] == "sigmoid"]["best_dice"].dropna()
    arctan = cells.set_index("activation")
    assert arctan.loc["sigmoid", "best"] == f"{sigmoid.mean():.3f} ± {sigmoid.std():.3f} (n=4)"
    assert arctan.loc["arctan", "best"] == "**0.700** ± 0.000"
    assert arctan.loc["arctan", "NLL"] == "—"
    assert arctan["n"].tolist() == [5, 5]
    markdown = tables.format_paper_table(table, "markdown")
    assert tables.NAN_NOTE in markdown


def test_one_value_has_no_std():
    table = tables.metric_table(_folds().iloc[:1], ["activation"], ["best_dice"])
    assert tables.format_cells(table, {"best_dice": "d"})["d"].tolist() == ["0.600"]


def test_lower_nll_is_best_and_the_threshold_is_not_ranked():
    table = tables.paper_table(_folds(best_threshold=[0.3, 0.7] * 5), ["activation"])
    latex = tables.format_paper_table(table, "latex", title="dataset toy")
    arctan, sigmoid = [line.split(" & ") for line in latex.splitlines() if " & " in line][1:]
    assert arctan[:2] == ["arctan", "0.700 $\\pm$ 0.000"]  # the highest threshold: not ranked
    assert sigmoid[2] == "\\textbf{0.400} $\\pm$ 0.316"  # NLL: lower is better
    assert arctan[3] == "\\textbf{0.650} $\\pm$ 0.032"  # best Dice: higher is better
    assert "\\caption{dataset toy: aggregation selected" in latex


def test_paper_aggregation_uses_the_paper_columns():
    folds = _folds(paper_best_dice=0.9, paper_threshold_averaged_dice=0.8, paper_nll=0.2)
    table = tables.paper_table(folds, ["activation"], "paper")
    markdown = tables.format_paper_table(table, "markdown", "paper", title="toy")
    assert markdown.startswith("Table: toy: aggregation paper (as the paper's generate_table.py)")
    header_line = next(line for line in markdown.splitlines() if line.startswith("|"))
    header = [cell.strip() for cell in header_line.split("|")]
    assert "threshold" not in header  # no threshold column
    assert "| **0.900** ± 0.000 |" in markdown


def test_dice_table_of_one_run_and_of_a_sweep():
    one_run = _folds(activation="sigmoid")
    assert tables.dice_table(one_run)["dataset"].tolist() == ["toy"]
    lr = [0.001] * 6 + [0.1] * 4
    sweep = tables.dice_table(_folds(lr=lr).assign(status=["ok"] * 9 + ["failed"]))
    assert sweep[["activation", "lr", "folds"]].values.tolist() == [
        ["arctan", 0.001, 3],
        ["arctan", 0.1, 1],
        ["sigmoid", 0.001, 3],
        ["sigmoid", 0.1, 2],
    ]
    assert "± " in tables.format_table(sweep)
    all_failed = tables.dice_table(_folds(status="failed"))  # the sweep callback, nothing done
    metrics = ["best_dice", "threshold_averaged_dice", "best_threshold", "nll"]
    assert all_failed.empty and list(all_failed.columns) == ["dataset", *metrics, "folds"]


def test_summarize_numbers_covers_the_paper_columns():
    folds = _folds(paper_nll=[0.1, np.nan] * 5)
    numbers = summary_numbers(folds)
    assert numbers["paper_nll_mean"] == pytest.approx(0.1)
    assert numbers["paper_nll_std"] == 0.0
    assert numbers["best_dice_mean"] == pytest.approx(0.645)
    assert numbers["best_dice_std"] == pytest.approx(np.std(np.arange(10) / 100, ddof=1))
