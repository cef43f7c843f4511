"""segact.runs.results: run folders and results CSVs -> one frame, each run x fold counted once."""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from segact.errors import ReportError
from segact.report import tables
from segact.runs import results
from segact.runs.folder import FOLDS_CSV, READ_CHUNK_ROWS, RunFolder, read_result_csv
from segact.runs.identity import CHOICES, setting_columns
from tests.report_fixtures import ARCTAN, SIGMOID, write_run, write_sweep


@pytest.fixture
def sweep(tmp_path):
    return write_sweep(tmp_path / "sweep")


def test_identity_columns_come_from_summary_json(tmp_path):
    write_run(tmp_path, "sigmoid", SIGMOID, settings={"dataset.root": "/data/a"})
    folds, thresholds = results.load_results([tmp_path])
    assert folds["dataset.root"].tolist() == ["/data/a"] * 5
    assert folds["eval.thresholds"].iloc[0] == "[0.0, 0.5, 1.0]"  # lists kept as JSON text
    assert "dataset.root" in setting_columns(folds)
    # each setting once: folds.csv's own column stores trainer.lr, activation.name, trainer.seed
    stored = ("trainer.lr", "activation.name", "trainer.seed", "loss.name", "dataset.name")
    assert not set(stored) & set(folds.columns)
    assert folds["lr"].tolist() == [0.001] * 5 and "lr" in setting_columns(folds)
    # every threshold row carries its run's identity
    assert len(thresholds) == 15
    assert set(thresholds["dataset.root"]) == {"/data/a"}
    assert set(thresholds["activation"]) == {"sigmoid"}


@pytest.mark.parametrize("twice", ["same", "parent", "results_csv"])
def test_a_sweep_passed_twice_counts_once(sweep, tmp_path, twice):
    once, once_thresholds = results.load_results([sweep])
    if twice == "results_csv":
        once.to_csv(tmp_path / "results.csv", index=False)
        second = tmp_path / "results.csv"
    else:
        second = {"same": sweep, "parent": tmp_path}[twice]
    notes: list[str] = []
    folds, thresholds = results.load_results([sweep, second], notes=notes)
    assert len(folds) == len(once) == 11
    assert len(thresholds) == len(once_thresholds) == 30
    assert notes == ["11 repeated fold result(s) dropped (the same run passed twice)"]


def test_without_hash_the_resolved_folder_identifies_a_run(sweep, tmp_path):
    for folds_csv in sweep.rglob(FOLDS_CSV):
        pd.read_csv(folds_csv).drop(columns="config_hash").to_csv(folds_csv, index=False)
        (RunFolder(folds_csv.parent).summary_json).unlink()
    folds, _ = results.load_results([sweep, tmp_path / "sweep" / ".." / "sweep"])
    assert len(folds) == 11
    assert "config_hash" not in folds.columns


def test_same_config_in_two_folders_is_one_run(tmp_path):
    write_run(tmp_path / "a", "sigmoid", SIGMOID)
    write_run(tmp_path / "b", "sigmoid", SIGMOID)
    folds, _ = results.load_results([tmp_path])
    assert len(folds) == 5


def test_an_ok_row_wins_over_a_failed_repeat():
    frame = pd.DataFrame(
        {"config_hash": ["h", "h", "g"], "fold": [0, 0, 0], "status": ["failed", "ok", "ok"]}
    )
    kept, dropped = results.deduplicate(frame)
    assert dropped == 1
    assert kept["status"].tolist() == ["ok", "ok"]
    assert kept.index.tolist() == [1, 2]


def test_old_column_names_are_renamed(tmp_path):
    run = write_run(tmp_path, "sigmoid", SIGMOID)
    folds = pd.read_csv(RunFolder(run).folds_csv).assign(dice_per_image=0.5)
    folds.to_csv(RunFolder(run).folds_csv, index=False)
    thresholds = pd.read_csv(RunFolder(run).thresholds_csv).rename(
        columns={"mean_nll_tp": "nll_tp"}
    )
    thresholds.to_csv(RunFolder(run).thresholds_csv, index=False)
    folds, thresholds = results.load_results([tmp_path])
    assert (folds["dice_per_image_at_best_threshold"] == 0.5).all()
    assert "mean_nll_tp" in thresholds and "nll_tp" not in thresholds


def test_missing_flag_columns_are_not_flagged():
    frame = pd.DataFrame({"degenerate": [True, "False", "true", None]})
    assert results.flag(frame, "degenerate").tolist() == [True, False, True, False]
    assert results.flag(frame, "hit_max_epochs").tolist() == [False] * 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["best_dice", "nll"]), "lacks the columns nll, best_dice"),
        (lambda f: f.drop(columns=["loss"]), "lacks the columns loss"),
        (lambda f: f.assign(activation=[None, *f["activation"][1:]]), "no activation name"),
        (lambda f: f.assign(loss=float("nan")), "5 finished row(s) have no loss name"),
    ],
)
def test_unusable_files_are_named(tmp_path, change, message):
    run = write_run(tmp_path, "sigmoid", SIGMOID)
    change(pd.read_csv(RunFolder(run).folds_csv)).to_csv(RunFolder(run).folds_csv, index=False)
    with pytest.raises(ReportError, match=re.escape(message)) as error:
        results.load_results([tmp_path], metrics=tables.AGGREGATIONS["selected"])
    assert str(RunFolder(run).folds_csv) in str(error.value)


