"""Benchmark: segact's training epoch against the model's own cost and a reference-style loop.

Three loops train the same model (same config, same seed) on the same synthetic images:

- bare: forward + loss + backward + optimizer step, reading each batch with ``data.batch`` as
  the runner does, then a forward pass over the validation images (the least any
  train-and-validate epoch costs);
- segact: one epoch of ``segact.training.group.fit_fold`` (batching, threshold sweep of the
  validation fold, early-stopping state, checkpoints, logging), read from its epochs.csv timings;
- reference: the paper's code style: a Dataset reading one .npy file per item through a
  DataLoader with num_workers=1, ``loss.item()`` every step, and a float64 NumPy evaluation of
  every threshold with six boolean masks after each epoch.

Then the speed options (channels_last, bf16 autocast, torch.compile, thread count) on the bare
loop; the two memory formats of ``trainer.channels_last`` on the same batches, step by step in
turn (a shared machine's load falls on both alike; ``--memory-format-only`` runs just this);
and, on a CUDA GPU, bare loop against runner on the runner's GPU path (device cuda, the raw
arrays on the GPU through ``data.on_device``, ``trainer.precision=auto``: bf16 autocast,
deterministic algorithms as ``segact-train`` sets them), by default at the paper's size
(resnet34 Unet, 256 px, batch 8), then the two memory formats there.

    .venv/bin/python scripts/bench_train.py [--epochs 4] [--images 200] [--size 64]
    .venv/bin/python scripts/bench_train.py --memory-format-only [--model unet --batch-size 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from segact.config import config_dir, instantiate_named, plain, run_settings
from segact.data.splits import case_folds
from segact.nn.heads import build_head
from segact.runs.registration import register
from segact.runs.runner import configure_torch, load_dataset
from segact.training.engine import FoldSetup
from segact.training.fitting import build_model
from segact.training.forward import uses_bf16
from segact.training.group import fit_fold
from segact.training.memory_format import uses_channels_last

THRESHOLDS = np.round(np.linspace(0, 1, 21), 10)
VAL_BATCH = 64


@dataclass(frozen=True)
class Scale:
    """What one section trains: model config name, image size, batch size, device."""

    model: str
    size: int
    batch_size: int
    device: str = "cpu"


def compose_config(args: argparse.Namespace, scale: Scale) -> DictConfig:
    register()  # segact's schemas and resolvers, as the entry points do
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"model={scale.model}",
                f"dataset.n_images={args.images}",
                f"dataset.image_size={scale.size}",
                f"trainer.max_epochs={args.epochs}",
                f"trainer.patience={args.epochs}",
                f"trainer.batch_size={scale.batch_size}",
                f"trainer.device={scale.device}",
                "trainer.folds=5",
                "runtime.progress=false",
            ],
        )


@dataclass(frozen=True)
class Options:
    """Speed options of the bare loop."""

    channels_last: bool = False
    bf16: bool = False
    compile_model: bool = False
    validate: bool = True


class Setup:
    """Everything the loops share: data (on the device as the runner has it), fold, head, loss,
    and a model factory."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.trainer.device)
        self.data = load_dataset(cfg).on_device(self.device)
        trainer = cfg.trainer
        folds = case_folds(self.data.cases, trainer.folds, trainer.seed, trainer.shuffle_folds)
        self.fold = folds[0]
        self.head = build_head(cfg.head, cfg.activation)
        self.loss_fn = instantiate_named(cfg.loss)
        self.batch_size = int(trainer.batch_size)

    def model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        model_cfg = run_settings(self.cfg).model
        model = build_model(model_cfg, self.data.in_channels, self.head.out_channels)
        return model.to(self.device)

    def batches(self, generator: torch.Generator) -> Iterator[np.ndarray]:
        order = self.fold.train[torch.randperm(len(self.fold.train), generator=generator).numpy()]
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def synchronize(self) -> None:
        """Wait for the device's queued work, so that a clock read counts it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class Bare:
    """The bare loop's model, optimizer and forward pass under ``options``."""

    def __init__(self, setup: Setup, options: Options) -> None:
        self.setup, self.options = setup, options
        self.memory_format = (
            torch.channels_last if options.channels_last else torch.contiguous_format
        )
        self.model = setup.model().to(memory_format=self.memory_format)
        self.step_model = torch.compile(self.model) if options.compile_model else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        autocast = (
            torch.autocast(self.setup.device.type, dtype=torch.bfloat16)
            if self.options.bf16
            else contextlib.nullcontext()
        )
        with autocast:
            return self.step_model(images.contiguous(memory_format=self.memory_format))

    def train_step(self, batch: np.ndarray) -> None:
        setup = self.setup
        self.model.train()
        images, masks = setup.data.batch(batch, setup.device)
        loss = setup.loss_fn(setup.head, self.forward(images).float(), masks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def validate(self) -> None:
        self.model.eval()
        val = self.setup.fold.val
        with torch.no_grad():
            for begin in range(0, len(val), VAL_BATCH):
                self.forward(
                    self.setup.data.batch(val[begin : begin + VAL_BATCH], self.setup.device)[0]
                )


def bare_epochs(setup: Setup, epochs: int, options: Options = Options()) -> list[float]:
    """Seconds per epoch of the model's own work and the batch reads only."""
    loop = Bare(setup, options)
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs):
        setup.synchronize()
        start = time.perf_counter()
        for batch in setup.batches(generator):
            loop.train_step(batch)
        if options.validate:
            loop.validate()
        setup.synchronize()
        times.append(time.perf_counter() - start)
    return times


