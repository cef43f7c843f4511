"""The threshold-averaged Dice was called ``mean_dice`` until 2026-12-01: old result files read
under today's name, the old option still works, and finished runs keep their identity."""

import pandas as pd
import pytest

from segact.evaluation.aggregation import paper_aggregates
from segact.evaluation.sweep import SweepResult
from segact.runs import identity
from segact.runs.folder import read_result_csv
from segact.training.checkpoint import renamed_metrics
from segact.training.fitting import EarlyStopping, FoldProgress
from segact.training.selection import SelectMetric
from tests.helpers import composed


def test_old_result_columns_read_under_the_new_name(tmp_path):
    path = tmp_path / "folds.csv"
    pd.DataFrame(
        {"mean_dice": [0.5], "paper_mean_dice": [0.6], "val_mean_dice": [0.4], "best_dice": [0.7]}
    ).to_csv(path, index=False)
    frame = read_result_csv(path)
    assert frame.loc[0, "threshold_averaged_dice"] == 0.5
    assert frame.loc[0, "paper_threshold_averaged_dice"] == 0.6
    assert frame.loc[0, "val_threshold_averaged_dice"] == 0.4
    assert not {"mean_dice", "paper_mean_dice", "val_mean_dice"} & set(frame.columns)


def test_the_former_option_name_is_the_same_setting():
    assert SelectMetric["mean_dice"] is SelectMetric.threshold_averaged_dice
    default = identity.identity(composed(), "cpu", 1)
    former = identity.identity(composed("eval.select_metric=mean_dice"), "cpu", 1)
    assert former == default
    assert default["eval.select_metric"] == "mean_dice"  # as runs recorded it before the rename
    other = identity.identity(composed("eval.select_metric=best_dice"), "cpu", 1)
    assert other["eval.select_metric"] == "best_dice"


def test_a_checkpoint_from_before_the_rename_resumes_under_the_new_names():
    progress = FoldProgress(EarlyStopping(3))
    progress.rows = [{"epoch": 1, "val_best_dice": 0.7, "val_mean_dice": 0.5}]
    progress.best_sweep = SweepResult(pd.DataFrame(), {"best_dice": 0.7, "mean_dice": 0.5})
    resumed = renamed_metrics(progress)
    assert resumed.rows == [{"epoch": 1, "val_best_dice": 0.7, "val_threshold_averaged_dice": 0.5}]
    assert resumed.best_sweep.metrics == {"best_dice": 0.7, "threshold_averaged_dice": 0.5}
    assert paper_aggregates(pd.DataFrame(resumed.rows).assign(val_nll=0.2))[
        "paper_threshold_averaged_dice"
    ] == pytest.approx(0.5)
