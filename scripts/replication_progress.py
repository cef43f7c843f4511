"""Progress of the replication (results/PLAN.md): per grid, dataset, input size and device, the
finished runs of the plan, their epochs per fold, the time they took, and what the rest would
take at the same cost per run. Reads the committed run folders under results/runs/ only (nothing
is trained):

    .venv/bin/python scripts/replication_progress.py [--runs results/runs]

"hours" are the sum of the folds' training seconds. On the CPU every run has one thread (two
joblib jobs on two cores), so they are CPU-hours. On a GPU they are process-hours of runs that
shared it (results/PLAN.md says how many at once). Where a dataset ran at several input sizes,
only its largest, the size the plan goes on with, has runs left; where two devices ran it, each
row prices the runs left at its own cost per run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from plan_compute import DEFAULT_SEEDS, FOLDS, GRIDS, SEEDS
from segact.runs.folder import SUMMARY_JSON
from segact.runs.results import load_results

SIZE, DEVICE = "dataset.image_size", "resolved.device"
COLUMNS = ["dataset", "run_dir", "epochs_run", "train_seconds", SIZE, DEVICE]


def finished_folds(runs: Path, grid: str) -> pd.DataFrame:
    """The finished runs' folds of one grid (empty where the grid has not started)."""
    folder = runs / grid
    if not folder.is_dir() or not any(folder.rglob(SUMMARY_JSON)):
        return pd.DataFrame(columns=COLUMNS)
    folds, _ = load_results([folder], metrics=())
    folds = folds[folds["status"] == "ok"]
    return folds.assign(**{c: folds.get(c, "") for c in (SIZE, DEVICE)})


def _row(grid: str, dataset: str, done: pd.DataFrame, planned: int, left: int | None) -> dict:
    """One dataset at one size on one device; ``left``: the plan's runs not yet done at this
    size on any device (None: a size the plan does not go on with)."""
    n_runs = done["run_dir"].nunique()
    hours = done["train_seconds"].sum() / 3600
    per_run = hours / n_runs if n_runs else float("nan")
    epochs = done["epochs_run"]
    return {
        "grid": grid,
        "dataset": dataset,
        "size": done[SIZE].iloc[0] if n_runs else "",
        "device": done[DEVICE].iloc[0] if n_runs else "",
        "runs done": f"{n_runs} / {planned}",
        "epochs per fold": (
            f"{epochs.mean():.0f} ({epochs.min():.0f}-{epochs.max():.0f})" if n_runs else ""
        ),
        "hours spent": hours,
        "hours per run": per_run,
        "runs left": str(left) if left is not None else "",
        "hours to go": left * per_run if left is not None else float("nan"),
    }


def progress(runs: Path) -> pd.DataFrame:
    rows = []
    for grid, (datasets, per_seed) in GRIDS.items():
        folds = finished_folds(runs, grid)
        planned = per_seed * SEEDS.get(grid, DEFAULT_SEEDS)
        for dataset in datasets:
            done = folds[folds["dataset"] == dataset]
            if done.empty:
                rows.append(_row(grid, dataset, done, planned, left=planned))
                continue
            size = pd.to_numeric(done[SIZE], errors="coerce").fillna(0)
            largest = size.max()
            left = max(planned - done.loc[size == largest, "run_dir"].nunique(), 0)
            for (px, _), chosen in done.groupby([size, done[DEVICE]]):
                rows.append(_row(grid, dataset, chosen, planned, left if px == largest else None))
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=Path, default=Path("results/runs"))
    args = parser.parse_args()
    table = progress(args.runs)
    print(
        f"{FOLDS} folds per run; 'runs left': the plan's runs not yet done at the dataset's largest"
        " size on any device; 'hours to go': those at this row's measured hours per run\n"
    )
    print(table.to_markdown(index=False, floatfmt=".2f", missingval=""))
    for device, rows in table[table["device"] != ""].groupby("device"):
        spent, to_go = rows["hours spent"].sum(), rows["hours to go"].sum()
        print(f"\n{device}: {spent:.2f} hours spent; the rest, if all ran here: {to_go:.2f}")


if __name__ == "__main__":
    main()