def segact_epochs(setup: Setup) -> list[float]:
    """Epoch times of the runner, checkpointing as ``segact.train`` does."""
    settings = run_settings(setup.cfg)
    fold_setup = FoldSetup(settings, setup.data, setup.head, setup.loss_fn, setup.device)
    with tempfile.TemporaryDirectory() as folder:
        result = fit_fold(fold_setup, setup.fold, checkpoint_path=Path(folder) / "fold0.pt")
    return result.epochs["epoch_seconds"].tolist()


class NpyDataset(torch.utils.data.Dataset):
    """The reference style: one .npy file per image and per mask, read on every access."""

    def __init__(self, folder: Path, indices: np.ndarray) -> None:
        self.folder, self.indices = folder, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.indices[item]
        image = np.load(self.folder / f"image_{index}.npy")
        mask = np.load(self.folder / f"mask_{index}.npy")
        return torch.from_numpy(image), torch.from_numpy(mask)


def reference_evaluation(prob: np.ndarray, target: np.ndarray) -> list[float]:
    p, y = prob.astype(np.float64), target.astype(np.float64) > 0.5
    nll = -(y * np.log(np.clip(p, 1e-7, 1 - 1e-7)) + (~y) * np.log(np.clip(1 - p, 1e-7, 1)))
    dice = []
    for t in THRESHOLDS:
        positive = p >= t
        negative = ~positive
        tp, fp, fn, tn = positive & y, positive & ~y, negative & y, negative & ~y
        for mask in (tp, fp, fn, tn):
            nll[mask].mean() if mask.any() else 0.0
        denominator = 2 * tp.sum() + fp.sum() + fn.sum()
        dice.append(2 * tp.sum() / denominator if denominator else 1.0)
    return dice


def write_npy_files(setup: Setup, folder: Path) -> None:
    """Every normalised image and mask as its own .npy file (the reference's input)."""
    images, masks = setup.data.tensors()
    for i in range(len(setup.data)):
        np.save(folder / f"image_{i}.npy", images[i].numpy())
        np.save(folder / f"mask_{i}.npy", masks[i].numpy())


