"""A report of one or more sweeps: select the folds (``select``), then write every section's
files, report.md and report.html (``html``) into a staging folder beside ``--out`` and publish
them into it at once (``publish``); returns the main table. The sections are one explicit list
(``SECTIONS``), each computed, written and put in words by one function, found by name."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from segact.errors import ReportError
from segact.io import read_json, write_csv, write_json, write_text
from segact.report import confounds, learned, paired, sections, tables
from segact.report.claims import MarginRule
from segact.report.compare import compare_sections
from segact.report.figures import figure_sections
from segact.report.html import REPORT_HTML, render_html
from segact.report.scale import scale_sentence
from segact.report.select import (
    choose_comparisons,
    common_seed_folds,
    headline_scope,
    paper_claims_default,
    pool_settings,
    used_folds,
)
from segact.report.stats import Comparison
from segact.report.threshold_choice import threshold_choice_sections
from segact.runs import results
from segact.runs.folder import THRESHOLDS_CSV, ResultEdits
from segact.runs.identity import row_keys
from segact.runs.locks import holding

RESULTS_CSV = "results.csv"
"""One row per run x fold, with every setting that differs between runs as a column."""
LEARNED_CSV = "learned.csv"
REPORT_MD = "report.md"
MANIFEST = ".segact-report.json"
"""In ``--out``: the entries the report there wrote. The next report into it removes those it
does not write again, and nothing else (a README beside them, another report's folder, the
user's files)."""
PUBLISH_LOCK = ".segact-report.lock"
"""In ``--out`` while a report publishes into it: of two reports into one folder, the later
replaces the earlier entirely, never a mix of both."""
PUBLISH_WAIT_S = 600.0


@dataclass(frozen=True)
class ReportOptions:
    """What ``segact-report``'s options choose (``cli.py`` says what each means)."""

    pairs: Sequence[tuple[str, str]] | None = None  # levels; alone: activations
    factors: Sequence[str] = ()  # --compare KEY; none: every factor the runs vary
    baseline: str | None = None
    paper_claims: bool | None = None  # None: only for runs of the paper's experiments
    diff_results: Path | None = None
    aggregate: str = "selected"
    exclude_degenerate: bool = False
    figures: bool = True
    common_seeds: bool = False
    pool: Sequence[str] = ()
    margin: MarginRule = field(default_factory=MarginRule)
    min_gain: float = learned.DEFAULT_MIN_GAIN
    trust_edits: bool = False  # read result files edited since their run finished


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
    comparisons: list[Comparison]
    epochs: pd.DataFrame  # epochs.csv rows of ``used``: the stopping confound and the figures
    notes: list[str] = field(default_factory=list)


def select(sources: Sequence[Path], options: ReportOptions) -> Selection:
    notes: list[str] = []
    metrics = list(tables.AGGREGATIONS[options.aggregate])
    edits = ResultEdits(trust=options.trust_edits)
    folds, thresholds = results.load_results(sources, metrics, notes, edits)
    folds = pool_settings(folds, options.pool, notes)
    ok, replicates = confounds.split_device_replicates(folds[folds["status"] == "ok"], notes)
    ok, other = headline_scope(ok, notes, options.factors)
    keys = [k for k in row_keys(ok) if k != "dataset"]
    if options.common_seeds:
        ok = common_seed_folds(ok, keys, notes)
    comparisons = choose_comparisons(ok, options.factors, options.pairs, options.baseline, notes)
    used = used_folds(ok, options.exclude_degenerate, notes)
    notes += sections.zero_gradient_notes(ok, keys)
    notes += _hardware_note(ok)
    epochs = results.load_epochs(used, edits)  # read once, for the two sections that need it
    notes[:0] = edits.notes()  # refuses edited files unless trusted; then first among the notes
    return Selection(
        folds, thresholds, ok, used, other, replicates, keys, comparisons, epochs, notes
    )


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


@dataclass
class Written:
    """What a section put in report.md, and what the rest of the report takes from it."""

    lines: list[str]
    opening: list[str] = field(default_factory=list)  # report.md's opening sentences
    table: str = ""  # the main table (Markdown), which segact-report prints


@dataclass(frozen=True)
class Section:
    """One section of the report: ``write`` computes it, writes its files into the folder and
    returns its words; only where ``wanted`` by the options."""

    name: str
    write: Callable[[Selection, ReportOptions, Path], Written]
    wanted: Callable[[ReportOptions], bool] = lambda options: True


def _shown(chosen: Selection) -> pd.DataFrame:
    """Every fold a table shows: the headline sizes' and the other sizes'."""
    return pd.concat([chosen.ok, chosen.other_sizes])


def _tables(chosen: Selection, options: ReportOptions, out: Path) -> Written:
    lines, main_table = sections.table_sections(
        chosen.ok, chosen.used, chosen.keys, options.aggregate, out, _shown(chosen)
    )
    return Written(lines, table=main_table)


def _other_sizes(chosen: Selection, options: ReportOptions, out: Path) -> Written:
    return Written(
        sections.other_sizes_sections(
            chosen.other_sizes, chosen.keys, options.aggregate, _shown(chosen)
        )
    )


def _comparisons(chosen: Selection, options: ReportOptions, out: Path) -> Written:
    """Learned or not, the paired tests, the pooled estimates, the claims, the confounds; and
    report.md's opening sentences."""
    claims_on = options.paper_claims
    claims_on = paper_claims_default(chosen.ok) if claims_on is None else claims_on
    framing = paired.Framing(options.aggregate, options.margin, claims_on)
    cells = learned.learned_table(
        chosen.used, chosen.thresholds, chosen.keys, framing.primary, options.min_gain
    )
    if not cells.empty:
        write_csv(cells, out / LEARNED_CSV)
    compared = paired.compare(chosen.used, chosen.comparisons, cells[cells["not_learned"]], framing)
    summary = paired.summary_of(compared)
    lines = [
        *learned.learned_sections(cells, options.min_gain),
        *paired.comparison_sections(compared, chosen.used, framing, out),
        *confounds.stopping_sections(
            chosen.used, chosen.epochs, chosen.comparisons, chosen.keys, out
        ),
        *confounds.device_sections(chosen.ok, chosen.replicates, summary, out),
    ]
    return Written(lines, opening=paired.opening_lines(compared, chosen.used, framing))


def _overlays(chosen: Selection, options: ReportOptions, out: Path) -> Written:
    from segact.report import overlays  # torch and the models only when a report is drawn

    pairs = [(c.a, c.b) for c in chosen.comparisons if c.column == "activation"]
    return Written(overlays.overlay_sections(chosen.used, pairs, out))


def _figures_wanted(options: ReportOptions) -> bool:
    return options.figures


SECTIONS: tuple[Section, ...] = (
    Section("tables", _tables),
    Section("other_sizes", _other_sizes),
    Section("comparisons", _comparisons),
    Section(
        "threshold_choice",
        lambda chosen, options, out: Written(
            threshold_choice_sections(chosen.used, chosen.keys, out)
        ),
    ),
    Section(
        "argmax", lambda chosen, options, out: Written(sections.argmax_sections(chosen.ok, out))
    ),
    Section(
        "flags",
        lambda chosen, options, out: Written(sections.flag_sections(chosen.ok, chosen.keys, out)),
    ),
    Section(
        "failed", lambda chosen, options, out: Written(sections.failed_sections(chosen.folds, out))
    ),
    Section(
        "figures",
        lambda chosen, options, out: Written(
            figure_sections(chosen.used, chosen.thresholds, chosen.epochs, chosen.keys, out)
        ),
        _figures_wanted,
    ),
    Section("overlays", _overlays, _figures_wanted),
    Section(
        "diff_results",
        lambda chosen, options, out: Written(
            compare_sections(chosen.folds, options.diff_results, out)
        ),
        lambda options: options.diff_results is not None,
    ),
)
"""report.md's sections, in order (after its opening, the Scale line and the notes)."""
MAIN_TABLE = "tables"
"""The section whose main table segact-report prints."""
OPENING = "comparisons"
"""The section whose opening sentences head report.md."""


def build_report(sources: Sequence[Path], out: Path, options: ReportOptions) -> str:
    """Write every report file into ``out``; returns the main table as Markdown. The files are
    written into a staging folder beside ``out`` first: an error or Ctrl-C on the way leaves
    ``out`` as it was."""
    chosen = select(sources, options)
    out = out.resolve()  # the staging folder beside the real folder: a rename, never a copy
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-{os.getpid()}-", dir=out.parent))
    try:
        main_table = _write_report(chosen, sources, staging, options)
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return main_table


def _write_report(
    chosen: Selection, sources: Sequence[Path], out: Path, options: ReportOptions
) -> str:
    _write_tidy(chosen, out)
    written = {s.name: s.write(chosen, options, out) for s in SECTIONS if s.wanted(options)}
    lines = [
        f"# Report of {', '.join(map(str, sources))}",
        "",
        *written[OPENING].opening,
        scale_sentence(_shown(chosen)),
        "",
        *(f"- {note}" for note in chosen.notes),
        "",
        *(line for section in written.values() for line in section.lines),
    ]
    text = "\n".join(lines)
    write_text(text, out / REPORT_MD)
    write_text(render_html(text, out), out / REPORT_HTML)
    return written[MAIN_TABLE].table


def _plain_name(name: object) -> bool:
    """An entry name a manifest may list: one folder entry, never a path elsewhere."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..", MANIFEST, PUBLISH_LOCK)
        and Path(name).name == name
        and "\\" not in name
    )


def _written_before(out: Path) -> set[str]:
    """The entries the previous report into ``out`` wrote, as its manifest lists them; none
    without one (an older segact's report: its files are replaced, not removed)."""
    try:
        entries = read_json(out / MANIFEST).get("entries", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in entries if _plain_name(name)} if isinstance(entries, list) else set()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def publish(staging: Path, out: Path) -> None:
    """Move the report written into ``staging`` into ``out``: the entries the previous report
    there wrote and this one does not are removed, every entry this one wrote replaces its
    namesake; nothing else in ``out`` is touched. (``out`` itself is not swapped: it may hold a
    README, or a second report being written into a subfolder at the same time.)"""
    new = sorted(path.name for path in staging.iterdir())
    out.mkdir(exist_ok=True)
    with holding(out / PUBLISH_LOCK, PUBLISH_WAIT_S, wait_s=PUBLISH_WAIT_S), _uninterrupted():
        old = _written_before(out)
        foreign = [
            n for n in new if n not in old and (out / n).is_dir() and not (out / n).is_symlink()
        ]
        if foreign:
            raise ReportError(
                f"--out {out}: {out / foreign[0]} is a folder no segact report wrote, where the "
                "report writes a file; move it, or name another folder"
            )
        # listed before anything moves, so a process killed halfway leaves no entry unlisted
        write_json({"entries": sorted(old | set(new))}, out / MANIFEST)
        for name in sorted(old - set(new)):
            _remove(out / name)
        for name in new:
            if (out / name).is_dir() or (staging / name).is_dir():
                _remove(out / name)  # a rename replaces a file, not a folder
            os.replace(staging / name, out / name)
        write_json({"entries": new}, out / MANIFEST)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C waits for the block to end, then stops the report as usual: publishing is a few
    renames, and stopping between them would leave two reports mixed in ``--out``."""
    if threading.current_thread() is not threading.main_thread():  # signals reach only that one
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, _frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    if caught:
        raise KeyboardInterrupt
