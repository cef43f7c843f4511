"""Compute plan of the replication: seconds per epoch of each dataset at a given scale, and the
CPU time the whole grid of results/PLAN.md would take.

Trains fold 0 of each dataset for a few epochs at one thread (as a joblib job of the grid runs)
and reads the epoch times from epochs.csv. The estimate multiplies them out over the grid:

    .venv/bin/python scripts/plan_compute.py --size 48 --epochs 3 [--expected-epochs 25]

The clean-protocol grid (results/PLAN.md, issue 34: `eval.protocol=holdout`, a fixed epoch
budget per dataset and pair, no early stopping) has its own mode: the budgets from the committed
paper-protocol runs, seconds per epoch measured under the holdout protocol at each dataset's
size, and the cost of the 60 runs:

    .venv/bin/python scripts/plan_compute.py --clean-protocol --epochs 3
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir

from segact.config import config_dir
from segact.runs.folder import RunFolder
from segact.runs.registration import register
from segact.runs.runner import train

DATASETS = ("synthetic", "kvasir_seg", "cvc_clinicdb", "isbi2012", "ph2", "drive_vessels")
GRIDS: dict[str, tuple[tuple[str, ...], int]] = {
    # name: (datasets, runs per dataset and seed)
    "sigmoid_vs_arctan": (DATASETS, 4),
    "paper_grid": (("isbi2012", "synthetic"), 21),
    "head_comparison": (("ph2", "isbi2012"), 4),
    "binarize_gradients": (("ph2",), 6),
}
SEEDS = {"binarize_gradients": 1}
DEFAULT_SEEDS = 3
FOLDS = 5

# The clean-protocol grid: the five real datasets at the plan's sizes, the paper's two claims
CLEAN_SIZES = {"ph2": 48, "cvc_clinicdb": 48, "kvasir_seg": 48, "isbi2012": 96, "drive_vessels": 96}
CLAIM_PAIRS = {"dice": ("sigmoid", "arctan"), "bce": ("sigmoid", "normal_cdf")}
PAPER_PROTOCOL_RUNS = Path("results/runs/sigmoid_vs_arctan")


def seconds_per_epoch(
    dataset: str, size: int, epochs: int, model: str, extra: tuple[str, ...] = ()
) -> float:
    """Median epoch time (after the first) of fold 0 at one torch thread."""
    overrides = [
        *extra,
        f"dataset={dataset}",
        f"dataset.image_size={size}",
        f"model={model}",
        "trainer=paper",
        f"trainer.max_epochs={epochs}",
        "trainer.fold=0",
        "trainer.threads=1",
        "runtime.progress=false",
        "runtime.checkpoint_every_s=1e9",
    ]
    register()  # segact's schemas and resolvers, as the entry points do
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with tempfile.TemporaryDirectory() as folder:
        train(cfg, Path(folder))
        times = pd.read_csv(RunFolder(folder).epochs_csv)["epoch_seconds"]
    return float(times.iloc[1:].median() if len(times) > 1 else times.iloc[0])


def estimate(per_epoch: dict[str, float], expected_epochs: float) -> pd.DataFrame:
    rows = []
    for grid, (datasets, runs) in GRIDS.items():
        seeds = SEEDS.get(grid, DEFAULT_SEEDS)
        for dataset in datasets:
            cpu_s = per_epoch[dataset] * expected_epochs * FOLDS * runs * seeds
            rows.append(
                {"grid": grid, "dataset": dataset, "runs": runs * seeds, "cpu_h": cpu_s / 3600}
            )
    return pd.DataFrame(rows)


def epoch_budgets(runs: Path = PAPER_PROTOCOL_RUNS) -> pd.DataFrame:
    """Per dataset and claim, the larger of the pair's median ``epochs_run`` (rounded up) in the
    committed paper-protocol runs at the clean grid's input size: both activations of a pair get
    the same budget, so neither trains longer because of its activation."""
    frames = [pd.read_csv(path) for path in sorted(runs.rglob("folds.csv"))]
    folds = pd.concat(frames, ignore_index=True)
    size = folds["run_dir"].str.extract(r"image_size=(\d+)")[0].astype(int)
    folds = folds[folds["dataset"].map(CLEAN_SIZES) == size]
    rows = []
    for dataset in CLEAN_SIZES:
        for loss, pair in CLAIM_PAIRS.items():
            cell = folds[(folds["dataset"] == dataset) & (folds["loss"] == loss)]
            medians = cell.groupby("activation")["epochs_run"].median()[list(pair)]
            rows.append(
                {
                    "dataset": dataset,
                    "size": CLEAN_SIZES[dataset],
                    "loss": loss,
                    "pair": " vs ".join(pair),
                    "median epochs_run": " / ".join(f"{medians[a]:g}" for a in pair),
                    "budget": math.ceil(medians.max()),
                }
            )
    return pd.DataFrame(rows)


def clean_protocol_plan(epochs: int, model: str) -> pd.DataFrame:
    """The budgets, seconds per epoch under the holdout protocol, and CPU-hours per cell."""
    budgets = epoch_budgets()
    per_epoch = {
        dataset: seconds_per_epoch(dataset, size, epochs, model, ("eval.protocol=holdout",))
        for dataset, size in CLEAN_SIZES.items()
    }
    runs = 2 * DEFAULT_SEEDS  # the two activations of a pair, every seed
    budgets["s / epoch"] = budgets["dataset"].map(per_epoch)
    budgets["runs"] = runs
    budgets["cpu_h"] = budgets["s / epoch"] * budgets["budget"] * FOLDS * runs / 3600
    return budgets


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=3, help="epochs measured per dataset")
    parser.add_argument(
        "--expected-epochs", type=float, default=25.0, help="per fold, trainer=paper"
    )
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--clean-protocol", action="store_true", help="the issue-34 grid")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, torch {torch.__version__}, 1 thread per job")
    if args.clean_protocol:
        table = clean_protocol_plan(args.epochs, args.model)
        print(table.to_markdown(index=False, floatfmt=".2f"))
        print(f"\ntotal: {table['cpu_h'].sum():.1f} CPU-hours, {table['runs'].sum()} runs")
        return
    per_epoch = {d: seconds_per_epoch(d, args.size, args.epochs, args.model) for d in DATASETS}
    print(f"scale: {args.size} px, model={args.model}, trainer=paper, fold 0\n")
    print(pd.Series(per_epoch, name="s / epoch").to_frame().to_markdown(floatfmt=".2f"))
    table = estimate(per_epoch, args.expected_epochs)
    print(f"\nestimate at {args.expected_epochs:g} epochs per fold, {FOLDS} folds:\n")
    print(table.to_markdown(index=False, floatfmt=".2f"))
    print(f"\ntotal: {table['cpu_h'].sum():.1f} CPU-hours")


if __name__ == "__main__":
    main()
