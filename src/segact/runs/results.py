"""A sweep's result files -> one frame with one row per run x fold, each run counted once.

Reads every run's ``folds.csv`` (and, for the report, ``thresholds.csv``) below sweep folders,
or tidy ``results.csv`` files a report wrote, and adds each run's ``summary.json`` ``identity``
(every result-changing setting, flat: ``{"trainer.lr": 0.001, ...}``) as columns named by the
dotted key (a top-level key ``k`` as ``config.k``), values as text (lists as JSON). Those
columns let the tables split rows by every setting that differs between runs and let the
paired statistics pair only runs equal in everything but the activation.

No plotting here (nor anything heavy): ``segact-train``'s end-of-sweep callback imports this.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from segact.errors import ReportError
from segact.runs import schema
from segact.runs.folder import (
    FOLDS_CSV,
    ResultEdits,
    RunFolder,
    column_or_nan,
    read_result_csv,
    run_folders,
)
from segact.runs.identity import CHOICES, sort_keys

REQUIRED: tuple[str, ...] = (*CHOICES, "seed", "fold", "status")
"""The columns without which a file is no segact results file."""
FOLD_FLAGS: tuple[str, ...] = (*schema.FLAGS, "best_at_first_epoch")
"""``schema.FLAGS`` as folds.csv records them, then the ones derived from its columns
(``fold_flags``)."""
INCONSISTENT = "inconsistent"
"""The status of ok rows whose run's summary.json says otherwise: they are left out."""
SUMMARY_STATUS = "summary_status"
"""A column while the sources are read: the status summary.json gives the row's run."""


def _read_run(
    run: RunFolder, with_thresholds: bool, edits: ResultEdits | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run folder: its folds (plus identity columns and ``run_path``), its thresholds."""
    folds = run.read_folds(edits)
    return folds, run.read_thresholds(edits) if with_thresholds else pd.DataFrame()


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def flag(folds: pd.DataFrame, name: str) -> pd.Series:
    """A boolean flag column (True/False, any spelling); a missing column or value is False."""
    if name not in folds.columns:
        return pd.Series(False, index=folds.index)
    return folds[name].astype("string").str.lower().isin(["true", "1", "1.0"]).astype(bool)


def best_at_first_epoch(folds: pd.DataFrame) -> pd.Series:
    """Folds that trained past epoch 1 but kept epoch 1 as their best: early stopping ended them
    before any improvement, so their numbers are the barely trained network's (under the paper's
    rule, 11 epochs without a better total Dice, this is where BCE on thin structures stops)."""
    if not {schema.EPOCH_SELECTED, schema.EPOCHS_RUN} <= set(folds.columns):
        return pd.Series(False, index=folds.index)
    selected = pd.to_numeric(folds[schema.EPOCH_SELECTED], errors="coerce")
    trained = pd.to_numeric(folds[schema.EPOCHS_RUN], errors="coerce")
    return ((selected <= 1) & (trained > 1)).fillna(False).astype(bool)


def fold_flags(folds: pd.DataFrame) -> pd.DataFrame:
    """Every flag of every fold: the recorded ones (``schema.FLAGS``), then the derived ones."""
    flags = {name: flag(folds, name) for name in schema.FLAGS}
    flags["best_at_first_epoch"] = best_at_first_epoch(folds)
    return pd.DataFrame(flags, columns=list(FOLD_FLAGS))


def deduplicate(folds: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per run x fold: a run is its ``config_hash`` (equal hash == same result-changing
    config), else its resolved folder. An ok row wins over a failed one. Returns the rows kept
    and how many were dropped."""
    if folds.empty:
        return folds, 0
    run = column_or_nan(folds, "config_hash").fillna(column_or_nan(folds, "run_path"))
    order = (folds["status"] != "ok").sort_values(kind="stable").index
    keyed = pd.DataFrame({"run": run, "fold": folds["fold"]}).loc[order]
    duplicate = keyed["run"].notna() & keyed.duplicated(keep="first")
    kept = folds.loc[order][~duplicate.to_numpy()].sort_index()
    return kept, int(duplicate.sum())


def _check(folds: pd.DataFrame, source: Path, metrics: Iterable[str]) -> None:
    """Required columns, names in every finished row, and the metric columns a table needs."""
    missing = [c for c in REQUIRED if c not in folds.columns]
    if missing:
        raise ReportError(
            f"{source} lacks the columns {', '.join(missing)}: not a segact results file, or one "
            "written by an incompatible segact version"
        )
    ok = folds[folds["status"] == "ok"]
    missing = [c for c in metrics if c not in folds.columns and not ok.empty]
    if missing:
        raise ReportError(
            f"{source} lacks the columns {', '.join(missing)} that the table needs (a file "
            "of an older segact version? --aggregate selected reads the selected epoch's)"
        )
    for key in CHOICES:
        empty = int(ok[key].isna().sum())
        if empty:
            raise ReportError(f"{source}: {empty} finished row(s) have no {key} name (empty)")


