"""A report of one or more sweeps: select the folds (``select``), then write every section's
files and report.md into one folder; returns the main table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from segact.io import write_csv, write_text
from segact.report import confounds, learned, meta, paired, sections, tables
from segact.report.claims import MarginRule
from segact.report.compare import compare_sections
from segact.report.figures import figure_sections
from segact.report.scale import scale_sentence
from segact.report.select import (
    choose_pairs,
    common_seed_folds,
    headline_scope,
    pool_settings,
    used_folds,
)
from segact.report.threshold_choice import threshold_choice_sections
from segact.runs import results
from segact.runs.folder import THRESHOLDS_CSV
from segact.runs.identity import row_keys

RESULTS_CSV = "results.csv"
"""One row per run x fold, with every setting that differs between runs as a column."""
LEARNED_CSV = "learned.csv"
REPORT_MD = "report.md"


@dataclass(frozen=True)
class ReportOptions:
    """What ``segact-report``'s options choose (``cli.py`` says what each means)."""

    pairs: Sequence[tuple[str, str]] | None = None  # None: sigmoid vs arctan where both ran
    compare: Path | None = None
    aggregate: str = "selected"
    exclude_degenerate: bool = False
    figures: bool = True
    common_seeds: bool = False
    pool: Sequence[str] = ()
    margin: MarginRule = field(default_factory=MarginRule)
    min_gain: float = learned.DEFAULT_MIN_GAIN


@dataclass
class Selection:
    """The folds a report reads, and which of them each section uses."""

    folds: pd.DataFrame  # every fold read, failed ones too
    thresholds: pd.DataFrame
    ok: pd.DataFrame  # finished, at each dataset's headline size, one device per configuration
    used: pd.DataFrame  # ``ok`` without the folds --exclude-degenerate drops
    other_sizes: pd.DataFrame
    replicates: pd.DataFrame  # the same configurations on a second device
    keys: list[str]
    pairs: list[tuple[str, str]]
    epochs: pd.DataFrame  # epochs.csv rows of ``used``: the stopping confound and the figures
    notes: list[str] = field(default_factory=list)


def select(sources: Sequence[Path], options: ReportOptions) -> Selection:
    notes: list[str] = []
    metrics = list(tables.AGGREGATIONS[options.aggregate])
    folds, thresholds = results.load_results(sources, metrics, notes)
    folds = pool_settings(folds, options.pool, notes)
    ok, replicates = confounds.split_device_replicates(folds[folds["status"] == "ok"], notes)
    ok, other = headline_scope(ok, notes)
    keys = [k for k in row_keys(ok) if k != "dataset"]
    if options.common_seeds:
        ok = common_seed_folds(ok, keys, notes)
    pairs = choose_pairs(ok, options.pairs, notes)
    used = used_folds(ok, options.exclude_degenerate, notes)
    notes += sections.zero_gradient_notes(ok, keys)
    notes += _hardware_note(ok)
    epochs = results.load_epochs(used)  # read once, for the two sections that need it
    return Selection(folds, thresholds, ok, used, other, replicates, keys, pairs, epochs, notes)


def _hardware_note(ok: pd.DataFrame) -> list[str]:
    """Where one dataset's table mixes machines: float training differs between CPUs (and
    between a CPU and a GPU) beyond what the configuration says (``runs/provenance.py``)."""
    if "hardware" not in ok.columns or ok["hardware"].isna().all():
        return []
    notes = []
    for dataset, group in ok.groupby("dataset", sort=True):
        counts = group["hardware"].fillna("unrecorded").value_counts().sort_index()
        if len(counts) > 1:
            listed = "; ".join(f"{label} ({n} folds)" for label, n in counts.items())
            notes.append(f"Dataset {dataset} mixes hardware: {listed}.")
    return notes


def _write_tidy(chosen: Selection, out: Path) -> None:
    # run_path is this machine's absolute path: the files keep run_dir (relative) only.
    write_csv(chosen.folds.drop(columns="run_path", errors="ignore"), out / RESULTS_CSV)
    if not chosen.thresholds.empty:  # the run folders' thresholds.csv, one after another
        thresholds = chosen.thresholds.drop(columns="run_path", errors="ignore")
        write_csv(thresholds, out / THRESHOLDS_CSV)


def _comparison_lines(chosen: Selection, options: ReportOptions, out: Path) -> list[str]:
    """Learned or not, the paired tests, the pooled estimates, the claims, the confounds."""
    rule = options.margin
    metric = "paper_best_dice" if options.aggregate == "paper" else "best_dice"
    cells = learned.learned_table(
        chosen.used, chosen.thresholds, chosen.keys, metric,
        options.min_gain,
    )  # fmt: skip
    if not cells.empty:
        write_csv(cells, out / LEARNED_CSV)
    summary, paired_lines = paired.paired_sections(
        chosen.used, chosen.pairs, options.aggregate, rule, out
    )
    unlearned = meta.unlearned_rows(summary, cells[cells["not_learned"]])
    pooled, meta_lines = paired.meta_sections(summary, unlearned, rule, out)
    return [
        *learned.learned_sections(cells, options.min_gain),
        *paired_lines,
        *meta_lines,
        *paired.claims_sections(pooled, summary, out),
        *paired.forest_sections(summary, pooled, unlearned, out),
        *confounds.stopping_sections(chosen.used, chosen.epochs, chosen.pairs, chosen.keys, out),
        *confounds.device_sections(chosen.ok, chosen.replicates, summary, out),
    ]


def _overlay_lines(chosen: Selection, out: Path) -> list[str]:
    from segact.report import overlays  # torch and the models only when a report is drawn

    return overlays.overlay_sections(chosen.used, chosen.pairs, out)


def build_report(sources: Sequence[Path], out: Path, options: ReportOptions) -> str:
    """Write every report file into ``out``; returns the main table as Markdown."""
    chosen = select(sources, options)
    out.mkdir(parents=True, exist_ok=True)
    _write_tidy(chosen, out)
    shown = pd.concat([chosen.ok, chosen.other_sizes])  # every fold a table shows
    table_lines, main_table = sections.table_sections(
        chosen.ok, chosen.used, chosen.keys, options.aggregate, out, shown
    )
    lines = [
        f"# Report of {', '.join(map(str, sources))}",
        "",
        scale_sentence(shown),
        "",
        *(f"- {note}" for note in chosen.notes),
        "",
        *table_lines,
        *sections.other_sizes_sections(chosen.other_sizes, chosen.keys, options.aggregate, shown),
        *_comparison_lines(chosen, options, out),
        *threshold_choice_sections(chosen.used, chosen.keys, out),
        *sections.argmax_sections(chosen.ok, out),
        *sections.flag_sections(chosen.ok, chosen.keys, out),
        *sections.failed_sections(chosen.folds, out),
        *(figure_sections(chosen.used, chosen.thresholds, chosen.epochs, chosen.keys, out)
          if options.figures else []),
        *(_overlay_lines(chosen, out) if options.figures else []),
        *(compare_sections(chosen.folds, options.compare, out) if options.compare else []),
    ]  # fmt: skip
    write_text("\n".join(lines), out / REPORT_MD)
    return main_table
