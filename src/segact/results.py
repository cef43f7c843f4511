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

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segact.errors import ReportError
from segact.io import read_json

RUN_KEYS: tuple[str, ...] = (
    "dataset",
    "arch",
    "encoder",
    "head",
    "loss",
    "activation",
    "binarize",
    "protocol",
)
"""The named choices of a run (folds.csv columns)."""
REQUIRED: tuple[str, ...] = (*RUN_KEYS, "seed", "fold", "status")
SETTING_COLUMNS: tuple[str, ...] = ("max_epochs", "lr", "batch_size")
"""folds.csv's copies of trainer settings; like the dotted identity columns, row keys when they
differ between runs."""
REPLICATES = frozenset({"seed", "fold", "trainer.seed", "trainer.fold"})
"""Settings that make replicates (seeds) or parts (folds) of one result, never a table row."""
SELECTED_METRICS: tuple[str, ...] = ("best_threshold", "nll", "best_dice", "mean_dice")
FLAGS: tuple[str, ...] = ("hit_max_epochs", "degenerate", "zero_gradient")
FOLD_FLAGS: tuple[str, ...] = (*FLAGS, "best_at_first_epoch")
"""``FLAGS`` as folds.csv records them, then the ones derived from its columns (``fold_flags``)."""
LEGACY_NAMES: dict[str, str] = {
    "dice_per_image": "dice_per_image_at_best_threshold",
    **{f"nll_{c}": f"mean_nll_{c}" for c in ("tp", "fp", "tn", "fn")},
}
"""Columns older segact versions wrote under another name: renamed on reading."""


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV with the dotted identity columns read as text, as they were written."""
    try:
        header = pd.read_csv(path, nrows=0).columns
        frame = pd.read_csv(path, dtype={c: str for c in header if "." in c})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ReportError(f"cannot read {path}: {error}") from None
    return frame.rename(columns=LEGACY_NAMES)


def _as_text(value: Any) -> Any:
    """An identity value as the text results.csv keeps (NaN where the run has no such key), so a
    report read back from results.csv groups exactly as one read from the run folders."""
    if value is None:
        return np.nan
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """The column, or all NaN where the file has none."""
    return frame.get(name, pd.Series(np.nan, index=frame.index, dtype=object))


def _read_summary(run: Path) -> dict[str, Any]:
    try:
        summary = read_json(run / "summary.json")
    except (OSError, ValueError):  # an older or interrupted run: no identity to add
        return {}
    return summary if isinstance(summary, dict) else {}


def _read_run(folds_path: Path, with_thresholds: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run folder: its folds (plus identity columns and ``run_path``), its thresholds."""
    run = folds_path.parent
    summary = _read_summary(run)
    identity = {
        key if "." in key else f"config.{key}": _as_text(value)  # a top-level key: no clash
        for key, value in summary.get("identity", {}).items()
    }
    folds = _read_csv(folds_path).assign(run_path=str(run.resolve()), **identity)
    if summary.get("config_hash"):
        folds["config_hash"] = _column(folds, "config_hash").fillna(summary["config_hash"])
    thresholds_path = run / "thresholds.csv"
    if not with_thresholds or not thresholds_path.exists():
        return folds, pd.DataFrame()
    return folds, _read_csv(thresholds_path).assign(run_path=str(run.resolve()))


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def setting_columns(folds: pd.DataFrame) -> list[str]:
    """The result-changing settings beyond the named choices: folds.csv's trainer copies, then
    every dotted identity column, seeds and folds excepted (they are replicates)."""
    dotted = sorted(c for c in folds.columns if "." in c and c not in REPLICATES)
    return [c for c in SETTING_COLUMNS if c in folds.columns] + dotted


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
    run = _column(folds, "config_hash").fillna(_column(folds, "run_path"))
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
    for key in RUN_KEYS:
        empty = int(ok[key].isna().sum())
        if empty:
            raise ReportError(f"{source}: {empty} finished row(s) have no {key} name (empty)")


def _read_source(source: Path, metrics: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    if source.is_file():
        frame = _read_csv(source)
        _check(frame, source, metrics)
        if "run_path" not in frame.columns and "run_dir" in frame.columns:
            absolute = frame["run_dir"].map(lambda d: isinstance(d, str) and Path(d).is_absolute())
            frame["run_path"] = frame["run_dir"].where(absolute)
        return frame, pd.DataFrame()
    if not source.is_dir():
        raise ReportError(f"{source}: no such sweep directory or results CSV")
    runs = sorted(source.rglob("folds.csv"))
    if not runs:
        raise ReportError(f"{source}: no runs found (no folds.csv below it)")
    pairs = [_read_run(path, with_thresholds=True) for path in runs]
    for path, (folds, _) in zip(runs, pairs, strict=True):
        _check(folds, path, metrics)
    return _concat([f for f, _ in pairs]), _concat([t for _, t in pairs])


def sort_keys(folds: pd.DataFrame) -> list[str]:
    """Every identity column present: the names, the settings, then seed and fold."""
    return [*RUN_KEYS, *setting_columns(folds), "seed", "fold"]


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
    runs = sorted(Path(sweep_dir).rglob("folds.csv"))
    folds = _concat([_read_run(path, with_thresholds=False)[0] for path in runs])
    if folds.empty or "status" not in folds.columns:
        return folds
    return deduplicate(folds)[0]


def load_epochs(folds: pd.DataFrame) -> pd.DataFrame:
    """The epochs.csv rows of the kept, finished run x folds (read from their run folders), with
    the runs' identity columns; empty when the folds came from a results CSV."""
    ok = folds[(folds["status"] == "ok") & _column(folds, "run_path").notna()]
    frames = []
    for run_path in sorted(ok["run_path"].unique()):
        path = Path(run_path) / "epochs.csv"
        if path.exists():
            frames.append(_read_csv(path).assign(run_path=run_path))
    epochs = _concat(frames)
    if epochs.empty:
        return epochs
    keys = [c for c in sort_keys(folds) if c in folds.columns and c != "fold"]
    epochs = epochs.drop(columns=keys, errors="ignore")
    return epochs.merge(ok[["run_path", "fold", *keys]], on=["run_path", "fold"])
