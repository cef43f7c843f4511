"""``segact-report --diff-results other.csv``: row-by-row differences of two results files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from segact.io import write_csv
from segact.report.sections import as_markdown
from segact.runs import results, schema
from segact.runs.identity import ROW_IDENTITY, setting_columns, sort_keys

TIMING = (*schema.FOLDS.names(schema.Kind.TIMING), "run_dir", "run_path", "config_hash")
"""Columns that differ between two machines' identical runs: never compared."""


def compare_results(ours: pd.DataFrame, other_path: Path) -> pd.DataFrame:
    """Row-by-row differences (ours - other) of the metrics two result CSVs share."""
    other, _ = results.load_results([other_path], metrics=())
    keys = [
        c
        for c in sort_keys(ours)
        if c in ours and c in other and (c in ROW_IDENTITY or ours[c].nunique(dropna=False) > 1)
    ]
    settings = set(setting_columns(ours))
    shared = [
        c
        for c in ours.columns
        if c in other.columns
        and c not in (*keys, *TIMING, *settings)
        and pd.api.types.is_numeric_dtype(ours[c])
        and pd.api.types.is_numeric_dtype(other[c])
    ]
    merged = ours[[*keys, *shared]].merge(
        other[[*keys, *shared]], on=keys, how="outer", suffixes=("", "_other"), indicator=True
    )
    out = merged[keys].assign(
        present=merged["_merge"].map({"both": "both", "left_only": "ours", "right_only": "other"})
    )
    for column in shared:
        out[column] = merged[column].astype(float) - merged[f"{column}_other"].astype(float)
    return out


def compare_sections(folds: pd.DataFrame, other: Path, out: Path) -> list[str]:
    differences = compare_results(folds, other)
    write_csv(differences, out / "compare.csv")
    columns = list(differences.columns)
    metrics = columns[columns.index("present") + 1 :]
    both = differences[differences["present"] == "both"]
    largest = both[metrics].abs().max().rename("max |ours - other|").reset_index()
    lines = [f"Compared with {other}: {len(both)} rows in both"]
    for side in ("ours", "other"):
        count = int((differences["present"] == side).sum())
        if count:
            lines.append(f"{count} rows only in {side}")
    lines.append(as_markdown(largest.rename(columns={"index": "metric"})))
    return ["## Differences from another results file", "", "\n".join(lines), ""]
