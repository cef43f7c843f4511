"""``segact-report``: the command line; the work is ``segact.report.build``.

segact-report multirun/sigmoid_vs_arctan --out results/sigmoid_vs_arctan
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from segact.errors import ReportError
from segact.report import tables
from segact.report.build import ReportOptions, build_report
from segact.report.claims import DEFAULT_MARGIN_PERCENT, MarginRule
from segact.report.learned import DEFAULT_MIN_GAIN
from segact.runs.folder import FOLDS_CSV, RunFolder


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segact-report",
        description="Tables, paired statistics and plots of one or more segact sweeps.",
    )
    parser.add_argument(
        "sources", nargs="+", type=Path, help="sweep directories (or result CSV files)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: results/<sweep name>); the report replaces an earlier "
        "report's files there as a whole and leaves anything else in it alone",
    )
    parser.add_argument(
        "--aggregate",
        choices=tuple(tables.AGGREGATIONS),
        default="selected",
        help="what fills the paper-style table: each fold's selected epoch (default) or the "
        "paper's own max/min over epochs (paper_* columns)",
    )
    add_comparison_options(parser)
    add_selection_options(parser)
    add_statistics_options(parser)
    parser.add_argument(
        "--diff-results", type=Path, metavar="CSV", help="another results.csv to diff against"
    )
    parser.add_argument(
        "--no-figures",
        action="store_true",
        help="tables, statistics and notes only (drawing the figures is most of a report's "
        "time); the forest plot of the pooled comparison is drawn all the same",
    )
    parser.add_argument(
        "--trust-edits",
        action="store_true",
        help="read a run's result files even where they differ from the SHA-256 its "
        "summary.json recorded when the run finished (edited since); report.md names them",
    )
    return parser


def add_comparison_options(parser: argparse.ArgumentParser) -> None:
    """Which factors and levels the paired statistics compare."""
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="KEY",
        help="a factor to compare: a choice or setting the runs vary (loss, activation, head, "
        "model.encoder, trainer.lr, ...), its levels over runs equal in everything else, per "
        "dataset (repeatable; default: every factor the runs vary)",
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("A", "B"),
        help="two levels to compare, a - b (repeatable); without --compare they are "
        "activations; default: every two levels of each factor",
    )
    parser.add_argument(
        "--baseline",
        metavar="LEVEL",
        help="compare every level of each factor with this one (b in a - b)",
    )
    parser.add_argument(
        "--paper-claims",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="frame the comparisons by the paper's claims (claimed sizes, verdicts against "
        "them, the 'paper' line of forest.png); default: on only when every run is of one of "
        "the paper's experiments (experiment=sigmoid_vs_arctan, paper_grid)",
    )


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """Which folds and settings the tables and statistics use."""
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


def add_statistics_options(parser: argparse.ArgumentParser) -> None:
    """How the comparison judges a difference."""
    parser.add_argument(
        "--margin",
        metavar="M",
        help="the smallest difference a - b that matters (the equivalence margin): a percentage "
        "of the baseline's (b's) mean (2%%) or an absolute difference (0.01); default: "
        f"{DEFAULT_MARGIN_PERCENT:g}%% of the baseline's mean",
    )
    parser.add_argument(
        "--min-gain",
        type=float,
        default=DEFAULT_MIN_GAIN,
        help="a cell whose median best Dice closes less than this share of the gap between "
        "the trivial mask's Dice and 1 is not_learned: listed, left out of verdicts and pooled "
        "estimates (default %(default)s)",
    )


def _is_run_folder(folder: Path) -> bool:
    """A run's folder: it holds a folds.csv, or a summary.json that gives a run's status."""
    return (folder / FOLDS_CSV).is_file() or "status" in RunFolder(folder).read_summary()


def check_out(out: Path, sources: Sequence[Path]) -> None:
    """Refuse, before anything is written, an ``--out`` the report would damage or could not
    use: a file, a source folder itself, or a run folder or a folder inside one (the report's
    thresholds.csv would replace the run's own)."""
    resolved = out.resolve()
    folders = (resolved, *resolved.parents)
    existing = next((folder for folder in folders if folder.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ReportError(
            f"--out {out}: {existing} is a file, not a folder; name a folder for the report "
            "(it is created where missing)"
        )
    for source in sources:
        if resolved == Path(source).resolve():
            raise ReportError(f"--out {out} is the source {source}; name another folder")
    run = next((folder for folder in folders if _is_run_folder(folder)), None)
    if run is not None:
        where = "the run folder" if run == resolved else "inside the run folder"
        raise ReportError(
            f"--out {out} is {where} {run}: the report would overwrite the run's files; name "
            "a folder outside the runs (e.g. results/<sweep name>)"
        )


def _check_compare(keys: Sequence[str]) -> None:
    """``--compare`` names factors; it once took a results CSV (now ``--diff-results``)."""
    for key in keys:
        if key.endswith(".csv") or Path(key).is_file():
            raise ReportError(
                f"--compare {key}: --compare names a factor (loss, model.encoder, ...); to diff "
                "against another results CSV use --diff-results"
            )


def main(argv: Sequence[str] | None = None) -> int:
    from segact.runs.registration import register

    args = parser().parse_args(argv)
    register()  # the resolvers a run's saved config uses (overlays read it), plugins' activations
    out = args.out or Path("results") / args.sources[0].resolve().name
    pairs = [tuple(p) for p in args.pair] if args.pair else None
    try:
        _check_compare(args.compare)
        options = ReportOptions(
            pairs=pairs,
            factors=args.compare,
            baseline=args.baseline,
            paper_claims=args.paper_claims,
            diff_results=args.diff_results,
            aggregate=args.aggregate,
            exclude_degenerate=args.exclude_degenerate,
            figures=not args.no_figures,
            common_seeds=args.common_seeds,
            pool=args.pool,
            margin=MarginRule(args.margin),
            min_gain=args.min_gain,
            trust_edits=args.trust_edits,
        )
        check_out(out, args.sources)
        main_table = build_report(args.sources, out, options)
    except ReportError as error:
        print(f"segact-report: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. no permission to write --out, or a full disk
        where = f"{error.filename}: " if error.filename else ""
        print(f"segact-report: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # build_report has left --out as it was
        print("segact-report: interrupted", file=sys.stderr)
        return 130
    print(main_table)
    print(f"\nreport written to {out}/ (report.md, tables, results.csv, plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
