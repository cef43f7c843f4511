"""The sections of report.md, each computed, written to its CSV (where it has one) and put in
words: the paper's tables, the paired comparison, the paper's claims, argmax vs p >= 0.5, the
flagged and failed folds, and the figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from segact.io import write_csv, write_text
from segact.report import tables
from segact.report.select import SIZE, row_set
from segact.runs import results, schema
from segact.runs.identity import ROW_IDENTITY, setting_columns

SHOWN_ALWAYS = ("dataset", "loss", "activation")
POOLED = "all_datasets"
"""The table of the folds of every dataset with every row: the main table, where there is one."""


def as_markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}g")


def drop_constant(frame: pd.DataFrame, keep: Sequence[str] = SHOWN_ALWAYS) -> pd.DataFrame:
    """For display: leave out identity columns that are the same in every row."""
    identity = (*ROW_IDENTITY, *setting_columns(frame))
    constant = [
        c for c in identity if c in frame and c not in keep and frame[c].nunique(dropna=False) < 2
    ]
    return frame.drop(columns=constant)


def _dataset_frames(
    folds: pd.DataFrame, keys: Sequence[str]
) -> dict[str, tuple[str, pd.DataFrame]]:
    """name -> (title, folds): one per dataset, and the folds of every dataset that has every
    row of the table pooled (a dataset still missing a row would tilt the pooled mean)."""
    frames, complete = {}, []
    every_row = row_set(folds, keys)
    for name, group in folds.groupby("dataset", sort=True):
        frames[f"dataset_{name}"] = (f"dataset {name}", group)
        if row_set(group, keys) == every_row:
            complete.append(str(name))
    if len(complete) > 1:
        title = f"all datasets with every row, folds pooled ({', '.join(complete)})"
        frames[POOLED] = (title, folds[folds["dataset"].astype(str).isin(complete)])
    return frames


def paper_tables(
    folds: pd.DataFrame,
    keys: Sequence[str],
    aggregate: str = "selected",
    reference: pd.DataFrame | None = None,
) -> dict[str, tuple[str, str, str]]:
    """Per dataset (and over the datasets with every row): the paper-style table as (title,
    Markdown, LaTeX). Rows: loss x activation and any row key that differs within the table;
    every other setting that differs between the runs of ``reference`` (default ``folds``) is
    a column where it follows the rows, else its value here is in the caption."""
    reference = folds if reference is None else reference
    out = {}
    for name, (title, frame) in _dataset_frames(folds, keys).items():
        shown = [k for k in keys if k in SHOWN_ALWAYS or frame[k].nunique(dropna=False) > 1]
        extra, note = tables.table_settings(frame, shown, reference)
        table = tables.paper_table(frame, [*shown, *extra], aggregate)
        out[name] = (
            title,
            tables.format_paper_table(table, "markdown", aggregate, title, note),
            tables.format_paper_table(table, "latex", aggregate, title, note),
        )
    return out


def table_sections(
    ok: pd.DataFrame,
    used: pd.DataFrame,
    keys: Sequence[str],
    aggregate: str,
    out: Path,
    reference: pd.DataFrame | None = None,
) -> tuple[list[str], str]:
    """The tables of the folds used (files and sections) and, where some folds are degenerate,
    the other variant (report.md only); returns the sections and the main table.
    ``reference``: every fold the report's tables show (their settings are compared)."""
    sections = []
    found = paper_tables(used, keys, aggregate, reference)
    for name, (title, markdown, latex) in found.items():
        write_text(markdown + "\n", out / f"table_{name}.md")
        write_text(latex, out / f"table_{name}.tex")
        sections += [f"## Table: {title}", "", markdown, ""]
    main_table = found[main_table_name(found)][1]
    degenerate = results.flag(ok, schema.DEGENERATE)
    if degenerate.any():
        other, what = (ok, "with") if len(used) < len(ok) else (ok[~degenerate], "without")
        sections += [f"## Tables {what} the {int(degenerate.sum())} degenerate fold(s)", ""]
        for title, markdown, _ in paper_tables(other, keys, aggregate, reference).values():
            sections += [
                f"### {title} ({what} degenerate folds)",
                "",
                markdown,
                "",
            ]
    return sections, main_table


