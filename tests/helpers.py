"""What the tests share: configs composed from the real config tree, shrunk to tiny sizes, and
one way to run ``segact-train`` as a subprocess (single run or multirun)."""

from __future__ import annotations

import copy
import functools
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig

from segact.config import config_dir
from segact.hydra_private import apply_overrides
from segact.runs.registration import register

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
    "runtime.save_models=false",  # 45 MB a fold; tests/test_predict.py turns it on
    "runtime.reuse=false",  # two sweeps of one test are compared: each trains (test_reuse.py)
)
TIMING = ["train_seconds", "epoch_seconds", "wall_seconds"]
"""Columns that measure time: they differ between identical runs."""

torch.set_num_threads(1)


_PARSER = OverridesParser.create()


def compose_config(*overrides: str, tiny: bool = True) -> DictConfig:
    """``compose("config", [*TINY, *overrides])``: a fresh copy each call, yours to change.

    A compose takes ~0.25 s and many tests differ only in values (``trainer.lr=0``), so the
    config groups are composed once per choice of groups (``composed``), and the value overrides
    are applied to a copy by the function Hydra's compose applies them with: after every group,
    in order, in struct mode, with the same errors (ConfigCompositionException)."""
    parsed = _PARSER.parse_overrides([*(TINY if tiny else ()), *overrides])
    groups = tuple(o.input_line for o in parsed if not _is_value_override(o))
    cfg = copy.deepcopy(composed(*groups))
    apply_overrides([o for o in parsed if _is_value_override(o)], cfg)
    return cfg


@functools.cache
def composed(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
    """Hydra's compose of the real config tree, cached: read it, never change it (the next
    caller gets the same object); ``compose_config`` gives copies. Hydra is initialized once
    per process (a quarter of a compose's time), again only if something cleared it."""
    register()  # as the entry points do
    if not GlobalHydra.instance().is_initialized():
        initialize_config_dir(config_dir=str(config_dir()), version_base="1.3")
    return compose("config", list(overrides), return_hydra_config=return_hydra_config)


def _is_value_override(override: Override) -> bool:
    """``a.b=v``, ``+a.b=v``, ``~a.b``: a key inside the config, never a group (groups are
    paths with ``/``), a sweep, a package or the hydra node; those go through compose."""
    return (
        "." in override.key_or_group
        and override.package is None
        and not override.is_sweep_override()
        and not override.is_hydra_override()
    )


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
