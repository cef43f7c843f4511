"""Benchmark: segact's threshold sweep against the paper-style per-threshold NumPy evaluation.

One validation fold of 100 images of 256x256 (probabilities in float32 as the runner produces
them; the reference works on float64 arrays like the paper's code). Prints the times side by side,
the ratios, and the peak extra memory of each method (measured in a fresh subprocess each).

    .venv/bin/python scripts/bench_metrics.py [--images 100] [--size 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from segact.evaluation.sweep import EPS, ThresholdSweep

COLUMNS = ("tp", "fp", "fn", "tn", "dice", *(f"mean_nll_{c}" for c in ("tp", "fp", "tn", "fn")))
"""The per-threshold columns both evaluations give."""


def make_fold(n_images: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a plausible model: blobs of truth, logits that mostly agree with it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    truth = np.zeros((n_images, 1, size, size), dtype=bool)
    for i in range(n_images):
        for _ in range(rng.integers(0, 4)):
            cy, cx = rng.uniform(0, size, 2)
            radius = rng.uniform(0.05, 0.2) * size
            truth[i, 0] |= (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    target = truth.astype(np.float32)
    logits = (target * 2 - 1) * rng.gamma(2.0, 1.5, target.shape) + rng.normal(0, 1.5, target.shape)
    prob = (1 / (1 + np.exp(-logits))).astype(np.float32)
    # Saturated pixels round to exactly 0 or 1 like a real sigmoid output in float32.
    return prob, target


def reference_evaluation(prob: np.ndarray, target: np.ndarray, thresholds: np.ndarray) -> dict:
    """The paper's style: float64 arrays and six boolean masks per threshold."""
    p = prob.astype(np.float64)
    y = target.astype(np.float64) > 0.5
    clipped = np.clip(p, EPS, 1 - EPS)
    nll = -(y * np.log(clipped) + (~y) * np.log(1 - clipped))
    out = {k: [] for k in COLUMNS}
    for t in thresholds:
        positive = prob >= t  # in prob's own dtype, as torch/NumPy compare (NEP 50)
        negative = ~positive
        tp, fp = positive & y, positive & ~y
        fn, tn = negative & y, negative & ~y
        counts = {
            name: int(mask.sum()) for name, mask in (("tp", tp), ("fp", fp), ("fn", fn), ("tn", tn))
        }
        for name, mask in (("tp", tp), ("fp", fp), ("fn", fn), ("tn", tn)):
            out[name].append(counts[name])
            out[f"mean_nll_{name}"].append(
                float(nll[mask].mean()) if counts[name] else float("nan")
            )
        denominator = 2 * counts["tp"] + counts["fp"] + counts["fn"]
        out["dice"].append(2 * counts["tp"] / denominator if denominator else 1.0)
    out["nll"] = float(nll.mean())
    return out


def segact_evaluation(prob: np.ndarray, target: np.ndarray, thresholds: np.ndarray) -> dict:
    sweep = ThresholdSweep(thresholds)
    sweep.update(torch.from_numpy(prob), torch.from_numpy(target))
    result = sweep.result()
    out = {k: result.table[k].tolist() for k in COLUMNS}
    out["nll"] = result.metrics["nll"]
    return out


