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

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from segact.errors import ReportError
from segact.runs.folder import (
    FLAGS,
    FOLDS_CSV,
    RunFolder,
    column_or_nan,
    read_result_csv,
    run_folders,
)
from segact.runs.identity import CHOICES, sort_keys

REQUIRED: tuple[str, ...] = (*CHOICES, "seed", "fold", "status")
"""The columns without which a file is no segact results file."""
SELECTED_METRICS: tuple[str, ...] = ("best_threshold", "nll", "best_dice", "mean_dice")
"""What the tables read of a fold unless told otherwise."""
FOLD_FLAGS: tuple[str, ...] = (*FLAGS, "best_at_first_epoch")
"""``FLAGS`` as folds.csv records them, then the ones derived from its columns (``fold_flags``)."""


def _read_run(run: RunFolder, with_thresholds: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run folder: its folds (plus identity columns and ``run_path``), its thresholds."""
    folds = run.read_folds()
    return folds, run.read_thresholds() if with_thresholds else pd.DataFrame()


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
    if not {"epoch_selected", "epochs_run"} <= set(folds.columns):
        return pd.Series(False, index=folds.index)
    selected = pd.to_numeric(folds["epoch_selected"], errors="coerce")
    trained = pd.to_numeric(folds["epochs_run"], errors="coerce")
    return ((selected <= 1) & (trained > 1)).fillna(False).astype(bool)


def fold_flags(folds: pd.DataFrame) -> pd.DataFrame:
    """Every flag of every fold: the recorded ones (``FLAGS``), then the derived ones."""
    flags = {name: flag(folds, name) for name in FLAGS}
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


def _read_source(source: Path, metrics: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    if source.is_file():
        frame = read_result_csv(source)
        _check(frame, source, metrics)
        if "run_path" not in frame.columns and "run_dir" in frame.columns:
            absolute = frame["run_dir"].map(lambda d: isinstance(d, str) and Path(d).is_absolute())
            frame["run_path"] = frame["run_dir"].where(absolute)
        return frame, pd.DataFrame()
    if not source.is_dir():
        raise ReportError(f"{source}: no such sweep directory or results CSV")
    runs = run_folders(source)
    if not runs:
        raise ReportError(f"{source}: no runs found (no {FOLDS_CSV} below it)")
    pairs = [_read_run(run, with_thresholds=True) for run in runs]
    for run, (folds, _) in zip(runs, pairs, strict=True):
        _check(folds, run.folds_csv, metrics)
    return _concat([f for f, _ in pairs]), _concat([t for _, t in pairs])


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
    metrics: Sequence[str] = SELECTED_METRICS,
    notes: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run below the sweep folders (or rows of results CSVs): (folds, thresholds).

    Each run x fold is counted once, however often its sweep is passed (``notes`` gains a line
    saying how many repeats were dropped). Raises ReportError, naming the file, for missing
    columns (``metrics`` too, where a file has finished rows), finished rows without a name, or
    when no run finished.
    """
    read = [_read_source(Path(source), metrics) for source in sources]
    folds, dropped = deduplicate(_concat([f for f, _ in read]))
    if dropped and notes is not None:
        notes.append(f"{dropped} repeated fold result(s) dropped (the same run passed twice)")
    if folds.empty or not (folds["status"] == "ok").any():
        failed = folds["run_path"].nunique() if "run_path" in folds.columns else len(folds)
        raise ReportError(f"no finished runs in {', '.join(map(str, sources))} ({failed} failed)")
    present = [c for c in sort_keys(folds) if c in folds.columns]
    folds = folds.sort_values(present, kind="stable", ignore_index=True)
    return folds, _with_keys(_concat([t for _, t in read]), folds)


def collect_sweep(sweep_dir: Path) -> pd.DataFrame:
    """Every run's folds.csv below ``sweep_dir`` with its identity columns, one row per run x
    fold (empty when there is none); for the end-of-sweep table, so it checks no columns."""
    folds = _concat([_read_run(run, with_thresholds=False)[0] for run in run_folders(sweep_dir)])
    if folds.empty or "status" not in folds.columns:
        return folds
    return deduplicate(folds)[0]


def load_epochs(folds: pd.DataFrame) -> pd.DataFrame:
    """The epochs.csv rows of the kept, finished run x folds (read from their run folders), with
    the runs' identity columns; empty when the folds came from a results CSV."""
    ok = folds[(folds["status"] == "ok") & column_or_nan(folds, "run_path").notna()]
    epochs = _concat([RunFolder(path).read_epochs() for path in sorted(ok["run_path"].unique())])
    if epochs.empty:
        return epochs
    keys = [c for c in sort_keys(folds) if c in folds.columns and c != "fold"]
    epochs = epochs.drop(columns=keys, errors="ignore")
    return epochs.merge(ok[["run_path", "fold", *keys]], on=["run_path", "fold"])