def reference_epochs(setup: Setup, epochs: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_npy_files(setup, folder)
        loader = torch.utils.data.DataLoader(
            NpyDataset(folder, setup.fold.train),
            batch_size=setup.batch_size,
            shuffle=True,
            num_workers=1,
            generator=torch.Generator().manual_seed(0),
        )
        val_loader = torch.utils.data.DataLoader(
            NpyDataset(folder, setup.fold.val), batch_size=setup.batch_size, num_workers=1
        )
        model = setup.model()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            model.train()
            running = 0.0
            for x, y in loader:
                loss = setup.loss_fn(setup.head, model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                running += loss.item()
            model.eval()
            probs, targets = [], []
            with torch.no_grad():
                for x, y in val_loader:
                    probs.append(setup.head.probability(model(x)).numpy())
                    targets.append(y.numpy())
            reference_evaluation(np.concatenate(probs), np.concatenate(targets))
            times.append(time.perf_counter() - start)
        return times


def steady(times: list[float]) -> float:
    """Median of the epochs after the first (warm-up: allocator, kernels, compilation)."""
    return float(np.median(times[1:] if len(times) > 1 else times))


def with_threads(threads: int, fn: Callable[[], list[float]]) -> list[float]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(previous)


def describe(setup: Setup, args: argparse.Namespace) -> str:
    cfg, size = setup.cfg, setup.cfg.dataset.image_size
    return (
        f"model={cfg.model.arch}/{cfg.model.encoder} on {setup.device}, "
        f"{len(setup.fold.train)} training + {len(setup.fold.val)} validation images of "
        f"{size}x{size}, batch {setup.batch_size}, median of epochs 2..{args.epochs}"
    )


def print_loop_table(rows: list[tuple[str, float]], n_train: int, bare: float) -> None:
    print("| loop | s / epoch | training images / s | vs bare |")
    print("|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {n_train / seconds:.1f} | {seconds / bare:.2f}x |")
    print()


def cpu_loops(setup: Setup, args: argparse.Namespace) -> None:
    """The three loops on CPU, as a table, and the runner's ratios to the bare and reference."""
    default = Options(channels_last=resolved_channels_last(setup))
    bare = steady(bare_epochs(setup, args.epochs, default))
    bare_train_only = steady(bare_epochs(setup, args.epochs, replace(default, validate=False)))
    runner = steady(segact_epochs(setup))
    reference = steady(reference_epochs(setup, args.epochs))
    print(describe(setup, args) + "\n")
    rows = [
        ("bare: steps only", bare_train_only),
        ("bare: steps + validation forward", bare),
        ("segact runner (with threshold sweep)", runner),
        ("reference style (npy Dataset, .item(), float64 eval)", reference),
    ]
    print_loop_table(rows, len(setup.fold.train), bare)
    print(f"runner / bare (target <= 1.10x): {runner / bare:.3f}x")
    print(f"runner speed-up over the reference style (target >= 1.5x): {reference / runner:.2f}x\n")


def speed_options(setup: Setup, args: argparse.Namespace) -> None:
    """The bare loop (with validation forward) under each speed option."""
    options: list[tuple[str, Callable[[], list[float]]]] = [
        ("fp32, contiguous", lambda: bare_epochs(setup, args.epochs)),
        ("channels_last", lambda: bare_epochs(setup, args.epochs, Options(True))),
        ("bf16 autocast", lambda: bare_epochs(setup, args.epochs, Options(bf16=True))),
        ("channels_last + bf16", lambda: bare_epochs(setup, args.epochs, Options(True, True))),
        (
            "channels_last, 1 thread",
            lambda: with_threads(1, lambda: bare_epochs(setup, args.epochs, Options(True))),
        ),
    ]
    if not args.skip_compile:
        options.append(
            ("torch.compile", lambda: bare_epochs(setup, args.epochs, Options(compile_model=True)))
        )
    print("| speed option (bare loop incl. validation forward) | s / epoch | vs default |")
    print("|---|---|---|")
    baseline = None
    for name, run in options:
        seconds = steady(run())
        baseline = baseline or seconds
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.2f}x |")
    print()


def resolved_channels_last(setup: Setup) -> bool:
    """The format ``trainer.channels_last`` (``auto`` by default) gives on the setup's device."""
    return uses_channels_last(setup.cfg.trainer.channels_last, setup.device.type)


def timed(setup: Setup, work: Callable[[], None]) -> float:
    setup.synchronize()
    start = time.perf_counter()
    work()
    setup.synchronize()
    return time.perf_counter() - start


def in_turn(i: int) -> tuple[bool, bool]:
    """The formats (channels_last or not) in the order of the ``i``-th step: each first in
    turn."""
    return (False, True) if i % 2 == 0 else (True, False)


def interleaved_epochs(setup: Setup, epochs: int, bf16: bool = False) -> dict[bool, list[float]]:
    """Seconds per epoch of the bare loop (incl. validation forward) in each memory format
    (False: contiguous, True: channels_last): two models from one init, trained on the same
    batches step by step, the first format alternating, so that a shared machine's load
    falls on both alike."""
    loops = {f: Bare(setup, Options(channels_last=f, bf16=bf16)) for f in (False, True)}
    generator = torch.Generator().manual_seed(0)
    times: dict[bool, list[float]] = {False: [], True: []}
    for epoch in range(epochs):
        total = dict.fromkeys(loops, 0.0)
        for i, batch in enumerate(setup.batches(generator)):
            for f in in_turn(i):
                total[f] += timed(setup, lambda f=f, batch=batch: loops[f].train_step(batch))
        for f in in_turn(epoch):
            total[f] += timed(setup, loops[f].validate)
        for f, seconds in total.items():
            times[f].append(seconds)
    return times


def memory_formats(setup: Setup, args: argparse.Namespace, bf16: bool = False) -> None:
    """Contiguous against channels_last on the same batches (``interleaved_epochs``)."""
    times = interleaved_epochs(setup, args.epochs, bf16)
    n_train = len(setup.fold.train)
    print(f"memory format: {describe(setup, args)}, steps interleaved\n")
    print("| memory format | s / epoch | range (epochs 2..) | training images / s |")
    print("|---|---|---|---|")
    for channels_last, values in times.items():
        name = "channels_last" if channels_last else "contiguous"
        seconds = steady(values)
        print(f"| {name} | {seconds:.3f} | {min(values[1:] or values):.3f}-"
              f"{max(values[1:] or values):.3f} | {n_train / seconds:.1f} |")  # fmt: skip
    ratios = [b / a for a, b in zip(times[False], times[True], strict=True)][1:]
    listed = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"\nchannels_last / contiguous by epoch (2..): {listed}")
    chosen = "channels_last" if resolved_channels_last(setup) else "contiguous"
    print(f"trainer.channels_last={setup.cfg.trainer.channels_last} here: {chosen}\n")