METHODS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], dict]] = {
    "reference": reference_evaluation,
    "segact": segact_evaluation,
}


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` timed calls after one warm-up call (repeats=0: the single call)."""
    start = time.perf_counter()
    fn()
    times = [time.perf_counter() - start] if repeats == 0 else []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_child(method: str, data_file: str, n_thresholds: int, queue: mp.Queue) -> None:
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    prob, target = np.load(f"{data_file}.prob.npy"), np.load(f"{data_file}.target.npy")
    thresholds = np.linspace(0, 1, n_thresholds)
    METHODS[method](prob[:1], target[:1], thresholds)  # load kernels before the baseline
    # A sampling thread reads the resident set while the method runs (torch and NumPy release
    # the GIL in their kernels); ru_maxrss cannot be reset, so it would hide later peaks.
    baseline, peak, running = _resident_bytes(), [0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _resident_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    METHODS[method](prob, target, thresholds)
    running[0] = False
    sampler.join()
    queue.put(max(0, peak[0] - baseline))


def peak_extra_memory(method: str, data_file: str, n_thresholds: int) -> int:
    """Peak resident memory above the state with the fold loaded, in a fresh process."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_peak_child, args=(method, data_file, n_thresholds, queue))
    child.start()
    value = queue.get()
    child.join()
    return value


def peak_memories(prob: np.ndarray, target: np.ndarray) -> dict[str, int]:
    """Each method's peak extra memory at 21 thresholds, in a fresh process reading the fold."""
    with tempfile.TemporaryDirectory() as folder:
        data_file = os.path.join(folder, "fold")
        np.save(f"{data_file}.prob.npy", prob)
        np.save(f"{data_file}.target.npy", target)
        return {method: peak_extra_memory(method, data_file, 21) for method in METHODS}


def check_agreement(prob: np.ndarray, target: np.ndarray, grid: np.ndarray) -> None:
    """segact's sweep gives the reference's counts exactly, its NLLs to rounding."""
    expected = reference_evaluation(prob, target, grid)
    got = segact_evaluation(prob, target, grid)
    for key in ("tp", "fp", "fn", "tn"):
        assert expected[key] == got[key], f"{key} counts differ"
    np.testing.assert_allclose(got["dice"], expected["dice"], rtol=1e-12)
    np.testing.assert_allclose(got["nll"], expected["nll"], rtol=1e-6)
    for key in ("mean_nll_tp", "mean_nll_fp", "mean_nll_tn", "mean_nll_fn"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="also time the reference at 1001")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))

    prob, target = make_fold(args.images, args.size)
    grids = {21: np.round(np.linspace(0, 1, 21), 10), 1001: np.round(np.linspace(0, 1, 1001), 10)}

    check_agreement(prob, target, grids[21])
    times = {
        (method, 21): best_time(lambda m=method: METHODS[m](prob, target, grids[21]), args.repeats)
        for method in METHODS
    }
    # The reference at 1001 thresholds takes minutes (48x its 21-threshold time): timed once.
    times[("segact", 1001)] = best_time(
        lambda: segact_evaluation(prob, target, grids[1001]), args.repeats
    )
    times[("reference", 1001)] = (
        best_time(lambda: reference_evaluation(prob, target, grids[1001]), 0)
        if args.full
        else float("nan")
    )
    array_bytes = prob.nbytes
    memory = peak_memories(prob, target)

    print("# Threshold sweep benchmark\n")
    print(
        f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}"
    )
    print(
        f"fold: {args.images} images of {args.size}x{args.size} = {prob.size:,} pixels; "
        f"probability array {array_bytes / 2**20:.1f} MiB (float32)\n"
    )
    print("| method | 21 thresholds (s) | 1001 thresholds (s) | peak extra memory (MiB, 21 thr.) |")
    print("|---|---|---|---|")
    for method in METHODS:
        print(
            f"| {method} | {times[(method, 21)]:.4f} | {times[(method, 1001)]:.4f} "
            f"| {memory[method] / 2**20:.1f} |"
        )
    print()
    speedup = times[("reference", 21)] / times[("segact", 21)]
    growth = times[("segact", 1001)] / times[("segact", 21)]
    memory_ratio = memory["segact"] / array_bytes
    print(
        "counts identical to the reference at 21 thresholds: yes "
        "(TP/FP/FN/TN and Dice exactly; NLL and its TP/FP/TN/FN split to rtol 1e-5)"
    )
    print(f"speed-up over the reference, 21 thresholds: {speedup:.1f}x (target >= 30x)")
    print(f"segact 1001 / 21 thresholds: {growth:.2f}x (target <= 1.2x)")
    print(f"segact peak extra memory / probability array: {memory_ratio:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
