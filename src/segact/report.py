"""``segact-report``: a sweep's folds.csv files -> one tidy CSV, the paper's tables (Markdown and
LaTeX), a paired comparison of two activations, and plots.

    segact-report multirun/sigmoid_vs_arctan --out results/sigmoid_vs_arctan

The small table helpers at the top are also what ``segact-train`` prints after a run or sweep.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from segact import plots, stats
from segact.io import write_csv

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


# --- segact-report ------------------------------------------------------------------------------

IDENTITY: tuple[str, ...] = (*RUN_KEYS, "seed", "fold")
"""What makes a row of the tidy CSV: a run's choices and the fold."""
REQUIRED: tuple[str, ...] = (*IDENTITY, "status")
PAPER_COLUMNS: dict[str, str] = {
    "best_threshold": "threshold",
    "nll": "NLL",
    "best_dice": "best Dice",
    "mean_dice": "mean Dice",
}
"""The paper's table: column in folds.csv -> header."""
LOWER_IS_BETTER = frozenset({"nll"})
NOT_RANKED = frozenset({"best_threshold"})
TIMING = ("train_seconds", "wall_seconds", "run_dir", "run_path", "config_hash")
TABLE_ROW_KEYS = ("loss", "activation", "head", "binarize", "arch", "encoder", "protocol")


class ReportError(Exception):
    """Input the report cannot use; the message says what is wrong."""


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ReportError(f"cannot read {path}: {error}") from None


