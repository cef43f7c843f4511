"""Peak resident memory of loading a dataset and reading every batch once, before and after.

    python scripts/bench_memory.py datasets [--sizes 64 128 256] [--which before after]
    python scripts/bench_memory.py generate /tmp/segact_bench10k [--n 10000] [--size 256]
    python scripts/bench_memory.py imports

``datasets``: for Kvasir-SEG at each size and a 24-image synthetic set (and ``--extra`` folder
datasets), a fresh process loads the data into a fresh cache (first load), a second one loads it
from that cache; each then reads every batch of 16 once, in a shuffled order, as float32 on the
CPU. Peak RSS comes from ``/usr/bin/time -v``. ``--baseline-src`` runs the same with an older
tree on PYTHONPATH (its datasets are float tensors: ``data.images[idx]``). Prints Markdown.

``imports``: the resident memory after importing each module a tiny run imports, in order.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
BATCH = 16
IMPORTS = (
    "numpy",
    "PIL.Image",
    "scipy.ndimage",
    "torch",
    "omegaconf",
    "hydra",
    "pandas",
    "albumentations",
    "segmentation_models_pytorch",
    "matplotlib.pyplot",
    "segact.data.folder",
    "segact.config",
    "segact.training.engine",
    "segact.report.build",
    "segact.train",
)


def loader(kind: str, size: int, root: str, cache_dir: str) -> Callable[[], object]:
    """A dataset through whichever segact is on the path (old: float tensors, new: lazy); the
    modules are imported here, so that timing the call times the loading alone."""
    if kind == "synthetic":
        from segact.data.synthetic import make_synthetic

        return lambda: make_synthetic(n_images=24, image_size=size)
    from segact.data.folder import load_folder

    return lambda: load_folder(root, image_size=size, cache_dir=cache_dir)


def read_all(data: object) -> None:
    """Every batch once, shuffled, as float32 on the CPU."""
    import torch

    order = np.random.default_rng(0).permutation(len(data))  # type: ignore[arg-type]
    cpu = torch.device("cpu")
    for start in range(0, len(order), BATCH):
        index = order[start : start + BATCH]
        if hasattr(data, "batch"):
            images, masks = data.batch(index, cpu)
        else:  # the old in-memory tensors
            images, masks = data.images[index], data.masks[index]  # type: ignore[attr-defined]
        assert images.dtype == masks.dtype == torch.float32


def worker(kind: str, size: int, root: str, cache_dir: str) -> None:
    load = loader(kind, size, root, cache_dir)
    started = time.perf_counter()
    data = load()
    loaded = time.perf_counter()
    read_all(data)
    print(
        json.dumps(
            {"n": len(data), "load_s": loaded - started, "read_s": time.perf_counter() - loaded}
        )
    )  # type: ignore[arg-type]


def measured(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``command`` under /usr/bin/time -v; its JSON line plus peak RSS in MB."""
    result = subprocess.run(
        ["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    assert peak is not None
    numbers = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
    return {**numbers, "peak_mb": int(peak.group(1)) / 1024}


def environment(src: Path | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(src or REPOSITORY / "src")}
    env.pop("SEGACT_CACHE", None)
    return env


def bench_datasets(args: argparse.Namespace) -> None:
    cases = [("synthetic", size, "") for size in args.sizes]
    cases += [("folder", size, str(args.kvasir)) for size in args.sizes]
    cases += [("folder", size, str(root)) for root in args.extra for size in (256,)]
    trees = {"before": args.baseline_src, "after": None}
    trees = {label: src for label, src in trees.items() if label in args.which}
    print("| code | dataset | px | images | first: peak MB | cached: peak MB | cached load s |")
    print("|---|---|---|---|---|---|---|")
    for kind, size, root in cases:
        for label, src in trees.items():
            with tempfile.TemporaryDirectory(prefix="segact-bench-") as cache:
                command = [sys.executable, __file__, "worker", kind, str(size), root, cache]
                first = measured(command, environment(src))
                again = measured(command, environment(src))
            name = Path(root).name if root else "synthetic"
            print(
                f"| {label} | {name} | {size} | {again['n']} | {first['peak_mb']:.0f} | "
                f"{again['peak_mb']:.0f} | {again['load_s']:.3f} |",
                flush=True,
            )


def bench_imports() -> None:
    """RSS after each import, in one process, in the order a tiny run meets them."""
    code = (
        "import importlib, sys\n"
        "def rss(): return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])\n"
        "before = rss(); print(f'| (python) | {before / 1024:.0f} | |')\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name); now = rss()\n"
        "    print(f'| {name} | {now / 1024:.0f} | +{(now - before) / 1024:.0f} |'); before = now\n"
    )
    print("| import (cumulative, in this order) | RSS MB | added MB |\n|---|---|---|", flush=True)
    subprocess.run([sys.executable, "-c", code, *IMPORTS], env=environment(None), check=True)


def generate(folder: Path, n: int, size: int) -> None:
    """``n`` JPEG images with PNG masks (a bright disc) of ``size`` px, for the scale test."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        (cy, cx), r = rng.uniform(0.2, 0.8, 2) * size, rng.uniform(0.05, 0.2) * size
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        image = rng.integers(0, 120, (size, size, 3), dtype=np.uint8) + 100 * mask[..., None]
        Image.fromarray(image.astype(np.uint8)).save(folder / "images" / f"{i:05d}.jpg")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{i:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    datasets = commands.add_parser("datasets")
    datasets.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    datasets.add_argument("--kvasir", type=Path, default=Path("/work/shared/datasets/kvasir_seg"))
    datasets.add_argument("--extra", type=Path, nargs="*", default=[], help="folders at 256 px")
    datasets.add_argument("--baseline-src", type=Path, default=Path("/tmp/base/src"))
    datasets.add_argument("--which", nargs="+", default=["before", "after"])
    make = commands.add_parser("generate")
    make.add_argument("folder", type=Path)
    make.add_argument("--n", type=int, default=10_000)
    make.add_argument("--size", type=int, default=256)
    commands.add_parser("imports")
    work = commands.add_parser("worker")
    for name in ("kind", "size", "root", "cache"):
        work.add_argument(name)
    args = parser.parse_args()
    if args.command == "worker":
        worker(args.kind, int(args.size), args.root, args.cache)
    elif args.command == "generate":
        generate(args.folder, args.n, args.size)
    elif args.command == "imports":
        bench_imports()
    else:
        bench_datasets(args)


if __name__ == "__main__":
    main()
