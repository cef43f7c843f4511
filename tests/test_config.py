"""Every config group option composes and builds (the bad ones: test_config_errors.py)."""

import pytest
import torch
from hydra.utils import instantiate

from segact.config import (
    config_groups,
    instantiate_named,
    validate,
)
from segact.nn.heads import build_head


def options(group: str) -> list[str]:
    """The group's options: its YAML files and those the registries declare."""
    return config_groups()[group]


@pytest.mark.parametrize("activation", [a for a in options("activation") if a != "softmax"])
def test_every_activation_config_builds(make_cfg, activation):
    cfg = make_cfg(f"activation={activation}")
    validate(cfg)
    assert build_head(cfg.head, cfg.activation).out_channels == 1


@pytest.mark.parametrize("loss", options("loss"))
def test_every_loss_config_builds(make_cfg, loss):
    head = "softmax2" if loss == "ce" else "sigmoid1"
    activation = "softmax" if loss == "ce" else "sigmoid"
    cfg = make_cfg(f"loss={loss}", f"head={head}", f"activation={activation}")
    validate(cfg)
    assert callable(instantiate_named(cfg.loss))


@pytest.mark.parametrize("model", options("model"))
def test_every_model_config_validates(make_cfg, model):
    validate(make_cfg(f"model={model}"))


@pytest.mark.slow
def test_every_dataset_config_names_its_target(make_cfg):
    for dataset in options("dataset"):
        cfg = make_cfg(f"dataset={dataset}", tiny=False)  # tiny sets synthetic's n_images
        assert "_target_" in cfg.dataset and cfg.dataset.name


def test_experiment_configs_compose(make_cfg):
    for experiment in options("experiment"):
        cfg = make_cfg(f"experiment={experiment}")
        assert cfg.experiment_name == experiment


def test_optimizer_and_scheduler_configs_build(make_cfg):
    for optimizer in options("optimizer"):
        cfg = make_cfg(f"optimizer={optimizer}")
        weights = [torch.nn.Parameter(torch.zeros(2))]
        built = instantiate(cfg.optimizer)(weights)
        assert isinstance(built, torch.optim.Optimizer) and built.defaults["lr"] == cfg.trainer.lr
        for scheduler in options("scheduler"):
            schedule = instantiate(make_cfg(f"scheduler={scheduler}").scheduler)(built)
            assert hasattr(schedule, "step")


def test_trainer_paper_sets_the_papers_schedule(make_cfg):
    trainer = make_cfg("trainer=paper", tiny=False).trainer
    assert (trainer.lr, trainer.lr_factor, trainer.lr_patience) == (1e-3, 0.1, 5)
    assert (trainer.patience, trainer.batch_size, trainer.shuffle_folds) == (11, 8, False)
