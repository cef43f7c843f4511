"""segact-report with result files edited since their runs finished, and with an ``--out`` that
holds an earlier report, receives two reports at once, or is interrupted (issue 30, items 7
and 8): an edited file is refused by name unless trusted; ``--out`` ends as one whole report,
or as it was."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from pathlib import Path

import pandas as pd
import pytest

from segact.report import build, sections
from segact.report import cli as report
from segact.runs.folder import EPOCHS_CSV, FOLDS_CSV, THRESHOLDS_CSV, RunFolder
from tests.report_fixtures import ARCTAN, SIGMOID, write_run


def _sweep(root: Path, datasets: tuple[str, ...] = ("toy",)) -> Path:
    """sigmoid and arctan on each dataset (several datasets: a pooled estimate and its forest
    plot, files a one-dataset report does not write)."""
    for dataset in datasets:
        write_run(root, "sigmoid", SIGMOID, keys={"dataset": dataset})
        write_run(root, "arctan", ARCTAN, keys={"dataset": dataset})
    return root


def _run(sweep: Path, activation: str) -> RunFolder:
    return next(RunFolder(p.parent) for p in sorted(sweep.rglob(FOLDS_CSV)) if activation in str(p))


def _main(*args: object) -> int:
    return report.main([*map(str, args), "--no-figures"])


def _checksums(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file below ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _edit(path: Path, row: int, column: str, value: float) -> None:
    """Change one in-range number of a result file, as by hand."""
    frame = pd.read_csv(path)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)


# --- item 7: edited result files --------------------------------------------------------------


def _with_epochs(run: RunFolder) -> None:
    """Give the run an epochs.csv, recorded in its summary.json like the other files."""
    epochs = pd.DataFrame(
        [
            {
                "fold": f,
                "epoch": e,
                "val_best_dice": 0.1 * e,
                "val_threshold_averaged_dice": 0.05 * e,
            }
            for f in range(5)
            for e in (1, 2)
        ]
    )
    run.write_epochs(epochs)
    run.write_summary(run.read_summary())  # an ok summary records every result file's SHA-256


@pytest.mark.parametrize(
    ("name", "column", "value"),
    [
        (FOLDS_CSV, "best_dice", 0.95),
        (THRESHOLDS_CSV, "dice", 0.4),
        (EPOCHS_CSV, "val_best_dice", 0.9),
    ],
)
def test_an_edited_result_file_is_refused_naming_it(tmp_path, capsys, name, column, value):
    sweep = _sweep(tmp_path / "sweep")
    run = _run(sweep, "arctan")
    _with_epochs(run)
    _edit(run.path / name, 0, column, value)
    assert _main(sweep, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"segact-report: error: {run.path / name} differs from the SHA-256 ")
    assert "--trust-edits" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_trust_edits_reads_the_edited_number_and_says_so(tmp_path):
    sweep = _sweep(tmp_path / "sweep")
    run = _run(sweep, "arctan")
    _edit(run.folds_csv, 2, "best_dice", 0.95)  # arctan fold 2: 0.65 -> 0.95
    assert _main(sweep, "--out", tmp_path / "out", "--trust-edits") == 0
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    arctan = table[table["activation"] == "arctan"].set_index("fold")["best_dice"]
    assert arctan.tolist() == pytest.approx([0.69, 0.73, 0.95, 0.72, 0.66])
    text = (tmp_path / "out" / "report.md").read_text()
    assert (
        "- --trust-edits: 1 result file(s) differ from the SHA-256 their run's summary.json "
        f"recorded when the run finished and were read as they are now: {run.folds_csv}."
    ) in text


def test_a_summary_without_digests_is_read_as_before(tmp_path):
    """A run finished by a segact that recorded no digests: nothing to check it against."""
    sweep = _sweep(tmp_path / "sweep")
    run = _run(sweep, "arctan")
    summary = run.read_summary()
    del summary["files"]
    run.summary_json.write_text(json.dumps(summary))
    _edit(run.folds_csv, 2, "best_dice", 0.95)
    assert _main(sweep, "--out", tmp_path / "out") == 0
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert 0.95 in table["best_dice"].tolist()
    assert "--trust-edits" not in (tmp_path / "out" / "report.md").read_text()


# --- item 8: --out ----------------------------------------------------------------------------


@pytest.fixture
def sweeps(tmp_path) -> tuple[Path, Path]:
    """(two datasets, one dataset): the first's report has files the second's has not."""
    return _sweep(tmp_path / "two", ("toy", "other")), _sweep(tmp_path / "one")


@pytest.fixture
def alone(tmp_path, sweeps) -> dict[Path, dict[str, str]]:
    """Each sweep's report written alone into a fresh folder: its files' checksums."""
    written = {}
    for sweep in sweeps:
        assert _main(sweep, "--out", tmp_path / f"alone_{sweep.name}") == 0
        written[sweep] = _report_files(tmp_path / f"alone_{sweep.name}")
    return written


def _report_files(out: Path) -> dict[str, str]:
    """The checksums of what the report wrote in ``out``: not its manifest, nor others' files."""
    return {
        name: digest
        for name, digest in _checksums(out).items()
        if name not in (build.MANIFEST, "README.md") and not name.startswith("paper_aggregation/")
    }


