"""``segact-report``: a sweep's run folders -> one tidy CSV, the paper's tables (Markdown and
LaTeX), paired comparisons of activations, the flagged and failed folds, and plots.

    segact-report multirun/sigmoid_vs_arctan --out results/sigmoid_vs_arctan

Loading lives in ``segact.results`` and the tables in ``segact.tables`` (both also used by
``segact-train``); plotting is imported only when a report is built.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from segact import claims, results, stats, tables
from segact.errors import ReportError
from segact.io import write_csv

IDENTITY: tuple[str, ...] = (*results.RUN_KEYS, "seed", "fold")
"""What makes a row of the tidy CSV (with any differing setting): a run's choices and the fold."""
TIMING = ("train_seconds", "wall_seconds", "run_dir", "run_path", "config_hash")
DEFAULT_PAIR = ("sigmoid", "arctan")
SHOWN_ALWAYS = ("dataset", "loss", "activation")


def _markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}g")


def _drop_constant(frame: pd.DataFrame, keep: Sequence[str] = SHOWN_ALWAYS) -> pd.DataFrame:
    """For display: leave out identity columns that are the same in every row."""
    identity = (*IDENTITY, *results.setting_columns(frame))
    constant = [
        c for c in identity if c in frame and c not in keep and frame[c].nunique(dropna=False) < 2
    ]
    return frame.drop(columns=constant)


# --- tables -------------------------------------------------------------------------------------


def _row_set(frame: pd.DataFrame, keys: Sequence[str]) -> set[tuple[str, ...]]:
    return set(frame[list(keys)].astype(str).itertuples(index=False, name=None))


def _dataset_frames(
    folds: pd.DataFrame, keys: Sequence[str]
) -> dict[str, tuple[str, pd.DataFrame]]:
    """name -> (title, folds): one per dataset, and the folds of every dataset that has every
    row of the table pooled (a dataset still missing a row would tilt the pooled mean)."""
    frames, complete = {}, []
    every_row = _row_set(folds, keys)
    for name, group in folds.groupby("dataset", sort=True):
        frames[f"dataset_{name}"] = (f"dataset {name}", group)
        if _row_set(group, keys) == every_row:
            complete.append(str(name))
    if len(complete) > 1:
        title = f"all datasets with every row, folds pooled ({', '.join(complete)})"
        frames["all_datasets"] = (title, folds[folds["dataset"].astype(str).isin(complete)])
    return frames


def paper_tables(
    folds: pd.DataFrame, keys: Sequence[str], aggregate: str = "selected"
) -> dict[str, tuple[str, str, str]]:
    """Per dataset (and over the datasets with every row): the paper-style table as (title,
    Markdown, LaTeX). Rows: loss x activation and any row key that differs within the table."""
    out = {}
    for name, (title, frame) in _dataset_frames(folds, keys).items():
        shown = [k for k in keys if k in SHOWN_ALWAYS or frame[k].nunique(dropna=False) > 1]
        table = tables.paper_table(frame, shown, aggregate)
        out[name] = (
            title,
            tables.format_paper_table(table, "markdown", aggregate, title),
            tables.format_paper_table(table, "latex", aggregate, title),
        )
    return out


def _table_sections(
    ok: pd.DataFrame, used: pd.DataFrame, keys: Sequence[str], aggregate: str, out: Path
) -> tuple[list[str], str]:
    """The tables of the folds used (files and sections) and, where some folds are degenerate,
    the other variant (report.md only); returns the sections and the main table."""
    sections = []
    for name, (title, markdown, latex) in paper_tables(used, keys, aggregate).items():
        (out / f"table_{name}.md").write_text(markdown + "\n")
        (out / f"table_{name}.tex").write_text(latex)
        sections += [f"## Table: {title}", "", markdown, ""]
    main_table = sections[-2]
    degenerate = results.flag(ok, "degenerate")
    if degenerate.any():
        other, what = (ok, "with") if len(used) < len(ok) else (ok[~degenerate], "without")
        sections += [f"## Tables {what} the {int(degenerate.sum())} degenerate fold(s)", ""]
        for title, markdown, _ in paper_tables(other, keys, aggregate).values():
            sections += [
                f"### {title} ({what} degenerate folds)",
                "",
                markdown,
                "",
            ]
    return sections, main_table


