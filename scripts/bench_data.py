"""First-load vs cached-load time of the folder loader on every dataset in ../shared/datasets.

    python scripts/bench_data.py [--root ../shared/datasets] [--image-size 256]

Each dataset is decoded into a fresh temporary cache, then loaded again from it; prints a
Markdown table (seconds and the ratio first / cached).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from segact.data.folder import load_folder
from segact.train import config_dir


def timed(root: Path, image_size: int, cache_dir: str) -> tuple[float, int]:
    started = time.perf_counter()
    data = load_folder(str(root), image_size=image_size, cache_dir=cache_dir)
    return time.perf_counter() - started, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=config_dir().parent / "../shared/datasets")
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"image_size={args.image_size}, root={args.root.resolve()}\n")
    print("| dataset | images | first load (s) | cached load (s) | ratio |")
    print("|---|---|---|---|---|")
    for root in sorted(p for p in args.root.iterdir() if (p / "images").is_dir()):
        with tempfile.TemporaryDirectory() as cache_dir:
            first, n = timed(root, args.image_size, cache_dir)
            cached, _ = timed(root, args.image_size, cache_dir)
        print(f"| {root.name} | {n} | {first:.2f} | {cached:.3f} | {first / cached:.0f}x |")


if __name__ == "__main__":
    main()
