"""A report of one or more sweeps: select the folds, then write every section's files and
report.md into one folder (``segact.report.sections``); returns the main table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from segact.io import write_csv, write_text
from segact.report import sections, tables
from segact.report.compare import comparison_sections
from segact.report.select import choose_pairs, common_seed_folds, pool_settings, used_folds
from segact.runs import results
from segact.runs.folder import THRESHOLDS_CSV
from segact.runs.identity import row_keys

RESULTS_CSV = "results.csv"
"""One row per run x fold, with every setting that differs between runs as a column."""
REPORT_MD = "report.md"


def _settings_note(ok: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    hidden = tables.hidden_settings(ok, keys)
    if not hidden:
        return []
    return [
        f"Settings that differ between runs but follow the dataset and the row keys (no rows "
        f"of their own): {', '.join(hidden)}."
    ]


def build_report(
    sources: Sequence[Path],
    out: Path,
    pairs: Sequence[tuple[str, str]] | None = None,
    compare: Path | None = None,
    aggregate: str = "selected",
    exclude_degenerate: bool = False,
    figures: bool = True,
    common_seeds: bool = False,
    pool: Sequence[str] = (),
) -> str:
    """Write every report file into ``out``; returns the main table as Markdown. ``pairs``
    None: sigmoid vs arctan where both ran."""
    notes: list[str] = []
    folds, thresholds = results.load_results(sources, list(tables.AGGREGATIONS[aggregate]), notes)
    folds = pool_settings(folds, pool, notes)
    ok = folds[folds["status"] == "ok"]
    keys = [k for k in row_keys(ok) if k != "dataset"]
    if common_seeds:
        ok = common_seed_folds(ok, keys, notes)
    pairs = choose_pairs(ok, pairs, notes)
    used = used_folds(ok, exclude_degenerate, notes)
    notes += sections.zero_gradient_notes(ok, keys) + _settings_note(ok, keys)
    out.mkdir(parents=True, exist_ok=True)
    # run_path is this machine's absolute path: the files keep run_dir (relative) only.
    write_csv(folds.drop(columns="run_path", errors="ignore"), out / RESULTS_CSV)
    if not thresholds.empty:  # the run folders' thresholds.csv, one after another
        write_csv(thresholds.drop(columns="run_path", errors="ignore"), out / THRESHOLDS_CSV)
    table_lines, main_table = sections.table_sections(ok, used, keys, aggregate, out)
    summary, paired_lines = sections.paired_sections(used, pairs, aggregate, out)
    lines = [
        f"# Report of {', '.join(map(str, sources))}",
        "",
        *(f"- {note}" for note in notes),
        "",
        *table_lines,
        *paired_lines,
        *sections.claims_sections(summary, used, out),
        *sections.argmax_sections(ok, out),
        *sections.flag_sections(ok, keys, out),
        *sections.failed_sections(folds, out),
        *(sections.figure_sections(used, thresholds, keys, out) if figures else []),
        *(comparison_sections(folds, compare, out) if compare is not None else []),
    ]
    write_text("\n".join(lines), out / REPORT_MD)
    return main_table