# --- paired statistics --------------------------------------------------------------------------


def choose_pairs(
    ok: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None, notes: list[str]
) -> list[tuple[str, str]]:
    """The ``--pair`` arguments, each checked against the activations that finished; without
    any, sigmoid vs arctan where both are there."""
    present = sorted(ok["activation"].unique())
    if pairs is None:
        if set(DEFAULT_PAIR) <= set(present):
            return [DEFAULT_PAIR]
        notes.append("No paired comparison: no --pair given and not both of sigmoid, arctan ran.")
        return []
    for a, b in pairs:
        unknown = [x for x in (a, b) if x not in present]
        if unknown:
            raise ReportError(
                f"--pair {a} {b}: no finished run has the activation {', '.join(unknown)} "
                f"(the activations here: {', '.join(present)})"
            )
        if a == b:
            raise ReportError(f"--pair {a} {b}: compare two different activations")
    return [tuple(p) for p in pairs]


def paired(
    used: pd.DataFrame, pairs: Sequence[tuple[str, str]], aggregate: str = "selected"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-pair differences, summary per pair x group x metric) over the folds used, of the
    metrics the ``aggregate`` tables show."""
    keys = stats.pair_keys(used)
    metrics = stats.PAIR_METRICS_BY_AGGREGATION[aggregate]
    frames = [stats.paired_differences(used, a, b, keys, metrics) for a, b in pairs]
    if not frames:  # no pair asked for: the files keep their columns
        frames = [stats.paired_differences(used.iloc[:0], "", "", keys, metrics)]
    differences = pd.concat(frames, ignore_index=True)
    return differences, stats.summarize_pairs(differences, keys)


def _reachable(table: pd.DataFrame) -> str:
    """What the exact Wilcoxon test can show with this table's pairs."""
    low, high = table["n"].min(), table["n"].max()
    n = f"{low}" if low == high else f"{low} to {high}"
    floor = table["min_p_reachable"].min()
    return f"Smallest p reachable here: {floor:.3g} (n = {n}); p < 0.05 needs 6 non-zero pairs."


def _paired_sections(summary: pd.DataFrame, pairs: Sequence[tuple[str, str]]) -> list[str]:
    sections = [
        "## Paired comparison",
        "",
        "Per pair of runs equal in everything but the activation (same seed and fold): the "
        "difference a - b; its mean with a 95% CI (ci_method t below 10 pairs, bca: BCa "
        "bootstrap from 10), the two-sided Wilcoxon signed-rank p, Holm-adjusted over the rows "
        "of each table (wilcoxon_p_holm), and min_p_reachable = 2 / 2^n, the smallest p the exact "
        "test can give with n non-zero differences.",
        "",
    ]
    if summary.empty:
        found = ", ".join(f"{a} vs {b}" for a, b in pairs)
        return [*sections, f"No run pairs found for {found}.", ""]
    for (a, b, metric), table in summary.groupby(list(stats.FAMILY), sort=False):
        shown = _drop_constant(table.drop(columns=list(stats.FAMILY)), keep=("dataset", "loss"))
        sections += [
            f"### {a} - {b}: {metric}",
            "",
            _markdown(shown),
            "",
            _reachable(table),
            "",
        ]
    return sections


def _claims_sections(summary: pd.DataFrame, used: pd.DataFrame, out: Path) -> list[str]:
    keys = [c for c in ("dataset", claims.SIZE) if c in used and c in summary]
    degenerate = used.loc[results.flag(used, "degenerate"), keys].drop_duplicates()
    compared = claims.compare_with_paper(summary, degenerate)
    if compared.empty:
        return []
    write_csv(compared, out / "paper_claims.csv")
    return [
        "## The paper's claims",
        "",
        f"Each real dataset's mean counts once ({', '.join(claims.LEFT_OUT)} left out); "
        "relative_percent = 100 (mean_b - mean_a) / mean_a. Datasets run at several input sizes "
        "count once per size, and once more at their largest in the scope that says so. "
        "sign_test_p: two-sided sign test over the datasets where b is ahead or behind.",
        "",
        _markdown(compared),
        "",
    ]