def check_columns(frame: pd.DataFrame, required: Iterable[str], source: Path | str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ReportError(
            f"{source} lacks the columns {', '.join(missing)}: not a segact results file, or one "
            "written by an incompatible segact version"
        )


def _with_run_keys(thresholds: pd.DataFrame, run_folds: pd.DataFrame) -> pd.DataFrame:
    keys = [k for k in IDENTITY if k != "fold"]
    run = run_folds[keys].iloc[0]
    return thresholds.assign(**run.to_dict())


def _read_run(folds_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    folds = _read_csv(folds_path)
    check_columns(folds, REQUIRED, folds_path)
    folds = folds.assign(run_path=str(folds_path.parent))
    thresholds_path = folds_path.with_name("thresholds.csv")
    if not thresholds_path.exists() or folds.empty:
        return folds, pd.DataFrame()
    thresholds = _with_run_keys(_read_csv(thresholds_path), folds)
    return folds, thresholds.assign(run_path=str(folds_path.parent))


def load_results(sources: Sequence[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run below the sweep folders (or rows of tidy CSV files): (folds, thresholds)."""
    fold_frames, threshold_frames = [], []
    for source in map(Path, sources):
        if source.is_file():
            frame = _read_csv(source)
            check_columns(frame, REQUIRED, source)
            fold_frames.append(frame)
            continue
        if not source.is_dir():
            raise ReportError(f"{source}: no such sweep directory or results CSV")
        runs = sorted(source.rglob("folds.csv"))
        if not runs:
            raise ReportError(f"{source}: no runs found (no folds.csv below it)")
        for folds, thresholds in map(_read_run, runs):
            fold_frames.append(folds)
            threshold_frames.append(thresholds)
    folds = pd.concat(fold_frames, ignore_index=True)
    thresholds = pd.concat(threshold_frames, ignore_index=True) if threshold_frames else None
    if not (folds["status"] == "ok").any():
        raise ReportError(
            f"no finished runs in {', '.join(map(str, sources))} "
            f"({folds['run_path' if 'run_path' in folds else 'activation'].nunique()} failed)"
        )
    return folds.sort_values(list(IDENTITY), kind="stable", ignore_index=True), thresholds


def row_keys(folds: pd.DataFrame) -> list[str]:
    """The paper's rows, loss x activation, plus any other choice the sweep varies."""
    return [k for k in TABLE_ROW_KEYS if k in ("loss", "activation") or folds[k].nunique() > 1]


def paper_table(folds: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean and std over folds (and seeds) per row; columns (metric, mean|std) plus n."""
    metrics = [m for m in PAPER_COLUMNS if m in folds.columns]
    table = folds.groupby(list(keys), sort=True)[metrics].agg(["mean", "std"])
    table[("n", "")] = folds.groupby(list(keys), sort=True).size()
    return table


def _best_rows(table: pd.DataFrame, metric: str) -> pd.Series:
    means = table[(metric, "mean")]
    best = means.min() if metric in LOWER_IS_BETTER else means.max()
    return np.isclose(means, best) & (metric not in NOT_RANKED)


def _latex_escape(text: object) -> str:
    return str(text).replace("_", "\\_")


def format_paper_table(table: pd.DataFrame, style: str, digits: int = 3) -> str:
    """``mean ± std`` cells, the best mean of each ranked column in bold; style markdown|latex."""
    bold, plus_minus = {
        "markdown": ("**{}**", " ± "),
        "latex": ("\\textbf{{{}}}", " $\\pm$ "),
    }[style]
    cells = pd.DataFrame(index=table.index)
    for metric, header in PAPER_COLUMNS.items():
        if metric not in table.columns.get_level_values(0):
            continue
        mean, std = table[(metric, "mean")], table[(metric, "std")].fillna(0.0)
        text = [f"{m:.{digits}f}" for m in mean]
        is_best = _best_rows(table, metric)
        cells[header] = [
            (bold.format(t) if b else t) + f"{plus_minus}{s:.{digits}f}"
            for t, b, s in zip(text, is_best, std, strict=True)
        ]
    cells["n"] = table[("n", "")]
    cells = cells.reset_index()
    if style == "markdown":
        return cells.to_markdown(index=False, disable_numparse=True)
    cells = cells.rename(columns=_latex_escape).map(_latex_escape)
    return cells.to_latex(index=False, escape=False, column_format="l" * len(cells.columns))


def _markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}g")


def _drop_constant(frame: pd.DataFrame, keep: Sequence[str]) -> pd.DataFrame:
    """For display: leave out identity columns that are the same in every row."""
    constant = [
        c for c in IDENTITY if c in frame and c not in keep and frame[c].nunique(dropna=False) < 2
    ]
    return frame.drop(columns=constant)


def compare_results(ours: pd.DataFrame, other_path: Path) -> pd.DataFrame:
    """Row-by-row differences (ours - other) of the metrics two result CSVs share."""
    other = _read_csv(other_path)
    check_columns(other, REQUIRED, other_path)
    shared = [
        c
        for c in ours.columns
        if c in other.columns
        and c not in IDENTITY
        and c not in TIMING
        and pd.api.types.is_numeric_dtype(ours[c])
        and pd.api.types.is_numeric_dtype(other[c])
    ]
    merged = ours[[*IDENTITY, *shared]].merge(
        other[[*IDENTITY, *shared]],
        on=list(IDENTITY),
        how="outer",
        suffixes=("", "_other"),
        indicator=True,
    )
    out = merged[list(IDENTITY)].assign(
        present=merged["_merge"].map({"both": "both", "left_only": "ours", "right_only": "other"})
    )
    for column in shared:
        out[column] = merged[column].astype(float) - merged[f"{column}_other"].astype(float)
    return out


def _comparison_text(differences: pd.DataFrame, other: Path) -> str:
    metrics = [c for c in differences.columns if c not in (*IDENTITY, "present")]
    both = differences[differences["present"] == "both"]
    largest = both[metrics].abs().max().rename("max |ours - other|").reset_index()
    lines = [f"Compared with {other}: {len(both)} rows in both"]
    for side in ("ours", "other"):
        count = int((differences["present"] == side).sum())
        if count:
            lines.append(f"{count} rows only in {side}")
    lines.append(_markdown(largest.rename(columns={"index": "metric"})))
    return "\n".join(lines)


def _paired(
    ok: pd.DataFrame, pairs: Sequence[tuple[str, str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    group_keys = [k for k in IDENTITY if k not in ("activation", "seed", "fold")]
    differences = pd.concat(
        [stats.paired_differences(ok, a, b, group_keys) for a, b in pairs], ignore_index=True
    )
    return differences, stats.summarize_pairs(differences, group_keys)


def build_report(
    sources: Sequence[Path],
    out: Path,
    pairs: Sequence[tuple[str, str]] = (("sigmoid", "arctan"),),
    compare: Path | None = None,
) -> str:
    """Write every report file into ``out``; returns the main table as Markdown."""
    folds, thresholds = load_results(sources)
    out.mkdir(parents=True, exist_ok=True)
    ok, failed = folds[folds["status"] == "ok"], folds[folds["status"] != "ok"]
    keys = row_keys(ok)
    sections = [f"# Report of {', '.join(map(str, sources))}", ""]

    write_csv(folds, out / "results.csv")
    if thresholds is not None and not thresholds.empty:
        write_csv(thresholds, out / "thresholds.csv")
    tables = {f"dataset_{name}": group for name, group in ok.groupby("dataset", sort=True)}
    if len(tables) > 1:
        tables["all_datasets"] = ok
    for name, frame in tables.items():
        table = paper_table(frame, keys)
        markdown = format_paper_table(table, "markdown")
        (out / f"table_{name}.md").write_text(markdown + "\n")
        (out / f"table_{name}.tex").write_text(format_paper_table(table, "latex"))
        sections += [f"## Table: {name.replace('_', ' ')}", "", markdown, ""]
    main_table = sections[-2]

    differences, summary = _paired(ok, pairs)
    write_csv(differences, out / "paired_differences.csv")
    write_csv(summary, out / "paired_summary.csv")
    sections += [
        "## Paired comparison (a - b, per fold; bootstrap 95% CI, Wilcoxon signed-rank)",
        "",
        _markdown(_drop_constant(summary, keep=("dataset", "loss")))
        if not summary.empty
        else "No run pairs found for " + ", ".join(f"{a} vs {b}" for a, b in pairs),
        "",
    ]

    if not failed.empty:
        columns = [c for c in (*IDENTITY, "failed_epoch", "error", "run_path") if c in failed]
        write_csv(failed[columns], out / "failed.csv")
        sections += ["## Failed runs", "", _markdown(failed[columns]), ""]

    panel_keys = [k for k in ("dataset", *keys) if k != "activation" and k in ok]
    if thresholds is not None and not thresholds.empty:
        ok_thresholds = thresholds.merge(ok[["run_path", "fold"]], on=["run_path", "fold"])
        plots.dice_vs_threshold(ok_thresholds, panel_keys, out / "dice_vs_threshold.png")
        plots.reliability(ok_thresholds, panel_keys, out / "reliability.png")
    plots.activation_functions(sorted(ok["activation"].unique()), out / "activations.png")
    figures = sorted(p.name for p in out.glob("*.png"))
    sections += ["## Figures", "", *(f"![{name}]({name})" for name in figures), ""]

    if compare is not None:
        comparison = compare_results(folds, compare)
        write_csv(comparison, out / "compare.csv")
        sections += ["## Comparison", "", _comparison_text(comparison, compare), ""]
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
        help="activations to compare per loss (repeatable; default: sigmoid arctan)",
    )
    parser.add_argument("--compare", type=Path, help="another results.csv to diff against")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = args.out or Path("results") / args.sources[0].resolve().name
    pairs = [tuple(p) for p in args.pair] if args.pair else [("sigmoid", "arctan")]
    try:
        main_table = build_report(args.sources, out, pairs, args.compare)
    except ReportError as error:
        print(f"segact-report: error: {error}", file=sys.stderr)
        return 2
    print(main_table)
    print(f"\nreport written to {out}/ (report.md, tables, results.csv, plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