def main_table_name(found: dict[str, tuple[str, str, str]]) -> str:
    """The pooled table where there is one, else the (last) dataset's."""
    return POOLED if POOLED in found else list(found)[-1]


def other_sizes_sections(
    other: pd.DataFrame, keys: Sequence[str], aggregate: str, reference: pd.DataFrame
) -> list[str]:
    """The folds at input sizes other than their dataset's headline one: their tables only
    (a row per input size too, where a dataset ran at several); they enter no family, pooled
    estimate or verdict."""
    if other.empty:
        return []
    sizes = other.groupby("dataset")[SIZE].unique()
    listed = "; ".join(f"{d}: {', '.join(map(str, s))} px" for d, s in sizes.items())
    lines = [
        "## Other input sizes",
        "",
        f"Runs at sizes other than their dataset's headline size ({listed}): shown here only, "
        "in no table above, pairing, pooled estimate, flag count or verdict.",
        "",
    ]
    for title, markdown, _ in paper_tables(other, [*keys, SIZE], aggregate, reference).values():
        lines += [f"### {title}", "", markdown, ""]
    return lines


def argmax_agreement_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and loss of the 2-channel runs: validation pixels (every fold's, so each
    image once per run), pixels where argmax differs from p >= 0.5, and exact ties z0 == z1
    (argmax gives a tie to background, p = 0.5 >= 0.5 to foreground: each tie is one
    disagreement, so the disagreements that are not ties must be 0)."""
    disagreements, ties = schema.ARGMAX_DISAGREEMENTS, schema.ARGMAX_TIES
    counted = ok.dropna(subset=[disagreements]) if disagreements in ok else ok[:0]
    if counted.empty:
        return pd.DataFrame()
    columns = [schema.N_PIXELS, disagreements, ties]
    table = counted.groupby(["dataset", "loss"], sort=True)[columns].sum().astype("int64")
    table["disagreements_not_ties"] = table[disagreements] - table[ties]
    return table.reset_index()


def argmax_sections(ok: pd.DataFrame, out: Path) -> list[str]:
    table = argmax_agreement_table(ok)
    if table.empty:
        return []
    write_csv(table, out / "argmax_agreement.csv")
    total = table[[schema.N_PIXELS, "disagreements_not_ties", schema.ARGMAX_TIES]].sum()
    pixels, not_ties, ties = total.tolist()
    return [
        "## Argmax of the 2-channel head vs p >= 0.5",
        "",
        f"Over {pixels:,} validation pixels: {not_ties:,} disagreements that are not exact "
        f"ties, and {ties:,} exact ties "
        "(z0 == z1; argmax gives them to background, p = 0.5 >= 0.5 to foreground).",
        "",
        as_markdown(table),
        "",
    ]


def flagged_folds(ok: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The finished folds with a flag set: hit the epoch cap, degenerate, zero gradient, best at
    the first epoch."""
    flags = results.fold_flags(ok)
    any_flag = flags.any(axis=1)
    columns = [c for c in ("dataset", *keys, "seed", "fold", "run_dir") if c in ok.columns]
    return ok.loc[any_flag, columns].join(flags[any_flag])


def _shared_parts(parts: Sequence[Sequence[str]], separator: str) -> tuple[list[str], str]:
    """Per position, the part every one of ``parts`` has there is written once, in the
    pattern (``*`` where they differ); each one keeps what differs: (short forms, pattern)."""
    pattern, short = [], [[] for _ in parts]
    for position in zip(*parts, strict=True):
        if len(set(position)) == 1:
            pattern.append(position[0])
            continue
        pattern.append("*")
        for kept, part in zip(short, position, strict=True):
            kept.append(part)
    return [separator.join(k) for k in short], separator.join(pattern)


