"""Configs composed from the real config tree, shrunk to tiny sizes."""

from __future__ import annotations

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from segact.train import config_dir

TINY = (
    "model=tiny",
    "dataset.n_images=12",
    "dataset.image_size=32",
    "trainer.folds=2",
    "trainer.max_epochs=2",
    "trainer.batch_size=4",
    "trainer.progress=false",
    "trainer.threads=1",
    "trainer.checkpoint_every_s=0",
)

torch.set_num_threads(1)


def compose_config(*overrides: str, tiny: bool = True) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[*(TINY if tiny else ()), *overrides])