def test_paper_metrics_are_required_only_when_asked(tmp_path):
    run = write_run(tmp_path, "sigmoid", SIGMOID)
    folds = pd.read_csv(RunFolder(run).folds_csv).drop(columns=["paper_nll"])
    folds.to_csv(RunFolder(run).folds_csv, index=False)
    assert len(results.load_results([tmp_path])[0]) == 5
    with pytest.raises(ReportError, match="lacks the columns paper_nll"):
        results.load_results([tmp_path], metrics=("paper_nll", "paper_best_dice"))


def test_a_failed_run_needs_no_names_or_metrics(tmp_path):
    write_run(tmp_path, "sigmoid", SIGMOID)
    failed = tmp_path / "failed"
    failed.mkdir()
    row = {**dict.fromkeys(CHOICES), "seed": 0, "fold": 0, "status": "failed"}
    pd.DataFrame([row]).to_csv(RunFolder(failed).folds_csv, index=False)
    folds, _ = results.load_results([tmp_path])
    assert folds["status"].tolist() == ["ok"] * 5 + ["failed"]


def test_collect_sweep_for_the_callback(sweep, tmp_path):
    folds = results.collect_sweep(sweep)
    assert len(folds) == 11
    assert folds["lr"].notna().all() and "trainer.lr" not in folds.columns
    assert results.collect_sweep(tmp_path / "empty").empty


def test_a_setting_is_read_once_from_files_that_stored_it_twice(sweep, tmp_path):
    """A results.csv of an older version kept ``trainer.lr`` beside ``lr``: read as one ``lr``.
    A folds.csv without ``lr`` keeps the identity's ``trainer.lr``: nothing is lost."""
    folds, _ = results.load_results([sweep])
    old = tmp_path / "old_results.csv"
    copies = {"trainer.lr": folds["lr"].astype(str), "activation.name": folds["activation"]}
    folds.assign(**copies).to_csv(old, index=False)
    again, _ = results.load_results([old])
    assert "trainer.lr" not in again.columns and "activation.name" not in again.columns
    assert again["lr"].tolist() == folds["lr"].tolist()
    run = next(RunFolder(p.parent) for p in sorted(sweep.rglob(FOLDS_CSV)))
    pd.read_csv(run.folds_csv).drop(columns="lr").to_csv(run.folds_csv, index=False)
    assert set(run.read_folds()["trainer.lr"]) == {"0.001"}


@pytest.mark.slow
def test_results_and_tables_import_no_plotting_or_scipy():
    heavy = "sorted(m for m in ('matplotlib', 'scipy', 'torch') if m in sys.modules)"
    code = (
        f"import sys, segact.report.tables, segact.runs.results; print({heavy}); "
        f"import segact.report.build; print({heavy})"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # the report needs scipy.stats for its statistics, but plots (matplotlib, torch) only later
    assert out.stdout.split("\n")[:2] == ["[]", "['scipy']"]


def test_arctan_numbers_are_read_as_written(sweep):
    folds, _ = results.load_results([sweep])
    arctan = folds[folds["activation"] == "arctan"].sort_values("fold")
    assert arctan["best_dice"].tolist() == ARCTAN


def test_only_the_columns_the_report_reads_are_kept_typed(tmp_path, caplog):
    """Unknown columns are never parsed, and named in a warning; text stays text (a hash that
    looks like a number, here like 8e10, is no float); Dice-like numbers are floats, counts as
    written."""
    path = tmp_path / FOLDS_CSV
    pd.DataFrame(
        {
            "config_hash": ["8029305e10444551", "0123456789012345"],
            "seed": [0, 1],
            "best_dice": [1, 0],
            "notes_by_hand": ["x", "y"],
            "trainer.lr": ["0.001", "0.01"],
            "dice_per_image": [0.5, 0.25],  # an older version's name
        }
    ).to_csv(path, index=False)
    frame = read_result_csv(path)
    assert list(frame.columns) == [
        "config_hash", "seed", "best_dice", "trainer.lr", "dice_per_image_at_best_threshold"
    ]  # fmt: skip
    assert frame["config_hash"].tolist() == ["8029305e10444551", "0123456789012345"]
    assert frame["trainer.lr"].tolist() == ["0.001", "0.01"]
    assert frame["best_dice"].dtype == "float64" and frame["seed"].dtype == "int64"
    assert "notes_by_hand are not in segact's result schema" in caplog.text


def test_a_file_of_several_chunks_reads_as_one(tmp_path):
    """Chunks join to what one read of the file gives (int columns stay int, NaN where empty)."""
    rows = 2 * READ_CHUNK_ROWS + 7
    frame = pd.DataFrame(
        {
            "fold": np.arange(rows) % 5,
            "threshold": np.linspace(0, 1, rows),
            "tp": np.arange(rows),
            "mean_nll_tp": np.where(np.arange(rows) > READ_CHUNK_ROWS, np.nan, 0.5),
        }
    )
    path = tmp_path / "thresholds.csv"
    frame.to_csv(path, index=False)
    read = read_result_csv(path)
    pd.testing.assert_frame_equal(read, pd.read_csv(path))
