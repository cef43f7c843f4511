"""Device check of trainer.cuda_graphs and trainer.fold_group (issue 26), at the paper's size
(Kvasir-SEG at 256 px, resnet34 Unet, batch 8, trainer=paper: bf16 autocast, channels_last):

- bare step: forward, loss, backward, Adam step on batches already on the GPU (the loop of
  scripts/bench_train.py, without validation): the least a step costs eagerly;
- the runner's training step, eager and graphed (``launch_train_epoch``), and whether both give
  the same weights after one epoch from the same start (they must: same kernels);
- one fold-epoch (training + selection sweep + the epoch's bookkeeping) of a fold alone, and per
  fold when ``--group`` folds run side by side (``segact.training.group``), graphs on and off.

Writes a Markdown table to OUT (section by section, so a timeout keeps what was measured) and
prints it. ``--quick``: a tiny model on CPU (graphs fall back to eager), the smoke test.

    .venv/bin/python scripts/bench_gpu.py OUT.md --dataset-root PATH [--group 10] [--epochs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import Options, Setup, bare_epochs, steady
from segact.config import config_dir, run_settings
from segact.data.splits import case_folds
from segact.runs.registration import register
from segact.runs.runner import configure_torch
from segact.training import group
from segact.training.engine import FoldRun, FoldSetup
from segact.training.fitting import launch_train_epoch
from segact.training.forward import uses_bf16
from segact.training.interrupt import StopRequest


def compose_config(args: argparse.Namespace, graphs: str = "auto") -> DictConfig:
    overrides = [
        "dataset=kvasir_seg",
        "model=unet",
        "trainer=paper",
        "dataset.image_size=256",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.patience={args.epochs}",
        f"trainer.cuda_graphs={graphs}",
        f"trainer.folds={max(5, args.group)}",  # folds enough for the group
        "runtime.progress=false",
    ]
    if args.dataset_root:
        overrides.append(f"dataset.root={args.dataset_root}")
    if args.quick:
        overrides += ["model=tiny", "dataset.image_size=32", "trainer.device=cpu"]
        overrides += ["trainer.threads=1", "trainer.batch_size=4", "eval.batch_size=4"]
    register()  # segact's schemas and resolvers, as the entry points do
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides)


class Report:
    """The Markdown file, rewritten after every row."""

    def __init__(self, path: Path, header: str) -> None:
        self.path, self.lines = path, [header, "", "| measure | value | note |", "|---|---|---|"]
        self.flush()

    def row(self, measure: str, value: str, note: str = "") -> None:
        self.lines.append(f"| {measure} | {value} | {note} |")
        print(self.lines[-1], flush=True)
        self.flush()

    def flush(self) -> None:
        self.path.write_text("\n".join(self.lines) + "\n")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def fold_setup(cfg: DictConfig, bench: Setup) -> FoldSetup:
    """The runner's objects for a run of ``cfg`` on the data already loaded (no augmentation,
    no checkpoints)."""
    return FoldSetup(run_settings(cfg), bench.data, bench.head, bench.loss_fn, bench.device)


def runner_steps(args: argparse.Namespace, bench: Setup, report: Report) -> None:
    """ms per step of the runner's training epoch, eager and graphed, and their agreement."""
    runs, times = {}, {}
    for graphs in ("off", "auto"):
        setup = fold_setup(compose_config(args, graphs), bench)
        run = FoldRun.start(setup, bench.fold)
        order = np.asarray(bench.fold.train)
        steps = len(order) // bench.batch_size

        def epoch(run: FoldRun = run, setup: FoldSetup = setup, order: np.ndarray = order) -> None:
            launch_train_epoch(
                run.trainable, setup.head, setup.loss_fn, setup.data, order, bench.batch_size
            ).result()

        seconds = [timed(setup.device, epoch) for _ in range(args.epochs)]
        runs[graphs], times[graphs] = run, 1000 * steady(seconds) / max(steps, 1)
        graph = run.trainable.train_graph
        captured = graph is not None and graph.replay is not None
        note = "captured" if captured else f"eager ({setup.graphs.reason if setup.graphs else ''})"
        report.row(f"runner step, cuda_graphs={graphs}", f"{times[graphs]:.2f} ms", note)
    eager, graphed = (runs[k].trainable.model.state_dict() for k in ("off", "auto"))
    diff = max(float((eager[k].float() - graphed[k].float()).abs().max()) for k in eager)
    report.row("graphed vs eager weights after the same epochs", f"max abs diff {diff:.3g}")
    report.row("graph speed-up of the step", f"{times['off'] / times['auto']:.2f}x")


def fold_epochs(args: argparse.Namespace, bench: Setup, report: Report, graphs: str) -> None:
    """s per fold-epoch of a fold alone and of ``--group`` folds side by side."""
    setup = fold_setup(compose_config(args, graphs), bench)
    trainer = setup.settings.trainer
    folds = case_folds(setup.data.cases, trainer.folds, trainer.seed, trainer.shuffle_folds)
    stop = StopRequest()
    single = [group.join(setup, folds[0], None, lambda: None, alone=True)]

    def alone_epoch() -> None:
        group.run_round(single, stop)

    alone = steady([timed(setup.device, alone_epoch) for _ in range(args.epochs)])
    report.row(f"fold-epoch, one fold alone, cuda_graphs={graphs}", f"{alone:.3f} s")
    members = [group.join(setup, fold, None, lambda: None) for fold in folds[: args.group]]
    n_rounds = args.epochs if graphs != "off" else 2  # eager rounds are long: 2 (1 measured)
    rounds = [timed(setup.device, lambda: group.run_round(members, stop)) for _ in range(n_rounds)]
    per_fold = steady(rounds) / len(members)
    report.row(
        f"fold-epoch, {len(members)} folds side by side, cuda_graphs={graphs}",
        f"{per_fold:.3f} s",
        f"a round: {steady(rounds):.2f} s; {alone / per_fold:.2f}x the speed of a fold alone",
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="the Markdown file to write")
    parser.add_argument("--dataset-root", default="", help="the Kvasir-SEG folder")
    parser.add_argument("--group", type=int, default=10, help="folds side by side")
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs (median of 2..)")
    parser.add_argument("--quick", action="store_true", help="tiny model on CPU (smoke test)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = compose_config(args)
    configure_torch(run_settings(cfg).trainer)
    bench = Setup(cfg)
    device = bench.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    size = cfg.dataset.image_size
    header = (
        f"# GPU check: CUDA graphs and fold groups\n\n{name}, torch {torch.__version__}; "
        f"{cfg.model.arch}/{cfg.model.encoder} at {size}x{size}, batch {bench.batch_size}, "
        f"{len(bench.fold.train)} training images a fold; median of epochs 2..{args.epochs}"
    )
    report = Report(args.out, header)
    bf16 = uses_bf16(str(cfg.trainer.precision), device)
    options = Options(channels_last=bool(cfg.trainer.channels_last), bf16=bf16, validate=False)
    steps = len(bench.fold.train) // bench.batch_size
    bare = steady(bare_epochs(bench, args.epochs, options))
    report.row("bare step (eager, no validation)", f"{1000 * bare / max(steps, 1):.2f} ms")
    runner_steps(args, bench, report)
    for graphs in ("auto", "off"):
        fold_epochs(args, bench, report, graphs)


if __name__ == "__main__":
    main()
