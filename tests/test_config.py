"""Every config group option composes and builds; every bad config fails with one clear error."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from segact.config import ConfigError, instantiate_named, validate, validate_against_data
from segact.heads import build_head
from segact.train import config_dir


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


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


def test_every_dataset_config_names_its_target(make_cfg):
    for dataset in options("dataset"):
        cfg = make_cfg(f"dataset={dataset}", tiny=False)  # tiny sets synthetic's n_images
        assert "_target_" in cfg.dataset and cfg.dataset.name


def test_experiment_configs_compose(make_cfg):
    for experiment in options("experiment"):
        cfg = make_cfg(f"experiment={experiment}")
        assert cfg.experiment_name == experiment


def test_softmax2_with_ce(make_cfg):
    validate(make_cfg("head=softmax2", "activation=softmax", "loss=ce"))
    assert instantiate(make_cfg().eval) is not None


BAD = [
    (("loss=ce",), "'loss'.*softmax2"),
    (("head=softmax2",), "'activation'.*softmax2"),
    (("head=softmax2", "activation=arctan"), "'activation'.*softmax2"),
    (("activation=softmax",), "'activation'.*softmax2"),
    (("activation.name=tanhh",), "'activation'.*unknown activation"),
    (("activation=custom", "activation._target_=nowhere.fn"), "activation._target_"),
    (("loss._target_=segact.losses.Nope",), "loss._target_"),
    (("loss.binarize=soft",), "loss.binarize"),
    (("model.arch=UNetXL",), "model.arch"),
    (("model.encoder=resnet999",), "model.encoder"),
    (("eval.thresholds=[0.2,1.5]",), "eval.thresholds.*\\[0, 1\\]"),
    (("eval.thresholds=[-0.1,0.5]",), "eval.thresholds.*\\[0, 1\\]"),
    (("eval.thresholds=[0.5,0.2]",), "eval.thresholds.*increasing"),
    (("eval.thresholds=[]",), "eval.thresholds"),
    (("eval.protocol=best",), "eval.protocol"),
    (("trainer.folds=1",), "trainer.folds"),
    (("trainer.batch_size=0",), "trainer.batch_size"),
    (("trainer.max_epochs=0",), "trainer.max_epochs"),
    (("trainer.lr=0",), "trainer.lr"),
    (("trainer.precision=fp8",), "trainer.precision"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD)
def test_validation_errors_name_the_key(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(*overrides))


def test_more_folds_than_cases(make_cfg):
    cfg = make_cfg("trainer.folds=13")
    validate(cfg)
    with pytest.raises(ConfigError, match=r"trainer.folds.*only 12 cases"):
        validate_against_data(cfg, n_cases=12)


def test_schema_rejects_wrong_types_and_unknown_keys(make_cfg):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        make_cfg("trainer.batch_size=many")
    with pytest.raises(ConfigCompositionException):
        make_cfg("trainer.batchsize=4")


def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segact.train", f"hydra.run.dir={tmp_path}", *overrides],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (("loss=ce",), "'loss'"),
        (("trainer.folds=500", "dataset.n_images=10"), "'trainer.folds'"),
        (("eval.thresholds=[0.7,0.3]",), "'eval.thresholds'"),
    ],
)
def test_cli_exits_non_zero_with_one_line_before_training(tmp_path, overrides, key):
    result = _cli(tmp_path, *overrides)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("segact: error:")]
    assert len(errors) == 1 and key in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "epochs.csv").exists()


def test_cli_unknown_group_option_lists_choices(tmp_path):
    result = _cli(tmp_path, "activation=tanhh")
    assert result.returncode != 0
    assert "activation/tanhh" in result.stderr and "arctan" in result.stderr
