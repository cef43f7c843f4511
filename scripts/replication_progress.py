"""Progress of the replication (results/PLAN.md): per grid and dataset, the finished runs of the
plan, their epochs per fold, the CPU time they took, and what the rest would take at the same
cost per run. Reads the committed run folders under results/runs/ only (nothing is trained):

    .venv/bin/python scripts/replication_progress.py [--runs results/runs]

Runs use one thread each (two joblib jobs on two cores), so a fold's training seconds are its
CPU seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from plan_compute import DEFAULT_SEEDS, FOLDS, GRIDS, SEEDS
from segact.results import load_results


def finished_folds(runs: Path, grid: str) -> pd.DataFrame:
    """The finished runs' folds of one grid (empty where the grid has not started)."""
    folder = runs / grid
    if not folder.is_dir() or not any(folder.rglob("summary.json")):
        return pd.DataFrame(columns=["dataset", "run_dir", "epochs_run", "train_seconds"])
    folds, _ = load_results([folder], metrics=())
    return folds[folds["status"] == "ok"]


def progress(runs: Path) -> pd.DataFrame:
    rows = []
    for grid, (datasets, per_seed) in GRIDS.items():
        folds = finished_folds(runs, grid)
        planned = per_seed * SEEDS.get(grid, DEFAULT_SEEDS)
        for dataset in datasets:
            done = folds[folds["dataset"] == dataset]
            n_runs = done["run_dir"].nunique()
            cpu_h = done["train_seconds"].sum() / 3600
            per_run = cpu_h / n_runs if n_runs else float("nan")
            epochs = done["epochs_run"]
            rows.append(
                {
                    "grid": grid,
                    "dataset": dataset,
                    "runs done": f"{n_runs} / {planned}",
                    "epochs per fold": (
                        f"{epochs.mean():.0f} ({epochs.min():.0f}-{epochs.max():.0f})"
                        if n_runs
                        else ""
                    ),
                    "CPU-h spent": cpu_h,
                    "CPU-h per run": per_run,
                    "CPU-h to go": (planned - n_runs) * per_run,
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=Path, default=Path("results/runs"))
    args = parser.parse_args()
    table = progress(args.runs)
    print(f"{FOLDS} folds per run; 'CPU-h to go' at the measured CPU-h per run (blank: none yet)\n")
    print(table.to_markdown(index=False, floatfmt=".2f"))
    spent, to_go = table["CPU-h spent"].sum(), table["CPU-h to go"].sum()
    print(f"\nspent: {spent:.1f} CPU-hours; to go where a run of the dataset finished: {to_go:.1f}")


if __name__ == "__main__":
    main()
