"""Result tables from folds.csv files: mean ± std over folds (and seeds) per configuration."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

RUN_KEYS: tuple[str, ...] = (
    "dataset",
    "arch",
    "encoder",
    "head",
    "activation",
    "loss",
    "binarize",
    "protocol",
)
TABLE_METRICS: tuple[str, ...] = ("best_dice", "mean_dice", "dice_at_05", "best_threshold", "nll")


def read_folds(paths: Iterable[Path]) -> pd.DataFrame:
    frames = [pd.read_csv(path) for path in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def collect_sweep(sweep_dir: Path) -> pd.DataFrame:
    """Every run's folds.csv below ``sweep_dir``, one row per run x fold."""
    return read_folds(sorted(Path(sweep_dir).rglob("folds.csv")))


def _varying_keys(folds: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    present = [k for k in keys if k in folds.columns]
    varying = [k for k in present if folds[k].nunique(dropna=False) > 1]
    return varying or present[:1]


def mean_std(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {std:.{digits}f}"


def dice_table(folds: pd.DataFrame, metrics: Sequence[str] = TABLE_METRICS) -> pd.DataFrame:
    """Rows: the run keys that vary (e.g. loss x activation); cells: mean ± std over folds."""
    ok = folds[folds["status"] == "ok"] if "status" in folds.columns else folds
    keys = _varying_keys(ok, RUN_KEYS)
    table = ok.groupby(keys, sort=True).agg(
        **{m: (m, mean_std) for m in metrics if m in ok.columns}, folds=("fold", "size")
    )
    return table.reset_index()


def format_table(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, disable_numparse=True)


def summarize_numbers(folds: pd.DataFrame, metrics: Sequence[str] = TABLE_METRICS) -> dict:
    """Mean and std over folds of each metric, for summary.json."""
    out: dict[str, float] = {}
    for metric in metrics:
        if metric in folds.columns:
            values = folds[metric].astype(float)
            out[f"{metric}_mean"] = float(values.mean())
            out[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def nan_to_none(value: float) -> float | None:
    return None if isinstance(value, float) and np.isnan(value) else value
