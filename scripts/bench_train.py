"""Benchmark: segact's training epoch against the model's own cost and a reference-style loop.

Three loops train the same model (same config, same seed) on the same synthetic images:

- bare: forward + loss + backward + optimizer step over tensors already in memory, then a
  forward pass over the validation images (the least any train-and-validate epoch costs);
- segact: one epoch of ``segact.engine.fit_fold`` (batching, threshold sweep of the validation
  fold, early-stopping state, logging), read from its epochs.csv timings;
- reference: the paper's code style: a Dataset reading one .npy file per item through a
  DataLoader with num_workers=1, ``loss.item()`` every step, and a float64 NumPy evaluation of
  every threshold with six boolean masks after each epoch.

Then the speed options (channels_last, bf16 autocast, torch.compile, thread count) on the bare loop.

    .venv/bin/python scripts/bench_train.py [--epochs 3] [--images 200] [--size 64]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from segact.config import instantiate_named
from segact.data.splits import case_folds
from segact.engine import build_model, fit_fold
from segact.heads import build_head
from segact.train import config_dir, load_dataset

THRESHOLDS = np.round(np.linspace(0, 1, 21), 10)


def compose_config(args: argparse.Namespace) -> DictConfig:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"model={args.model}",
                f"dataset.n_images={args.images}",
                f"dataset.image_size={args.size}",
                f"trainer.max_epochs={args.epochs}",
                f"trainer.patience={args.epochs}",
                f"trainer.batch_size={args.batch_size}",
                "trainer.progress=false",
                "trainer.folds=5",
            ],
        )


class Setup:
    """Everything the three loops share: data, fold, head, loss, and a model factory."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.data = load_dataset(cfg)
        self.fold = case_folds(self.data.cases, cfg.trainer.folds, cfg.trainer.seed)[0]
        self.head = build_head(cfg.head, cfg.activation)
        self.loss_fn = instantiate_named(cfg.loss)
        self.batch_size = int(cfg.trainer.batch_size)

    def model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(self.cfg.model, self.data.in_channels, self.head.out_channels)

    def batches(self, generator: torch.Generator) -> Iterator[np.ndarray]:
        order = self.fold.train[torch.randperm(len(self.fold.train), generator=generator).numpy()]
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]


def bare_epochs(
    setup: Setup,
    epochs: int,
    channels_last: bool = False,
    bf16: bool = False,
    compile_model: bool = False,
    validate: bool = True,
) -> list[float]:
    """Seconds per epoch of the model's own work only."""
    model = setup.model()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = setup.data.images.contiguous(memory_format=memory_format)
    masks = setup.data.masks
    val_images = images[setup.fold.val]
    generator = torch.Generator().manual_seed(0)
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    )
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for batch in setup.batches(generator):
            with autocast():
                logits = step_model(images[batch])
            loss = setup.loss_fn(setup.head, logits.float(), masks[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if validate:
            model.eval()
            with torch.no_grad(), autocast():
                for begin in range(0, len(val_images), 64):
                    step_model(val_images[begin : begin + 64])
        times.append(time.perf_counter() - start)
    return times


def segact_epochs(setup: Setup) -> list[float]:
    """Epoch times of the runner, checkpointing as ``segact.train`` does."""
    with tempfile.TemporaryDirectory() as folder:
        result = fit_fold(
            setup.cfg,
            setup.data,
            setup.fold,
            setup.head,
            setup.loss_fn,
            torch.device("cpu"),
            checkpoint_path=Path(folder) / "fold0.pt",
        )
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


def reference_epochs(setup: Setup, epochs: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(len(setup.data)):
            np.save(folder / f"image_{i}.npy", setup.data.images[i].numpy())
            np.save(folder / f"mask_{i}.npy", setup.data.masks[i].numpy())
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)

    setup = Setup(compose_config(args))
    n_train, n_val = len(setup.fold.train), len(setup.fold.val)
    default = {"channels_last": bool(setup.cfg.trainer.channels_last)}
    bare = steady(bare_epochs(setup, args.epochs, **default))
    bare_train_only = steady(bare_epochs(setup, args.epochs, validate=False, **default))
    runner = steady(segact_epochs(setup))
    reference = steady(reference_epochs(setup, args.epochs))

    print("# Training loop benchmark\n")
    print(
        f"machine: {platform.machine()}, {cores} cores, torch {torch.__version__} ({cores} threads)"
    )
    print(
        f"model={args.model} ({setup.cfg.model.arch}/{setup.cfg.model.encoder}), "
        f"{n_train} training + "
        f"{n_val} validation images of {args.size}x{args.size}, batch {args.batch_size}, "
        f"median of epochs 2..{args.epochs}\n"
    )
    print("| loop | s / epoch | training images / s | vs bare |")
    print("|---|---|---|---|")
    for name, seconds in (
        ("bare: steps only", bare_train_only),
        ("bare: steps + validation forward", bare),
        ("segact runner (with threshold sweep)", runner),
        ("reference style (npy Dataset, .item(), float64 eval)", reference),
    ):
        print(f"| {name} | {seconds:.3f} | {n_train / seconds:.1f} | {seconds / bare:.2f}x |")
    print()
    print(f"runner / bare (target <= 1.10x): {runner / bare:.3f}x")
    print(f"runner speed-up over the reference style (target >= 1.5x): {reference / runner:.2f}x\n")

    options: list[tuple[str, Callable[[], list[float]]]] = [
        ("fp32, contiguous", lambda: bare_epochs(setup, args.epochs)),
        (
            "channels_last (the default)",
            lambda: bare_epochs(setup, args.epochs, channels_last=True),
        ),
        ("bf16 autocast", lambda: bare_epochs(setup, args.epochs, bf16=True)),
        (
            "channels_last + bf16",
            lambda: bare_epochs(setup, args.epochs, channels_last=True, bf16=True),
        ),
        (
            "channels_last, 1 thread",
            lambda: with_threads(1, lambda: bare_epochs(setup, args.epochs, channels_last=True)),
        ),
    ]
    if not args.skip_compile:
        options.append(
            ("torch.compile", lambda: bare_epochs(setup, args.epochs, compile_model=True))
        )
    print("| speed option (bare loop incl. validation forward) | s / epoch | vs default |")
    print("|---|---|---|")
    baseline = None
    for name, run in options:
        seconds = steady(run())
        baseline = baseline or seconds
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.2f}x |")


if __name__ == "__main__":
    main()