def argmax_agreement(ok: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and loss of the 2-channel runs: validation pixels (every fold's, so each
    image once per run), pixels where argmax differs from p >= 0.5, and exact ties z0 == z1
    (argmax gives a tie to background, p = 0.5 >= 0.5 to foreground: each tie is one
    disagreement, so the disagreements that are not ties must be 0)."""
    counted = ok.dropna(subset=["argmax_disagreements"]) if "argmax_disagreements" in ok else ok[:0]
    if counted.empty:
        return pd.DataFrame()
    columns = ["n_pixels", "argmax_disagreements", "argmax_ties"]
    table = counted.groupby(["dataset", "loss"], sort=True)[columns].sum().astype("int64")
    table["disagreements_not_ties"] = table["argmax_disagreements"] - table["argmax_ties"]
    return table.reset_index()


def _argmax_sections(ok: pd.DataFrame, out: Path) -> list[str]:
    table = argmax_agreement(ok)
    if table.empty:
        return []
    write_csv(table, out / "argmax_agreement.csv")
    total = table[["n_pixels", "disagreements_not_ties", "argmax_ties"]].sum()
    return [
        "## Argmax of the 2-channel head vs p >= 0.5",
        "",
        f"Over {total['n_pixels']:,} validation pixels: {total['disagreements_not_ties']:,} "
        f"disagreements that are not exact ties, and {total['argmax_ties']:,} exact ties "
        "(z0 == z1; argmax gives them to background, p = 0.5 >= 0.5 to foreground).",
        "",
        _markdown(table),
        "",
    ]


# --- flagged and failed folds -------------------------------------------------------------------


def flagged_folds(ok: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The finished folds with a flag set: hit the epoch cap, degenerate, zero gradient, best at
    the first epoch."""
    flags = results.fold_flags(ok)
    any_flag = flags.any(axis=1)
    columns = [c for c in ("dataset", *keys, "seed", "fold", "run_dir") if c in ok.columns]
    return ok.loc[any_flag, columns].join(flags[any_flag])


def _flag_sections(ok: pd.DataFrame, keys: Sequence[str], out: Path) -> list[str]:
    flagged = flagged_folds(ok, keys)
    write_csv(flagged, out / "flagged.csv")
    counts = ", ".join(f"{flagged[f].sum()} {f}" for f in results.FOLD_FLAGS)
    body = _markdown(flagged) if not flagged.empty else "None."
    legend = (
        "degenerate: the reported mask is (nearly) all or no foreground; "
        "best_at_first_epoch: trained past epoch 1, but no later epoch was better, so early "
        "stopping ended the fold with the barely trained network."
    )
    summary = f"{len(flagged)} of {len(ok)} folds: {counts}."
    return ["## Flagged folds", "", summary, "", legend, "", body, ""]


def _failed_sections(folds: pd.DataFrame, out: Path) -> list[str]:
    failed = folds[folds["status"] != "ok"]
    if failed.empty:
        return []
    columns = [c for c in (*IDENTITY, "failed_epoch", "error", "run_dir") if c in failed]
    write_csv(failed[columns], out / "failed.csv")
    return ["## Failed runs", "", _markdown(failed[columns]), ""]


# --- figures and comparison ---------------------------------------------------------------------


def _figure_sections(
    used: pd.DataFrame, thresholds: pd.DataFrame, keys: Sequence[str], out: Path
) -> list[str]:
    from segact import plots  # matplotlib only when a report is drawn

    panel_keys = [k for k in ("dataset", *keys) if k != "activation"]
    if not thresholds.empty:
        chosen = thresholds.merge(used[["run_path", "fold"]], on=["run_path", "fold"])
        plots.dice_vs_threshold(chosen, panel_keys, out / "dice_vs_threshold.png")
        plots.reliability(chosen, panel_keys, out / "reliability.png")
    plots.activation_functions(sorted(used["activation"].unique()), out / "activations.png")
    epochs = results.load_epochs(used)
    if not epochs.empty:
        line_keys = list(keys) or ["activation"]
        plots.metric_vs_epoch(
            epochs,
            line_keys,
            "grad_norm",
            "gradient norm (first batch)",
            out / "grad_norm_vs_epoch.png",
        )
        plots.metric_vs_epoch(
            epochs, line_keys, "val_mean_dice", "validation mean Dice", out / "dice_vs_epoch.png"
        )
    figures = sorted(p.name for p in out.glob("*.png"))
    return ["## Figures", "", *(f"![{name}]({name})" for name in figures), ""]


def compare_results(ours: pd.DataFrame, other_path: Path) -> pd.DataFrame:
    """Row-by-row differences (ours - other) of the metrics two result CSVs share."""
    other, _ = results.load_results([other_path], metrics=())
    keys = [
        c
        for c in results.sort_keys(ours)
        if c in ours and c in other and (c in IDENTITY or ours[c].nunique(dropna=False) > 1)
    ]
    settings = set(results.setting_columns(ours))
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


def _comparison_sections(folds: pd.DataFrame, other: Path, out: Path) -> list[str]:
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
    lines.append(_markdown(largest.rename(columns={"index": "metric"})))
    return ["## Comparison", "", "\n".join(lines), ""]


# --- the report ---------------------------------------------------------------------------------


def _used_folds(ok: pd.DataFrame, exclude_degenerate: bool, notes: list[str]) -> pd.DataFrame:
    degenerate = results.flag(ok, "degenerate")
    if not exclude_degenerate:
        return ok
    if degenerate.all():
        raise ReportError("--exclude-degenerate: every finished fold is degenerate")
    notes.append(
        f"--exclude-degenerate: {int(degenerate.sum())} degenerate fold(s) of {len(ok)} dropped "
        "from the tables, statistics and plots."
    )
    return ok[~degenerate]


def pool_settings(folds: pd.DataFrame, pool: Sequence[str], notes: list[str]) -> pd.DataFrame:
    """``folds`` without the identity columns named in ``pool`` (a column, or a group such as
    ``resolved`` for all of ``resolved.*``), so runs that differ only in them share rows and
    pairs: e.g. a grid trained partly on a GPU and partly on the CPU."""
    for name in pool:
        columns = [c for c in folds.columns if c == name or c.startswith(f"{name}.")]
        if not columns:
            known = ", ".join(results.setting_columns(folds)) or "none"
            raise ReportError(f"--pool {name}: the runs have no such setting (names: {known})")
        for column in columns:
            counts = folds[column].astype("string").fillna("unset").value_counts().sort_index()
            values = ", ".join(f"{value} ({n} folds)" for value, n in counts.items())
            notes.append(f"--pool {name}: rows and pairs pool the values of {column}: {values}.")
        folds = folds.drop(columns=columns)
    return folds


def common_seed_folds(ok: pd.DataFrame, keys: Sequence[str], notes: list[str]) -> pd.DataFrame:
    """Per dataset, only the seeds that every row of its table has finished: the cells of an
    unfinished grid are then means over the same seeds (and a no-op once the grid is done)."""
    kept = []
    for name, group in ok.groupby("dataset", sort=True):
        every_row = _row_set(group, keys)
        seeds = sorted(group["seed"].unique())
        common = [s for s in seeds if _row_set(group[group["seed"] == s], keys) == every_row]
        if common != seeds:
            notes.append(
                f"--common-seeds: dataset {name} uses seed(s) "
                f"{', '.join(map(str, common)) or 'none'} of {', '.join(map(str, seeds))}, "
                "the ones every row has finished."
            )
        kept.append(group[group["seed"].isin(common)])
    used = pd.concat(kept) if kept else ok
    if used.empty:
        raise ReportError("--common-seeds: no dataset has a seed that every row has finished")
    return used


def _zero_gradient_notes(ok: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The report's words for folds whose gradient was exactly zero in every epoch."""
    zero = results.flag(ok, "zero_gradient")
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
    keys = [k for k in tables.row_keys(ok) if k != "dataset"]
    if common_seeds:
        ok = common_seed_folds(ok, keys, notes)
    pairs = choose_pairs(ok, pairs, notes)
    used = _used_folds(ok, exclude_degenerate, notes)
    notes += _zero_gradient_notes(ok, keys)
    hidden = tables.hidden_settings(ok, keys)
    if hidden:
        notes.append(
            f"Settings that differ between runs but follow the dataset and the row keys (no rows "
            f"of their own): {', '.join(hidden)}."
        )
    out.mkdir(parents=True, exist_ok=True)
    # run_path is this machine's absolute path: the files keep run_dir (relative) only.
    write_csv(folds.drop(columns="run_path", errors="ignore"), out / "results.csv")
    if not thresholds.empty:
        write_csv(thresholds.drop(columns="run_path", errors="ignore"), out / "thresholds.csv")
    table_sections, main_table = _table_sections(ok, used, keys, aggregate, out)
    differences, summary = paired(used, pairs, aggregate)
    write_csv(differences, out / "paired_differences.csv")
    write_csv(summary, out / "paired_summary.csv")
    sections = [
        f"# Report of {', '.join(map(str, sources))}",
        "",
        *(f"- {note}" for note in notes),
        "",
        *table_sections,
        *_paired_sections(summary, pairs),
        *_claims_sections(summary, used, out),
        *_argmax_sections(ok, out),
        *_flag_sections(ok, keys, out),
        *_failed_sections(folds, out),
        *(_figure_sections(used, thresholds, keys, out) if figures else []),
        *(_comparison_sections(folds, compare, out) if compare is not None else []),
    ]
    (out / "report.md").write_text("\n".join(sections))
    return main_table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segact-report",
        description="Tables, paired statistics and plots of one or more segact sweeps.",
    )
    parser.add_argument(
        "sources", nargs="+", type=Path, help="sweep directories (or result CSV files)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: results/<sweep name>)")
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("A", "B"),
        help="activations to compare per loss (repeatable; default: sigmoid arctan if both ran)",
    )
    parser.add_argument(
        "--aggregate",
        choices=tuple(tables.AGGREGATIONS),
        default="selected",
        help="what fills the paper-style table: each fold's selected epoch (default) or the "
        "paper's own max/min over epochs (paper_* columns)",
    )
    parser.add_argument(
        "--exclude-degenerate",
        action="store_true",
        help="leave degenerate folds (a trivial mask) out of the tables, statistics and plots",
    )
    parser.add_argument(
        "--common-seeds",
        action="store_true",
        help="per dataset, only the seeds that every row of the table has finished (an "
        "unfinished grid then compares its cells on the same seeds; results.csv keeps all)",
    )
    parser.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="SETTING",
        help="pool runs that differ only in this setting (or group: 'resolved' for the device "
        "and threads a run resolved) into the same rows and pairs; repeatable",
    )
    parser.add_argument("--compare", type=Path, help="another results.csv to diff against")
    parser.add_argument(
        "--no-figures",
        action="store_true",
        help="tables, statistics and notes only (drawing the figures is most of a report's time)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = args.out or Path("results") / args.sources[0].resolve().name
    pairs = [tuple(p) for p in args.pair] if args.pair else None
    try:
        main_table = build_report(
            args.sources,
            out,
            pairs,
            args.compare,
            args.aggregate,
            args.exclude_degenerate,
            figures=not args.no_figures,
            common_seeds=args.common_seeds,
            pool=args.pool,
        )
    except ReportError as error:
        print(f"segact-report: error: {error}", file=sys.stderr)
        return 2
    print(main_table)
    print(f"\nreport written to {out}/ (report.md, tables, results.csv, plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
