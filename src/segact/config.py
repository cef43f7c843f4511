"""Config schemas (registered in Hydra's ConfigStore) and the checks that run before training.

The schemas type-check every trainer/eval/model/head option while Hydra composes the config; the
checks below catch combinations a schema cannot express. Each failure is one ConfigError whose
message names the config key and says what to do.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from segact import activations, heads
from segact.losses import BINARIZE_MODES
from segact.metrics import DEFAULT_THRESHOLDS
from segact.speed import PRECISIONS

PROTOCOLS = ("paper", "holdout")
SELECT_METRICS = ("mean_dice", "best_dice", "dice_at_05", "nll")


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and the fix."""


@dataclass
class TrainerConfig:
    folds: int = 5
    max_epochs: int = 30
    patience: int = 5
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_patience: int = 3
    lr_factor: float = 0.5
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0: one per available core
    progress: bool = True
    channels_last: bool = True  # scripts/bench_train.py: 0.78x the epoch time on CPU
    precision: str = "32"  # 32 | bf16 (autocast on CPU and GPU)
    compile: bool = False  # torch.compile the model
    checkpoint_every_s: float = 60.0  # save a fold checkpoint at most this often (0: every epoch)


@dataclass
class EvalConfig:
    thresholds: list[float] = field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
    protocol: str = "paper"
    select_metric: str = "mean_dice"
    inner_val_fraction: float = 0.2
    calibration_bins: int = 15
    batch_size: int = 64


@dataclass
class ModelConfig:
    arch: str = "Unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class HeadConfig:
    name: str = "sigmoid1"


def register_schemas() -> None:
    store = ConfigStore.instance()
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    store.store(group="eval", name="eval_schema", node=EvalConfig)
    store.store(group="model", name="model_schema", node=ModelConfig)
    store.store(group="head", name="head_schema", node=HeadConfig)


register_schemas()