def test_a_report_removes_what_an_earlier_one_wrote_and_keeps_the_rest(tmp_path, sweeps, alone):
    two, one = sweeps
    out = tmp_path / "out"
    assert _main(two, "--out", out) == 0
    assert {"forest.png", "meta_analysis.csv", "table_dataset_other.md"} <= set(_checksums(out))
    (out / "README.md").write_text("how these numbers were made\n")  # the user's, not a report's
    (out / "paper_aggregation").mkdir()  # another report's folder, inside this one
    (out / "paper_aggregation" / "report.md").write_text("the paper's aggregation\n")
    (tmp_path / "victim.txt").write_text("mine\n")
    kept = {k: v for k, v in _checksums(out).items() if k not in {*alone[two], build.MANIFEST}}
    assert set(kept) == {"README.md", "paper_aggregation/report.md"}
    manifest = json.loads((out / build.MANIFEST).read_text())
    manifest["entries"] += ["../victim.txt", "/etc/passwd"]  # a hostile manifest removes nothing
    (out / build.MANIFEST).write_text(json.dumps(manifest))
    assert _main(one, "--out", out) == 0
    assert _report_files(out) == alone[one]  # forest.png, meta_analysis.csv... gone
    assert {k: v for k, v in _checksums(out).items() if k in kept} == kept
    assert (tmp_path / "victim.txt").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.glob(".out.staging-*")) == []


def test_two_reports_into_one_out_end_as_one_of_them(tmp_path, sweeps, alone, monkeypatch):
    """The first report is held halfway (after its tables, before report.md) while the second
    runs to its end: the first, finishing last, is the whole of ``--out``."""
    two, one = sweeps
    out = tmp_path / "out"
    halfway, second_done = threading.Event(), threading.Event()
    original = sections.failed_sections

    def held(*args, **kwargs):
        if threading.current_thread().name == "first":
            halfway.set()
            assert second_done.wait(120)
        return original(*args, **kwargs)

    monkeypatch.setattr(sections, "failed_sections", held)
    codes: list[int] = []
    first = threading.Thread(target=lambda: codes.append(_main(two, "--out", out)), name="first")
    first.start()
    assert halfway.wait(120)
    try:
        assert _main(one, "--out", out) == 0
    finally:
        second_done.set()
        first.join(120)
    assert codes == [0]
    assert _report_files(out) == alone[two]


@pytest.mark.parametrize("when", ["writing", "publishing"])
def test_ctrl_c_leaves_out_as_it_was_or_whole(tmp_path, sweeps, alone, monkeypatch, capsys, when):
    """Ctrl-C while the report is written: ``--out`` byte for byte as before. While it is
    published (a few renames): published to the end first. One line, exit 130, either way."""
    two, one = sweeps
    out = tmp_path / "out"
    assert _main(two, "--out", out) == 0
    (out / "README.md").write_text("how these numbers were made\n")
    before = _checksums(out)
    capsys.readouterr()
    if when == "writing":

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(sections, "flag_sections", interrupted)
    else:  # Ctrl-C just after publishing removed the first of the earlier report's files
        remove, sent = build._remove, []

        def remove_then_interrupt(path: Path) -> None:
            remove(path)
            if not sent:
                sent.append(path)
                os.kill(os.getpid(), signal.SIGINT)

        monkeypatch.setattr(build, "_remove", remove_then_interrupt)
    assert _main(one, "--out", out) == 130
    assert capsys.readouterr().err == "segact-report: interrupted\n"
    if when == "writing":
        assert _checksums(out) == before
    else:
        assert _report_files(out) == alone[one]
        assert (out / "README.md").read_text() == "how these numbers were made\n"
    assert list(tmp_path.glob(".out.staging-*")) == []
    assert not (out / build.PUBLISH_LOCK).exists()
