"""segact-report on hostile input: junk and out-of-range values, huge files, run folders named
outside the sources, an ``--out`` that would overwrite a file, a source or a run, runs with only
some of their folds, and runs whose summary.json disagrees with their rows. Each is one clear
line (exit 2) before anything is written, or a note in report.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segact.report import cli as report
from segact.runs.folder import MAX_RESULT_ROWS, READ_CHUNK_ROWS, RunFolder
from tests.report_fixtures import ARCTAN, SIGMOID, write_run

FOLDS = {"trainer.folds": 5}
"""The identity setting that says how many folds a run has (the fixtures' runs: five)."""


def _fails(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    """Run segact-report, expect exit 2 and one error line; that line."""
    assert report.main([*map(str, args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segact-report: error: ") and "Traceback" not in err
    assert err.count("\n") == 1
    return err


def _report(out: Path, *args: object) -> str:
    """Run segact-report into ``out`` (no figures); its report.md."""
    assert report.main([*map(str, args), "--out", str(out), "--no-figures"]) == 0
    return (out / "report.md").read_text()


def _rewrite(run: Path, change: dict[str, object]) -> None:
    """Replace columns of a run's folds.csv (as text where given as text)."""
    folds = pd.read_csv(RunFolder(run).folds_csv, dtype=str)
    folds.assign(**change).to_csv(RunFolder(run).folds_csv, index=False)


def _summary(run: Path, **changes: object) -> None:
    summary = RunFolder(run).read_summary()
    RunFolder(run).summary_json.write_text(json.dumps({**summary, **changes}))


def _record(run: Path) -> None:
    """Record the run's result files as they are now in its summary.json (a state the runner
    wrote, not a hand edit, which the report would refuse: test_safe_report.py)."""
    RunFolder(run).write_summary(RunFolder(run).read_summary())


# --- values -----------------------------------------------------------------------------------


def test_a_huge_junk_csv_fails_at_its_first_chunk(tmp_path, capsys):
    """200 000 junk rows under a real header: refused at row 1, long before the line that
    pandas could not even split (it is never parsed, so the file was not read whole)."""
    run = write_run(tmp_path / "sweep", "sigmoid", SIGMOID)
    header = pd.read_csv(RunFolder(run).folds_csv, nrows=0).columns
    junk = tmp_path / "junk.csv"
    row = ",".join(["junk"] * len(header)) + "\n"
    broken = 3 * READ_CHUNK_ROWS  # a line of too many fields, well past the first chunk
    junk.write_text(
        ",".join(header) + "\n" + row * broken + "a," * len(header) + "\n" + row * 100_000
    )
    err = _fails(capsys, junk, "--out", tmp_path / "out")
    assert f"{junk}, row 1 (line 2), column " in err and "'junk' is not a number" in err
    assert not (tmp_path / "out").exists()


def test_a_csv_longer_than_any_result_file_is_refused(tmp_path, capsys):
    run = write_run(tmp_path / "sweep", "sigmoid", SIGMOID)
    rows = pd.read_csv(RunFolder(run).folds_csv).iloc[:1]
    long = tmp_path / "long.csv"
    text = rows.to_csv(index=False).splitlines()
    long.write_text(text[0] + "\n" + (text[1] + "\n") * (MAX_RESULT_ROWS + 1))
    err = _fails(capsys, long, "--out", tmp_path / "out")
    assert f"{long} has more than {MAX_RESULT_ROWS} rows" in err


@pytest.mark.parametrize(
    ("column", "value", "says"),
    [
        ("best_dice", "abc", "'abc' is not a number"),
        ("nll", "high", "'high' is not a number"),
        ("best_dice", "7.5", "7.5 is out of range (a Dice score, threshold or ECE lies in [0, 1])"),
        ("best_dice", "-3", "-3.0 is out of range"),
        ("mean_dice", "1.01", "1.01 is out of range"),
        ("best_threshold", "1.5", "1.5 is out of range"),
        ("paper_nll", "-0.1", "-0.1 is out of range (an NLL, norm, rate or time is >= 0)"),
        ("fold", "-1", "-1 is out of range (a count or index is >= 0)"),
        ("degenerate", "maybe", "'maybe' is no flag"),
        ("status", "done", "'done' is no status"),
    ],
)
def test_junk_or_out_of_range_values_name_file_row_and_column(
    tmp_path, capsys, column, value, says
):
    sweep = tmp_path / "sweep"
    run = write_run(sweep, "sigmoid", SIGMOID)
    write_run(sweep, "arctan", ARCTAN)
    folds = pd.read_csv(RunFolder(run).folds_csv, dtype=str)
    folds.loc[2, column] = value
    folds.to_csv(RunFolder(run).folds_csv, index=False)
    err = _fails(capsys, sweep, "--out", tmp_path / "out")
    assert f"{RunFolder(run).folds_csv}, row 3 (line 4), column {column}: {says}" in err
    assert not (tmp_path / "out").exists()


def test_a_threshold_count_below_zero_in_thresholds_csv_is_refused(tmp_path, capsys):
    run = write_run(tmp_path / "sweep", "sigmoid", SIGMOID)
    thresholds = pd.read_csv(RunFolder(run).thresholds_csv)
    thresholds.loc[4, "fp"] = -5
    thresholds.to_csv(RunFolder(run).thresholds_csv, index=False)
    err = _fails(capsys, tmp_path / "sweep", "--out", tmp_path / "out")
    assert f"{RunFolder(run).thresholds_csv}, row 5 (line 6), column fp: -5" in err


def test_empty_metrics_stay_allowed(tmp_path):
    """A failed row has no numbers; an ok row may lack one (NaN): both as before."""
    sweep = tmp_path / "sweep"
    write_run(sweep, "sigmoid", SIGMOID, overrides={1: {"nll": np.nan}})
    write_run(sweep, "arctan", ARCTAN)
    write_run(sweep, "hardtanh", [0.1], status="failed")
    assert "## Failed runs" in _report(tmp_path / "out", sweep)


# --- run folders outside the sources ------------------------------------------------------------


@pytest.fixture
def epochs_read(monkeypatch) -> list[Path]:
    """The run folders whose epochs.csv the report reads (resolved)."""
    read: list[Path] = []
    original = RunFolder.read_epochs

    def spy(self: RunFolder, *args: object) -> pd.DataFrame:
        read.append(self.path.resolve())
        return original(self, *args)

    monkeypatch.setattr(RunFolder, "read_epochs", spy)
    return read


@pytest.mark.parametrize("how", ["absolute", "symlink"])
def test_run_dirs_outside_the_sources_are_never_read(tmp_path, epochs_read, how):
    outside = write_run(tmp_path / "elsewhere", "arctan", ARCTAN)
    given = tmp_path / "given"
    inside = write_run(given, "sigmoid", SIGMOID)
    (given / "link").symlink_to(outside.parent, target_is_directory=True)
    named = outside if how == "absolute" else given / "link" / outside.name
    rows = pd.read_csv(RunFolder(outside).folds_csv).assign(run_dir=str(named))
    rows.to_csv(tmp_path / "results.csv", index=False)
    text = _report(tmp_path / "out", tmp_path / "results.csv", given)
    assert outside.resolve() not in epochs_read
    assert inside.resolve() in epochs_read  # a run inside the sources is read as before
    assert f"1 run folder(s) a results CSV names lie outside the folders given (e.g. {named})" in (
        text
    )


# --- --out ------------------------------------------------------------------------------------


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    write_run(root, "sigmoid", SIGMOID)
    write_run(root, "arctan", ARCTAN)
    return root


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_naming_an_existing_file_is_refused(tmp_path, sweep, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    err = _fails(capsys, sweep, "--out", existing)
    assert f"--out {existing}: {existing} is a file, not a folder" in err
    assert existing.read_text() == "mine"
    err = _fails(capsys, sweep, "--out", existing / "report")
    assert "is a file, not a folder" in err


@pytest.mark.parametrize("where", ["run", "inside_run", "source"])
def test_out_naming_a_run_or_a_source_is_refused_before_writing(tmp_path, sweep, capsys, where):
    run = next(p.parent for p in sorted(sweep.rglob("folds.csv")))
    out = {"run": run, "inside_run": run / "report", "source": sweep}[where]
    before = _snapshot(sweep)
    err = _fails(capsys, sweep, "--out", out)
    says = {
        "run": f"is the run folder {run.resolve()}",
        "inside_run": f"is inside the run folder {run.resolve()}",
        "source": f"is the source {sweep}",
    }
    assert f"--out {out} {says[where]}" in err
    assert _snapshot(sweep) == before  # the run's thresholds.csv and every other file as they were
    assert not (run / "report").exists()


# --- runs with only some folds ------------------------------------------------------------------


@pytest.mark.parametrize("state", ["fewer_rows", "no_summary", "incomplete"])
def test_a_run_with_only_some_folds_is_named(tmp_path, state):
    sweep = tmp_path / "sweep"
    write_run(sweep, "sigmoid", SIGMOID, settings=FOLDS)
    partial = write_run(sweep, "arctan", ARCTAN[:1], settings=FOLDS, folder="arctan/seed0")
    if state == "no_summary":  # fold jobs (trainer.fold=k): summary.json once all are done
        RunFolder(partial).summary_json.unlink()
    elif state == "incomplete":
        _summary(partial, status="incomplete")
    text = _report(tmp_path / "out", sweep)
    assert "- 1 run(s) have only some of their folds: arctan/seed0 (1 of 5)." in text
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert (table["status"] == "ok").all() and len(table) == 6  # counted, and said so


def test_a_run_missing_a_middle_fold_is_named(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep, "sigmoid", SIGMOID)
    gap = write_run(sweep, "arctan", ARCTAN, folder="arctan/seed0")
    folds = pd.read_csv(RunFolder(gap).folds_csv)
    folds[folds["fold"] != 2].to_csv(RunFolder(gap).folds_csv, index=False)
    _record(gap)
    assert "only some of their folds: arctan/seed0 (4 of 5)" in _report(tmp_path / "out", sweep)


def test_complete_runs_get_no_fold_note(tmp_path, sweep):
    assert "only some of their folds" not in _report(tmp_path / "out", sweep)


# --- summary.json against the rows ------------------------------------------------------------


@pytest.mark.parametrize("state", ["summary_failed", "failed_row_beside_ok_summary"])
def test_a_run_whose_summary_disagrees_is_left_out_and_named(tmp_path, state):
    sweep = tmp_path / "sweep"
    write_run(sweep, "sigmoid", SIGMOID)
    write_run(sweep, "normal_cdf", ARCTAN)
    odd = write_run(sweep, "arctan", ARCTAN, folder="arctan/seed0")
    if state == "summary_failed":  # a failed rerun (another config?) beside the old ok rows
        _summary(odd, status="failed", error="RuntimeError: boom")
    else:
        folds = pd.read_csv(RunFolder(odd).folds_csv)
        failed = folds.iloc[:1].assign(fold=5, status="failed", best_dice=np.nan)
        pd.concat([folds, failed]).to_csv(RunFolder(odd).folds_csv, index=False)
        _record(odd)
    text = _report(tmp_path / "out", sweep, "--pair", "sigmoid", "normal_cdf")
    assert "- 1 run(s) left out of the tables and statistics: their summary.json's status" in text
    assert "status=inconsistent: arctan/seed0." in text
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    arctan = results[results["activation"] == "arctan"]
    assert (arctan.loc[arctan["fold"] < 5, "status"] == "inconsistent").all()
    assert arctan["error"].str.startswith("summary.json says").sum() == 5
    table = (tmp_path / "out" / "table_dataset_toy.md").read_text()
    assert "arctan" not in table  # no cell of it
    paired = pd.read_csv(tmp_path / "out" / "paired_summary.csv")
    assert set(paired["b"]) == {"normal_cdf"}