def without_name(cfg: DictConfig) -> dict[str, Any]:
    """A ``_target_`` config minus its ``name`` key (the name labels results; it is no argument)."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "name"}


def instantiate_named(cfg: DictConfig, **kwargs: Any) -> Any:
    return instantiate(without_name(cfg), **kwargs)


def _fail(key: str, value: Any, fix: str) -> None:
    raise ConfigError(f"config key '{key}' = {value!r}: {fix}")


def _check_target(key: str, cfg: DictConfig) -> None:
    if "name" not in cfg:
        _fail(key, None, f"give {key}.name, the label used in the result files")
    if "_target_" in cfg:
        try:
            get_method(cfg._target_)
        except Exception as error:  # hydra raises ImportError or ValueError, varying by version
            _fail(f"{key}._target_", cfg._target_, f"cannot be imported ({error})")


def _smp_names() -> tuple[list[str], list[str]]:
    import segmentation_models_pytorch as smp
    from segmentation_models_pytorch.encoders import get_encoder_names

    return list(smp.MODEL_ARCHITECTURES_MAPPING), get_encoder_names()


def check_model(model: DictConfig) -> None:
    archs, encoders = _smp_names()
    if model.arch.lower() not in archs:
        _fail(
            "model.arch", model.arch, f"unknown smp architecture; choose one of {', '.join(archs)}"
        )
    if model.encoder.startswith("tu-"):
        import timm

        if not timm.list_models(model.encoder[3:]):
            _fail("model.encoder", model.encoder, "no timm model of that name (after 'tu-')")
    elif model.encoder not in encoders:
        _fail(
            "model.encoder",
            model.encoder,
            "unknown smp encoder; see segmentation_models_pytorch.encoders.get_encoder_names() "
            "or use a timm model as 'tu-<name>'",
        )


def check_head_and_activation(cfg: DictConfig) -> None:
    head, activation = cfg.head.name, cfg.activation
    if head not in heads.HEADS:
        _fail("head", head, f"unknown head; choose one of {', '.join(heads.names())}")
    _check_target("activation", activation)
    if head == "softmax2" and activation.name != activations.SOFTMAX:
        _fail(
            "activation",
            activation.name,
            "head=softmax2 computes p = softmax(z)[:, 1] and takes no output activation; "
            "use activation=softmax with it (or head=sigmoid1 for this activation)",
        )
    if head == "sigmoid1" and activation.name == activations.SOFTMAX:
        _fail("activation", activation.name, "softmax needs head=softmax2 (two output channels)")
    if (
        head == "sigmoid1"
        and "_target_" not in activation
        and activation.name not in activations.REGISTRY
    ):
        _fail(
            "activation",
            activation.name,
            f"unknown activation; choose one of {', '.join(activations.names())} "
            "or set activation._target_ to your own callable",
        )


def check_loss(cfg: DictConfig) -> None:
    loss = cfg.loss
    _check_target("loss", loss)
    if "_target_" not in loss:
        _fail("loss._target_", None, "every loss config needs a _target_ class")
    binarize = loss.get("binarize", "none")
    if binarize not in BINARIZE_MODES:
        _fail("loss.binarize", binarize, f"choose one of {', '.join(BINARIZE_MODES)}")
    if loss.name == "ce" and cfg.head.name != "softmax2":
        _fail("loss", "ce", "cross-entropy needs head=softmax2 (use loss=bce with head=sigmoid1)")


def check_eval(evaluation: DictConfig) -> None:
    thresholds = list(evaluation.thresholds)
    if not thresholds:
        _fail("eval.thresholds", thresholds, "give at least one threshold, e.g. [0.5]")
    if any(not 0.0 <= t <= 1.0 for t in thresholds):
        _fail("eval.thresholds", thresholds, "every threshold must lie in [0, 1]")
    if any(b <= a for a, b in itertools.pairwise(thresholds)):
        _fail("eval.thresholds", thresholds, "list the thresholds strictly increasing")
    if evaluation.protocol not in PROTOCOLS:
        _fail("eval.protocol", evaluation.protocol, f"choose one of {', '.join(PROTOCOLS)}")
    if evaluation.select_metric not in SELECT_METRICS:
        _fail("eval.select_metric", evaluation.select_metric, f"choose one of {SELECT_METRICS}")
    if not 0.0 < evaluation.inner_val_fraction < 1.0:
        _fail("eval.inner_val_fraction", evaluation.inner_val_fraction, "must lie in (0, 1)")


def check_trainer(trainer: DictConfig) -> None:
    minimums = {"batch_size": 1, "folds": 2, "max_epochs": 1, "patience": 1, "threads": 0}
    for key, minimum in minimums.items():
        if trainer[key] < minimum:
            _fail(f"trainer.{key}", trainer[key], f"must be at least {minimum}")
    if trainer.lr <= 0:
        _fail("trainer.lr", trainer.lr, "must be positive")
    if trainer.precision not in PRECISIONS:
        _fail("trainer.precision", trainer.precision, f"choose one of {', '.join(PRECISIONS)}")
    if trainer.device not in ("auto", "cpu") and not trainer.device.startswith(("cuda", "mps")):
        _fail("trainer.device", trainer.device, "use auto, cpu, cuda, cuda:N or mps")


def validate(cfg: DictConfig) -> None:
    """Every check that needs no data; raises ConfigError on the first problem."""
    check_trainer(cfg.trainer)
    check_eval(cfg.eval)
    check_head_and_activation(cfg)
    check_loss(cfg)
    _check_target("dataset", cfg.dataset)
    check_model(cfg.model)


def validate_against_data(cfg: DictConfig, n_cases: int) -> None:
    if cfg.trainer.folds > n_cases:
        _fail(
            "trainer.folds",
            cfg.trainer.folds,
            f"dataset '{cfg.dataset.name}' has only {n_cases} cases; use at most {n_cases} folds",
        )
