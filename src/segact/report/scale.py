"""The scale of what a report shows, in one sentence near its top: how many runs and folds, the
model, the input size, the epochs (the cap and as run), the folds per run and the seeds; a
quantity that varies is given as its list or range (input sizes with their datasets)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from segact.report.select import SIZE
from segact.runs import schema

LISTED = 4
"""Up to this many distinct values are listed; more are given as a range."""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def spread(values: Iterable[object]) -> str:
    """Distinct values: "3", "2, 3", or "12–200" beyond LISTED numbers (NaN left out)."""
    series = pd.Series(list(values)).dropna()
    numbers = pd.to_numeric(series, errors="coerce")
    if series.empty:
        return "not recorded"
    if numbers.notna().all():
        distinct = sorted(numbers.unique())
        if len(distinct) > LISTED:
            return f"{_number(distinct[0])}–{_number(distinct[-1])}"
        return ", ".join(map(_number, distinct))
    return ", ".join(sorted(series.astype(str).unique()))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _runs(folds: pd.DataFrame) -> pd.Series:
    """One label per run: its identity hash, else its folder."""
    for column in ("config_hash", "run_path", "run_dir"):
        if column in folds.columns and folds[column].notna().all():
            return folds[column].astype(str)
    return pd.Series(range(len(folds)), index=folds.index).astype(str)


def _size(value: object) -> str:
    """An input size as the report writes it: "48 px", "[24, 20] px"."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return f"{_number(number) if pd.notna(number) else value} px"


def _sizes(folds: pd.DataFrame) -> str:
    """The input sizes, each with its datasets where they differ: "48 px (a, b), 96 px (b)"."""
    if SIZE not in folds.columns or folds[SIZE].isna().all():
        return "input size not recorded"
    sizes = folds[SIZE].dropna().map(_size)
    if sizes.nunique() == 1:
        return f"input size {sizes.iloc[0]}"
    order = pd.to_numeric(folds.loc[sizes.index, SIZE], errors="coerce").fillna(float("inf"))
    datasets = folds.loc[sizes.index, "dataset"].astype(str)
    ranked = sorted(sizes.unique(), key=lambda s: (order[sizes == s].min(), s))
    parts = [f"{s} ({', '.join(sorted(datasets[sizes == s].unique()))})" for s in ranked]
    return "input size " + ", ".join(parts)


def _epochs(folds: pd.DataFrame) -> str:
    """The epoch cap and the epochs the folds ran (range and median)."""
    parts = (
        [f"epoch cap (max_epochs) {spread(folds['max_epochs'])}"] if "max_epochs" in folds else []
    )
    run = pd.to_numeric(folds.get(schema.EPOCHS_RUN, pd.Series()), errors="coerce").dropna()
    if not run.empty:
        ran = spread([run.min(), run.max()]).replace(", ", "–")
        parts.append(f"epochs as run {ran} (median {_number(run.median())})")
    return ", ".join(parts) or "epochs not recorded"


def _folds_per_run(folds: pd.DataFrame, runs: pd.Series) -> str:
    if "trainer.folds" in folds.columns and folds["trainer.folds"].notna().all():
        return f"{spread(folds['trainer.folds'])} folds per run"
    return f"{spread(folds.groupby(runs)['fold'].nunique())} folds per run"


def _model(folds: pd.DataFrame) -> str:
    present = [c for c in ("arch", "encoder") if c in folds.columns]
    if not present:
        return "model not recorded"
    names = folds[present].astype(str).drop_duplicates().agg("-".join, axis=1)
    return "model " + ", ".join(sorted(names))


def scale_sentence(folds: pd.DataFrame) -> str:
    """What the report's tables show, at what scale: ``folds`` are every fold they show."""
    if folds.empty:
        return "Scale: no finished fold."
    runs = _runs(folds)
    seeds = "seeds not recorded"
    if "seed" in folds.columns:
        seeds = f"seed{'s' * (folds['seed'].nunique() > 1)} {spread(folds['seed'])}"
    datasets = folds["dataset"].nunique()
    parts = [
        f"{_count(runs.nunique(), 'run')} ({_count(len(folds), 'fold')}) on "
        f"{_count(datasets, 'dataset')}",
        _model(folds),
        _sizes(folds),
        _epochs(folds),
        _folds_per_run(folds, runs),
        seeds,
    ]
    return "**Scale** of what this report shows: " + "; ".join(parts) + "."