def _against_summary(folds: pd.DataFrame, status: object) -> pd.DataFrame:
    """A run's rows with its summary.json's status beside them; its ok rows become
    ``inconsistent`` where that status disagrees (failed, or ok beside failed rows): a failed
    rerun keeps the ok rows of the run before it, which may be another configuration's."""
    folds = folds.assign(**{SUMMARY_STATUS: status})
    ok = folds["status"] == "ok"
    agrees = status in (None, "incomplete") or (status == "ok" and bool(ok.all()))
    if agrees or not ok.any():
        return folds
    folds.loc[ok, "status"] = INCONSISTENT
    folds.loc[ok, "error"] = f"summary.json says {status}, yet folds.csv has ok rows"
    return folds


def _read_file(source: Path, metrics: Sequence[str]) -> pd.DataFrame:
    """A results CSV; a run folder it names by an absolute ``run_dir`` is its ``run_path``."""
    frame = read_result_csv(source)
    _check(frame, source, metrics)
    if "run_path" not in frame.columns and "run_dir" in frame.columns:
        absolute = frame["run_dir"].map(lambda d: isinstance(d, str) and Path(d).is_absolute())
        frame["run_path"] = frame["run_dir"].where(absolute)
    return frame


def _read_source(
    source: Path, metrics: Sequence[str], edits: ResultEdits | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if source.is_file():
        return _read_file(source, metrics), pd.DataFrame()
    if not source.is_dir():
        raise ReportError(f"{source}: no such sweep directory or results CSV")
    runs = run_folders(source)
    if not runs:
        raise ReportError(f"{source}: no runs found (no {FOLDS_CSV} below it)")
    pairs = [_read_run(run, with_thresholds=True, edits=edits) for run in runs]
    for run, (folds, _) in zip(runs, pairs, strict=True):
        _check(folds, run.folds_csv, metrics)
    statuses = [run.read_summary().get("status") for run in runs]
    marked = [_against_summary(f, s) for (f, _), s in zip(pairs, statuses, strict=True)]
    return _concat(marked), _concat([t for _, t in pairs])


def _inside_sources(folds: pd.DataFrame, sources: Sequence[Path], notes: list[str]) -> pd.DataFrame:
    """``folds`` without the run folders (``run_path``: a results CSV's absolute ``run_dir``) that
    lie outside every source folder once symlinks are resolved: nothing is read from there."""
    if "run_path" not in folds.columns:
        return folds
    roots = [Path(s).resolve() for s in sources if Path(s).is_dir()]
    named = folds["run_path"].dropna().unique()
    outside = [p for p in named if not any(Path(p).resolve().is_relative_to(r) for r in roots)]
    if outside:
        folds = folds.assign(run_path=folds["run_path"].where(~folds["run_path"].isin(outside)))
        notes.append(
            f"{len(outside)} run folder(s) a results CSV names lie outside the folders given "
            f"(e.g. {outside[0]}): not read (no per-epoch curves of them)."
        )
    return folds


def _run_names(folds: pd.DataFrame) -> pd.Series:
    """Each row's run as the report names it: its folder label, else its path, else its hash."""
    name = column_or_nan(folds, "run_dir").fillna(column_or_nan(folds, "run_path"))
    return name.fillna(column_or_nan(folds, "config_hash")).astype("string")


def _inconsistent_note(folds: pd.DataFrame) -> list[str]:
    names = sorted(set(_run_names(folds[folds["status"] == INCONSISTENT]).dropna()))
    if not names:
        return []
    return [
        f"{len(names)} run(s) left out of the tables and statistics: their summary.json's status "
        "disagrees with the ok rows of their folds.csv (a failed rerun beside an earlier run's "
        f"folds?); results.csv keeps those rows as status={INCONSISTENT}: {', '.join(names)}."
    ]


def _fold_counts(ok: pd.DataFrame) -> pd.DataFrame:
    """Per run (hash, else folder) of the finished rows: its name, dataset, finished folds, the
    folds it is configured with (``trainer.folds``), and whether summary.json says incomplete."""
    run = column_or_nan(ok, "config_hash").fillna(column_or_nan(ok, "run_path"))
    rows = pd.DataFrame(
        {
            "run": run.fillna(column_or_nan(ok, "run_dir")),
            "name": _run_names(ok),
            "dataset": ok["dataset"],
            "fold": ok["fold"],
            "configured": pd.to_numeric(column_or_nan(ok, "trainer.folds"), errors="coerce"),
            "incomplete": column_or_nan(ok, SUMMARY_STATUS) == "incomplete",
        }
    )
    return rows.groupby("run", sort=False).agg(
        name=("name", "first"),
        dataset=("dataset", "first"),
        finished=("fold", "nunique"),
        last=("fold", "max"),
        configured=("configured", "max"),
        incomplete=("incomplete", "any"),
    )


def _partial_note(folds: pd.DataFrame) -> list[str]:
    """The runs with fewer finished folds than configured (fold jobs still running, or some
    failed): their cells mean fewer folds. A run without ``trainer.folds`` (no summary.json: a
    fold job's run is unfinished until all its folds are) is taken to have as many as the other
    runs of its dataset, and at least one past its highest fold."""
    runs = _fold_counts(folds[folds["status"] == "ok"])
    if runs.empty:
        return []
    by_dataset = runs.groupby("dataset")
    expected = runs["configured"].fillna(by_dataset["configured"].transform("max"))
    expected = expected.fillna(by_dataset["finished"].transform("max"))
    expected = np.fmax(expected, runs["last"] + 1).fillna(runs["finished"]).astype(int)
    partial = (runs["finished"] < expected) | runs["incomplete"]
    if not partial.any():
        return []
    listed = [
        f"{name} ({finished} of {of})" if finished < of else f"{name} (summary.json: incomplete)"
        for name, finished, of in zip(
            runs.loc[partial, "name"], runs.loc[partial, "finished"], expected[partial], strict=True
        )
    ]
    return [
        f"{len(listed)} run(s) have only some of their folds: {'; '.join(sorted(listed))}. Their "
        "cells are means over the folds they have (n in the tables)."
    ]


def _with_keys(thresholds: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    """Threshold rows of the kept run x folds only, with the run's identity columns."""
    if thresholds.empty:
        return thresholds
    keys = [c for c in sort_keys(folds) if c in folds.columns and c != "fold"]
    rows = thresholds.drop_duplicates(["run_path", "fold", "threshold"])
    rows = rows.drop(columns=keys, errors="ignore")
    return rows.merge(folds[["run_path", "fold", *keys]], on=["run_path", "fold"])


def load_results(
    sources: Sequence[Path],
    metrics: Sequence[str] = (),
    notes: list[str] | None = None,
    edits: ResultEdits | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run below the sweep folders (or rows of results CSVs): (folds, thresholds).

    Each run x fold is counted once, however often its sweep is passed (``notes`` gains a line
    saying how many repeats were dropped). ``notes`` also names the runs with only some of their
    folds, the runs whose summary.json disagrees with their rows (left out: ``INCONSISTENT``),
    and run folders a results CSV names outside the sources (never read). Raises ReportError,
    naming the file, for missing columns (``metrics``: those the caller's tables need, where a
    file has finished rows),
    unusable values, finished rows without a name, or when no run finished. With ``edits``,
    each run's files are checked against the digests its summary.json recorded, and the edited
    ones collected there (the caller decides: ``ResultEdits.notes``).
    """
    notes = [] if notes is None else notes
    read = [_read_source(Path(source), metrics, edits) for source in sources]
    folds = _inside_sources(_concat([f for f, _ in read]), sources, notes)
    folds, dropped = deduplicate(folds)
    if dropped:
        notes.append(f"{dropped} repeated fold result(s) dropped (the same run passed twice)")
    if folds.empty or not (folds["status"] == "ok").any():
        failed = folds["run_path"].nunique() if "run_path" in folds.columns else len(folds)
        raise ReportError(f"no finished runs in {', '.join(map(str, sources))} ({failed} failed)")
    notes += _partial_note(folds) + _inconsistent_note(folds)
    folds = folds.drop(columns=SUMMARY_STATUS, errors="ignore")
    present = [c for c in sort_keys(folds) if c in folds.columns]
    folds = folds.sort_values(present, kind="stable", ignore_index=True)
    return folds, _with_keys(_concat([t for _, t in read]), folds)


def collect_sweep(sweep_dir: Path, skip: Collection[str] = ()) -> pd.DataFrame:
    """Every run's folds.csv below ``sweep_dir`` with its identity columns, one row per run x
    fold (empty when there is none), but the runs ``skip`` names (their folder relative to
    ``sweep_dir``); for the end-of-sweep table, so it checks no columns."""
    runs = [r for r in run_folders(sweep_dir) if str(r.path.relative_to(sweep_dir)) not in skip]
    folds = _concat([_read_run(run, with_thresholds=False)[0] for run in runs])
    if folds.empty or "status" not in folds.columns:
        return folds
    return deduplicate(folds)[0]


def load_epochs(folds: pd.DataFrame, edits: ResultEdits | None = None) -> pd.DataFrame:
    """The epochs.csv rows of the kept, finished run x folds (read from their run folders), with
    the runs' identity columns; empty when the folds came from a results CSV. ``edits``: as
    ``load_results``'."""
    ok = folds[(folds["status"] == "ok") & column_or_nan(folds, "run_path").notna()]
    paths = sorted(ok["run_path"].unique())
    epochs = _concat([RunFolder(path).read_epochs(edits) for path in paths])
    if epochs.empty:
        return epochs
    keys = [c for c in sort_keys(folds) if c in folds.columns and c != "fold"]
    epochs = epochs.drop(columns=keys, errors="ignore")
    return epochs.merge(ok[["run_path", "fold", *keys]], on=["run_path", "fold"])
