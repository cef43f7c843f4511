"""What the tests share: configs composed from the real config tree, shrunk to tiny sizes, and
one way to run ``segact-train`` as a subprocess (single run or multirun)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from segact.config import config_dir

TINY = (
    "model=tiny",
    "dataset.n_images=12",
    "dataset.image_size=32",
    "trainer.folds=2",
    "trainer.max_epochs=2",
    "trainer.batch_size=4",
    "trainer.threads=1",
    "runtime.progress=false",
    "runtime.checkpoint_every_s=0",
)
TIMING = ["train_seconds", "epoch_seconds", "wall_seconds"]
"""Columns that measure time: they differ between identical runs."""

torch.set_num_threads(1)


def compose_config(*overrides: str, tiny: bool = True) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[*(TINY if tiny else ()), *overrides])


def segact_train(
    *overrides: str, multirun: bool = False, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``segact-train [-m] <TINY> <overrides>`` in a subprocess; asserts success if ``check``."""
    command = [sys.executable, "-m", "segact.train", *(["-m"] if multirun else []), *TINY]
    result = subprocess.run([*command, *overrides], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def numbers(path: Path) -> pd.DataFrame:
    """A result CSV without its timing columns: equal for runs with the same identity."""
    return pd.read_csv(path).drop(columns=TIMING, errors="ignore")
