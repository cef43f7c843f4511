"""Compute plan of the replication: seconds per epoch of each dataset at a given scale, and the
CPU time the whole grid of results/PLAN.md would take.

Trains fold 0 of each dataset for a few epochs at one thread (as a joblib job of the grid runs)
and reads the epoch times from epochs.csv. The estimate multiplies them out over the grid:

    .venv/bin/python scripts/plan_compute.py --size 48 --epochs 3 [--expected-epochs 25]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir

from segact.config import config_dir
from segact.runs.folder import RunFolder
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


def seconds_per_epoch(dataset: str, size: int, epochs: int, model: str) -> float:
    """Median epoch time (after the first) of fold 0 at one torch thread."""
    overrides = [
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
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_epoch = {d: seconds_per_epoch(d, args.size, args.epochs, args.model) for d in DATASETS}
    print(f"machine: {platform.machine()}, torch {torch.__version__}, 1 thread per job")
    print(f"scale: {args.size} px, model={args.model}, trainer=paper, fold 0\n")
    print(pd.Series(per_epoch, name="s / epoch").to_frame().to_markdown(floatfmt=".2f"))
    table = estimate(per_epoch, args.expected_epochs)
    print(f"\nestimate at {args.expected_epochs:g} epochs per fold, {FOLDS} folds:\n")
    print(table.to_markdown(index=False, floatfmt=".2f"))
    print(f"\ntotal: {table['cpu_h'].sum():.1f} CPU-hours")


if __name__ == "__main__":
    main()