def short_run_dirs(run_dirs: Sequence[str]) -> tuple[list[str], str]:
    """Run folders as the parts that tell them apart, and the pattern they share with ``*``
    for those parts (folder levels, and within a level the comma-separated overrides where
    every folder has as many): unambiguous, the pattern with each row's parts in order gives
    its folder back. Folders of different depths are kept whole (pattern "")."""
    levels = [str(d).split("/") for d in run_dirs]
    if not levels or len({len(level) for level in levels}) != 1:
        return [str(d) for d in run_dirs], ""
    short: list[list[str]] = [[] for _ in levels]
    pattern = []
    for column in zip(*levels, strict=True):
        if len(set(column)) == 1:
            pattern.append(column[0])
            continue
        pieces = [c.split(",") for c in column]
        if len({len(p) for p in pieces}) == 1 and len(pieces[0]) > 1:
            kept, shared = _shared_parts(pieces, ",")
        else:
            kept, shared = list(column), "*"
        pattern.append(shared)
        for row, part in zip(short, kept, strict=True):
            row.append(part)
    return ["/".join(row) for row in short], "/".join(pattern)


def _flag_table(flagged: pd.DataFrame) -> tuple[str, str]:
    """The flagged folds as report.md shows them: the run folders shortened to what tells
    them apart (flagged.csv keeps them whole), and the words for the pattern."""
    if flagged.empty or "run_dir" not in flagged.columns:
        return (as_markdown(flagged) if not flagged.empty else "None."), ""
    short, pattern = short_run_dirs(flagged["run_dir"].astype(str).tolist())
    if "*" not in pattern:  # one folder: said once; or folders of different depths: in full
        one = f"Every flagged fold is of the run folder `{pattern}`." if pattern else ""
        return as_markdown(flagged.drop(columns="run_dir") if one else flagged), one
    shown = flagged.assign(run_dir=short).rename(columns={"run_dir": "run_dir (*)"})
    words = (
        f"run_dir (*): each run folder below its sweep folder is `{pattern}` with the row's "
        "parts in place of the `*`, in order (flagged.csv has every folder in full)."
    )
    return as_markdown(shown), words


def flag_sections(ok: pd.DataFrame, keys: Sequence[str], out: Path) -> list[str]:
    flagged = flagged_folds(ok, keys)
    write_csv(flagged, out / "flagged.csv")
    counts = ", ".join(f"{flagged[f].sum()} {f}" for f in results.FOLD_FLAGS)
    body, folders = _flag_table(flagged)
    legend = (
        "degenerate: the reported mask is (nearly) all or no foreground; "
        "best_at_first_epoch: trained past epoch 1, but no later epoch was better, so early "
        "stopping ended the fold with the barely trained network."
    ) + (f" {folders}" if folders else "")
    summary = f"{len(flagged)} of {len(ok)} folds: {counts}."
    return ["## Flagged folds", "", summary, "", legend, "", body, ""]


def failed_sections(folds: pd.DataFrame, out: Path) -> list[str]:
    failed = folds[folds["status"] != "ok"]
    if failed.empty:
        return []
    columns = [c for c in (*ROW_IDENTITY, schema.FAILED_EPOCH, "error", "run_dir") if c in failed]
    write_csv(failed[columns], out / "failed.csv")
    return ["## Failed runs", "", as_markdown(failed[columns]), ""]


def zero_gradient_notes(ok: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The report's words for folds whose gradient was exactly zero in every epoch."""
    zero = results.flag(ok, schema.ZERO_GRADIENT)
    if not zero.any():
        return []
    runs = ok.loc[zero, [k for k in ("dataset", *keys) if k in ok]].drop_duplicates()
    names = "; ".join(" ".join(map(str, row)) for row in runs.itertuples(index=False))
    return [
        f"{int(zero.sum())} fold(s) had an exactly zero gradient in every epoch ({names}): "
        "the loss does not change when the weights do, so the weights never moved and "
        "the network learned nothing (loss.binarize=hard: a step function has zero "
        "derivative; loss.binarize=ste trains). Their validation Dice can still wander a "
        "little: training-mode forward passes update BatchNorm's running statistics, "
        "gradient or not, and each curve's mean is over the folds still running."
    ]
