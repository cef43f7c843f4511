"""Timing summary of a sweep (scripts/paper_scale.sh): training images per second, seconds per
epoch and training time of every run, from its epochs.csv (``epoch_seconds``: one epoch's
training and validation sweep) and folds.csv (``n_train``, ``train_seconds``), plus the wall time
of the whole command. Writes ``<out>/timing.md`` and prints it.

    python scripts/paper_scale_summary.py OUT --wall-seconds 123.4 [--device NAME] [--command C]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from segact.io import write_text_atomic
from segact.report.tables import format_table
from segact.runs.folder import RunFolder, run_folders

RUNS_DIR = "runs"
TIMING_FILE = "timing.md"
KEYS = ("activation", "loss", "seed")


@dataclass(frozen=True)
class Timing:
    """One run's (or all runs') finished folds: epochs, training images seen, seconds."""

    label: str  # the run folder under runs/
    keys: dict[str, str]  # the run's activation, loss and seed (folds.csv)
    folds: int
    epochs: int
    images: int  # training images over all epochs
    epoch_seconds: float  # sum of epochs.csv epoch_seconds
    train_seconds: float  # sum of folds.csv train_seconds (epochs, checkpoints, best-state copies)

    def row(self) -> dict[str, str]:
        return {
            **self.keys,
            "folds": str(self.folds),
            "epochs": str(self.epochs),
            "s / epoch": f"{self.epoch_seconds / self.epochs:.2f}",
            "training images / s": f"{self.images / self.epoch_seconds:.1f}",
            "training time (s)": f"{self.train_seconds:.1f}",
        }


def run_timing(folds_csv: Path, runs_dir: Path) -> Timing | None:
    """The timing of the run in ``folds_csv``'s folder; None without a finished fold."""
    folds = pd.read_csv(folds_csv)
    folds = folds[folds["status"] == "ok"] if "status" in folds else folds
    epochs_csv = RunFolder(folds_csv.parent).epochs_csv
    if folds.empty or not epochs_csv.exists():
        return None
    epochs = pd.read_csv(epochs_csv).merge(folds[["fold", "n_train"]], on="fold")
    label = str(folds_csv.parent.relative_to(runs_dir))
    keys = {key: str(folds[key].iloc[0]) for key in KEYS}
    return Timing(
        label,
        keys,
        len(folds),
        len(epochs),
        int(epochs["n_train"].sum()),
        float(epochs["epoch_seconds"].sum()),
        float(folds["train_seconds"].sum()),
    )


def total(timings: list[Timing]) -> Timing:
    return Timing(
        "",
        {key: "all runs" if key == KEYS[0] else "" for key in KEYS},
        sum(t.folds for t in timings),
        sum(t.epochs for t in timings),
        sum(t.images for t in timings),
        sum(t.epoch_seconds for t in timings),
        sum(t.train_seconds for t in timings),
    )


def wall_per_fold_epoch(timings: list[Timing], wall_seconds: float) -> str:
    """The figure that counts when folds train side by side (trainer.fold_group, joblib): each
    fold's epoch_seconds then includes the other folds' time in the same round."""
    epochs = sum(t.epochs for t in timings)
    if not epochs:
        return "wall time per fold-epoch: no epoch finished"
    return (
        f"wall time per fold-epoch: {wall_seconds / epochs:.2f} s ({epochs} fold-epochs in "
        f"{wall_seconds:.1f} s; too low when an earlier invocation trained some of them)"
    )


def timing_markdown(timings: list[Timing], unfinished: list[str], args: argparse.Namespace) -> str:
    table = pd.DataFrame([t.row() for t in [*timings, total(timings)]])
    lines = ["# Paper-scale timing", ""]
    lines += [f"command: `{args.command}`", ""] if args.command else []
    lines += [f"device: {args.device}", ""] if args.device else []
    lines += [
        f"total wall time: {args.wall_seconds:.1f} s ({args.wall_seconds / 60:.1f} min) for this "
        "invocation (runs finished by an earlier one are skipped; their epochs still count below)",
        "",
        wall_per_fold_epoch(timings, args.wall_seconds),
        "",
        format_table(table),
        "",
        "Run folders (under runs/, in the table's order):",
        "",
        *(f"- `{t.label}`" for t in timings),
        "",
        *(f"No finished fold (failed or still running): `{label}`\n" for label in unfinished),
        "s / epoch and training images / s: epochs.csv epoch_seconds (training steps and the "
        "threshold sweep of the validation fold); training time: folds.csv train_seconds.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder holding runs/")
    parser.add_argument("--wall-seconds", type=float, required=True)
    parser.add_argument("--device", default="")
    parser.add_argument("--command", default="")
    args = parser.parse_args()
    runs_dir = args.out / RUNS_DIR
    paths = [run.folds_csv for run in run_folders(runs_dir)]
    found = [run_timing(path, runs_dir) for path in paths]
    timings = [t for t in found if t is not None]
    if not timings:
        sys.exit(f"paper_scale_summary: no finished fold under {runs_dir}")
    unfinished = [
        str(path.parent.relative_to(runs_dir))
        for path, timing in zip(paths, found, strict=True)
        if timing is None
    ]
    text = timing_markdown(timings, unfinished, args)
    write_text_atomic(args.out / TIMING_FILE, lambda handle: handle.write(text))
    print(text, end="")


if __name__ == "__main__":
    main()