def gpu_loops(args: argparse.Namespace, device: str = "cuda") -> None:
    """Bare loop against the runner on the runner's GPU path (``device`` is a parameter so the
    section can be tried on CPU)."""
    print("## GPU: bare loop vs runner\n")
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: GPU rows skipped")
        return
    cfg = compose_config(args, Scale(args.gpu_model, args.gpu_size, args.gpu_batch_size, device))
    configure_torch(run_settings(cfg).trainer)  # deterministic algorithms, as segact-train runs
    setup = Setup(cfg)
    bf16 = uses_bf16(str(plain(cfg.trainer.precision)), setup.device)
    name = torch.cuda.get_device_name(setup.device) if setup.device.type == "cuda" else device
    resident = isinstance(setup.data.images, torch.Tensor)
    print(f"device: {name}; bf16 autocast: {bf16}; data resident on the device: {resident}")
    print(describe(setup, args) + "\n")
    options = Options(channels_last=resolved_channels_last(setup), bf16=bf16)
    bare = steady(bare_epochs(setup, args.epochs, options))
    runner = steady(segact_epochs(setup))
    rows = [
        ("bare: steps + validation forward", bare),
        ("segact runner (with threshold sweep)", runner),
    ]
    print_loop_table(rows, len(setup.fold.train), bare)
    print(f"GPU runner / bare: {runner / bare:.3f}x\n")
    memory_formats(setup, args, bf16)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--memory-format-only", action="store_true")
    parser.add_argument("--gpu-model", default="unet", help="GPU section (default: resnet34)")
    parser.add_argument("--gpu-size", type=int, default=256)
    parser.add_argument("--gpu-batch-size", type=int, default=8)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    setup = Setup(compose_config(args, Scale(args.model, args.size, args.batch_size)))
    print("# Training loop benchmark\n")
    print(
        f"machine: {platform.machine()}, {cores} cores, torch {torch.__version__} ({cores} threads)"
    )
    if args.memory_format_only:
        memory_formats(setup, args)
        return
    cpu_loops(setup, args)
    speed_options(setup, args)
    memory_formats(setup, args)
    gpu_loops(args)


if __name__ == "__main__":
    main()
