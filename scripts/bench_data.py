"""First-load vs cached-load time of the folder loader on every dataset in ../shared/datasets.

    python scripts/bench_data.py [--root ../shared/datasets] [--image-size 256]

Each dataset is decoded into a fresh temporary cache, then loaded again from it, then read once
in shuffled batches of 16 (``data.batch``, float32 on the CPU: the reading a training epoch
does); prints a Markdown table (seconds and the ratio first / cached).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segact.data.base import SegmentationData
from segact.data.folder import load_folder

REPOSITORY = Path(__file__).resolve().parents[1]
BATCH = 16


def timed(root: Path, image_size: int, cache_dir: str) -> tuple[float, SegmentationData]:
    started = time.perf_counter()
    data = load_folder(str(root), image_size=image_size, cache_dir=cache_dir)
    return time.perf_counter() - started, data


def one_pass(data: SegmentationData) -> float:
    """Seconds to read every batch once, shuffled, as float32 on the CPU."""
    order = np.random.default_rng(0).permutation(len(data))
    started = time.perf_counter()
    for start in range(0, len(order), BATCH):
        data.batch(order[start : start + BATCH], torch.device("cpu"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("SEGACT_DATASETS") or REPOSITORY.parent / "shared" / "datasets"
    parser.add_argument("--root", type=Path, default=Path(default))
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"image_size={args.image_size}, root={args.root.resolve()}\n")
    columns = ["dataset", "images", "first load (s)", "cached load (s)", "ratio", "one pass (s)"]
    print("| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|")
    for root in sorted(p for p in args.root.iterdir() if (p / "images").is_dir()):
        with tempfile.TemporaryDirectory() as cache_dir:
            first, _ = timed(root, args.image_size, cache_dir)
            cached, data = timed(root, args.image_size, cache_dir)
            reading = one_pass(data)
        print(
            f"| {root.name} | {len(data)} | {first:.2f} | {cached:.3f} | {first / cached:.0f}x "
            f"| {reading:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
