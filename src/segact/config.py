"""Config schemas (registered in Hydra's ConfigStore) and the checks no schema can express.

Every config group has a dataclass schema, so Hydra rejects a wrong type, an unknown key or a
value outside a closed choice (Enum) while it composes the config, before anything runs. The
defaults live here, once; the YAML files pick a schema and set only what differs. The checks at
the bottom cover combinations and lookups (head x activation, loss x head, smp names); each
failure is one ConfigError whose message names the config key and says what to do.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from hydra.utils import get_method, instantiate
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from segact.choices import plain
from segact.data import formats
from segact.errors import ConfigError
from segact.nn import activations, heads, losses
from segact.nn.heads import HeadName
from segact.training.memory_format import AUTO as CHANNELS_LAST_AUTO
from segact.training.settings import (
    EvalConfig,
    ModelConfig,
    RunSettings,
    RuntimeConfig,
    TrainerConfig,
)


def config_dir() -> Path:
    """configs/ inside an installed wheel, else the repository's top-level configs/."""
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "configs"


def repository_dir() -> str:
    """The folder that holds configs/ (the repository), for ``paths.datasets``'s default."""
    return str(config_dir().parent)


def config_groups() -> dict[str, list[str]]:
    """Every config group and its options: the YAML files under configs/ and the options the
    registries declare (``options``)."""
    folders = [p for p in config_dir().iterdir() if p.is_dir()]
    found = {p.name: [f.stem for f in p.glob("*.yaml")] for p in folders}
    for group, declared in options().items():
        found[group] = [*found.get(group, []), *declared]
    return {group: sorted(set(found[group])) for group in sorted(found)}


def config_groups_help() -> str:
    """``group: option, option, ...`` for every config group (schemas and launchers' internals
    excluded), for ``segact-train --help``."""
    return "\n".join(
        f"{group}: {', '.join(names)}{GROUP_NOTES.get(group, '')}"
        for group, names in config_groups().items()
    )


GROUP_NOTES: dict[str, str] = {
    "combination": (
        "\n    (two choices in one value, loss + activation or head + loss, to sweep pairs rather "
        "than a grid: "
        "-m +combination=dice_sigmoid,dice_arctan; the named experiments use it)"
    ),
}
"""A line under a group whose purpose its options do not tell, in ``--help``."""


@dataclass
class HeadConfig:
    name: HeadName = HeadName.sigmoid1


@dataclass
class ActivationConfig:
    """A registered activation by ``name``, or your own callable through ``_target_``."""

    name: str = MISSING
    _target_: str | None = None
    _partial_: bool = False


def schemas() -> dict[str, dict[str, type]]:
    """ConfigStore ``schema/<group>/<name>``; a YAML option starts with
    ``defaults: [/schema/<group>/<name>@_here_, _self_]``. Kept out of the groups themselves, so
    ``--help`` lists only real choices. Losses and dataset formats: as registered."""
    return {
        "trainer": {"trainer": TrainerConfig},
        "runtime": {"runtime": RuntimeConfig},
        "eval": {"eval": EvalConfig},
        "model": {"model": ModelConfig},
        "head": {"head": HeadConfig},
        "dataset": {name: fmt.schema for name, fmt in formats.FORMATS.items()},
        "activation": {"activation": ActivationConfig},
        "loss": {"loss": losses.LossConfig, **losses.LOSSES},
        "logger": LOGGER_SCHEMAS,
    }


def options() -> dict[str, dict[str, Any]]:
    """The config groups' options that a registry declares (no YAML file): ``activation=<name>``
    for each registered activation, ``loss=<name>`` for each loss, ``head=<name>``."""
    return {
        "activation": {name: ActivationConfig(name=name) for name in activations.names()},
        "loss": {name: schema() for name, schema in losses.LOSSES.items()},
        "head": {name: HeadConfig(name=HeadName(name)) for name in heads.names()},
    }


def register_schemas() -> None:
    """Store the schemas and the registries' options in Hydra's ConfigStore (the entry points
    call it, through ``segact.runs.registration``; again after a plugin registered more)."""
    store = ConfigStore.instance()
    for group, found in schemas().items():
        for name, node in found.items():
            store.store(group=f"schema/{group}", name=name, node=node)
    for group, found in options().items():
        for name, node in found.items():
            store.store(group=group, name=name, node=node)


def instantiate_named(cfg: DictConfig, **kwargs: Any) -> Any:
    """``instantiate`` a ``_target_`` config minus its ``name`` (a label for the result files)."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return instantiate({k: v for k, v in container.items() if k != "name"}, **kwargs)


Schema = TypeVar("Schema")


def typed(node: DictConfig, schema: type[Schema]) -> Schema:
    """``node`` as an instance of its ``schema`` (values resolved, checked and converted by the
    schema's types; a key the node lacks takes the schema's default)."""
    values = OmegaConf.to_container(node, resolve=True)
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))


def run_settings(cfg: DictConfig) -> RunSettings:
    """The composed config as the typed settings that the runner passes below it, built once:
    nothing below ``segact.runs`` sees a DictConfig (``segact.training.settings``)."""
    return RunSettings(
        trainer=typed(cfg.trainer, TrainerConfig),
        eval=typed(cfg.eval, EvalConfig),
        model=typed(cfg.model, ModelConfig),
        runtime=typed(cfg.runtime, RuntimeConfig),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True, enum_to_str=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True, enum_to_str=True),
    )


def _fail(key: str, value: Any, fix: str) -> None:
    raise ConfigError(f"config key '{key}' = {plain(value)!r}: {fix}")


def _check_target(key: str, target: str | None) -> None:
    if target is None:
        return
    try:
        get_method(target)
    except Exception as error:  # hydra raises ImportError or ValueError, varying by version
        _fail(f"{key}._target_", target, f"cannot be imported ({error})")


def _smp_names() -> tuple[list[str], list[str]]:
    import segmentation_models_pytorch as smp
    from segmentation_models_pytorch.encoders import get_encoder_names

    return list(smp.MODEL_ARCHITECTURES_MAPPING), get_encoder_names()


def check_model(model: DictConfig) -> None:
    archs, encoders = _smp_names()
    if model.arch.lower() not in archs:
        _fail("model.arch", model.arch, f"unknown smp architecture; choose one of {archs}")
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
    head, activation = plain(cfg.head.name), cfg.activation
    _check_target("activation", activation.get("_target_"))
    if head == HeadName.softmax2 and activation.name != activations.SOFTMAX:
        _fail(
            "activation",
            activation.name,
            "head=softmax2 computes p = softmax(z)[:, 1] and takes no output activation; "
            "use activation=softmax with it (or head=sigmoid1 for this activation)",
        )
    if head == HeadName.sigmoid1 and activation.name == activations.SOFTMAX:
        _fail("activation", activation.name, "softmax needs head=softmax2 (two output channels)")
    if (
        head == HeadName.sigmoid1
        and activation.get("_target_") is None
        and activation.name not in activations.names()
    ):
        _fail(
            "activation",
            activation.name,
            f"unknown activation; choose one of {', '.join(activations.names())} "
            "or set activation._target_ to your own callable",
        )
    if head not in heads.names():  # a custom head registered in code but not in the Enum
        _fail("head", head, f"unknown head; choose one of {', '.join(heads.names())}")


def check_loss(cfg: DictConfig) -> None:
    _check_target("loss", cfg.loss._target_)
    if cfg.loss.name == "ce" and plain(cfg.head.name) != HeadName.softmax2:
        _fail("loss", "ce", "cross-entropy needs head=softmax2 (use loss=bce with head=sigmoid1)")


def check_eval(evaluation: DictConfig) -> None:
    thresholds = list(evaluation.thresholds)
    if not thresholds:
        _fail("eval.thresholds", thresholds, "give at least one threshold, e.g. [0.5]")
    if any(not 0.0 <= t <= 1.0 for t in thresholds):
        _fail("eval.thresholds", thresholds, "every threshold must lie in [0, 1]")
    if any(b <= a for a, b in itertools.pairwise(thresholds)):
        _fail("eval.thresholds", thresholds, "list the thresholds strictly increasing")
    if not 0.0 < evaluation.inner_val_fraction < 1.0:
        _fail("eval.inner_val_fraction", evaluation.inner_val_fraction, "must lie in (0, 1)")


def check_trainer(trainer: DictConfig) -> None:
    minimums = {"batch_size": 1, "folds": 2, "max_epochs": 1, "patience": 1, "threads": 0}
    for key, minimum in minimums.items():
        if trainer[key] < minimum:
            _fail(f"trainer.{key}", trainer[key], f"must be at least {minimum}")
    if trainer.lr <= 0:
        _fail("trainer.lr", trainer.lr, "must be positive")
    if trainer.fold is not None and not 0 <= trainer.fold < trainer.folds:
        _fail("trainer.fold", trainer.fold, f"choose a fold in 0..{trainer.folds - 1} or null")
    if trainer.device not in ("auto", "cpu") and not trainer.device.startswith(("cuda", "mps")):
        _fail("trainer.device", trainer.device, "use auto, cpu, cuda, cuda:N or mps")
    if trainer.channels_last not in (True, False, CHANNELS_LAST_AUTO):
        _fail("trainer.channels_last", trainer.channels_last, "use auto, true or false")


def check_device_available(device: str) -> None:
    """A GPU the machine does not have: one line now, not a traceback after the data loads."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        _fail("trainer.device", device, "this machine has no CUDA GPU; use trainer.device=cpu")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        _fail("trainer.device", device, f"only {torch.cuda.device_count()} CUDA device(s) here")
    if device == "mps" and not torch.backends.mps.is_available():
        _fail("trainer.device", device, "MPS is not available here; use trainer.device=cpu")


SCHEMA_GROUPS = ("trainer", "runtime", "eval", "model", "head", "dataset", "activation", "loss")


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option most like ``word`` (difflib's close matches), None if none is close."""
    found = difflib.get_close_matches(word, [str(o) for o in options], n=1)
    return found[0] if found else None


def _settings_hint(owner: str, key: str, known: Sequence[str]) -> str:
    close = closest(key, known)
    if close is not None:
        return f"did you mean {owner}.{close}?"
    return f"the settings of {owner} are {', '.join(k for k in known if k[0] != '_')}"


def check_known_keys(cfg: DictConfig) -> None:
    """A key that no schema has, added with Hydra's ``+`` (``+trainer.epochs=3``), would be
    ignored silently: refuse it and name the closest setting. Nodes built around a user's own
    ``_target_`` take whatever keyword arguments that target takes, and are left alone."""
    check_top_level_keys(cfg)
    for group in SCHEMA_GROUPS:
        node = cfg.get(group)
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        target = str(node.get("_target_") or "") if isinstance(node, DictConfig) else ""
        if not dataclasses.is_dataclass(schema) or (target and not target.startswith("segact.")):
            continue
        known = sorted(f.name for f in dataclasses.fields(schema))
        for key in node:
            if key not in known:
                hint = _settings_hint(group, str(key), known)
                _fail(f"{group}.{key}", node[key], f"{group} has no such setting; {hint}")


TOP_LEVEL_KEYS = frozenset({"experiment_name", "paths", "hydra"})
"""Top-level keys besides the config groups' nodes (configs/config.yaml)."""


def check_top_level_keys(cfg: DictConfig) -> None:
    """``+activaton=arctan`` is no group: Hydra adds it as a key of its own, which nothing reads."""
    known = TOP_LEVEL_KEYS | set(config_groups())
    for key in cfg:
        if str(key) not in known:
            close = closest(str(key), known - {"hydra"})
            hint = f"did you mean {close}?" if close else f"the top-level keys are {sorted(known)}"
            _fail(str(key), cfg[key], f"the config has no such setting; {hint}")


def _child_keys(node: Any) -> list[str]:
    """The keys (or list indices) below a config node, its values left unresolved."""
    if isinstance(node, DictConfig):
        return [str(k) for k in node]
    if isinstance(node, ListConfig):
        return [str(i) for i in range(len(node))]
    return []


def _corrected(cfg: DictConfig, parts: Sequence[str]) -> list[str] | None:
    """``parts`` with each missing key replaced by the closest one there, None if one has none."""
    node: Any = cfg
    fixed: list[str] = []
    for part in parts:
        keys = _child_keys(node)
        found = part if part in keys or isinstance(node, ListConfig) else closest(part, keys)
        if found not in keys:
            return None
        fixed.append(found)
        node = node._get_node(int(found) if isinstance(node, ListConfig) else found)
    return fixed


def _deepest(cfg: DictConfig, parts: Sequence[str]) -> tuple[int, Any]:
    """How many of ``parts`` lead through ``cfg``, and the node they lead to."""
    node: Any = cfg
    for depth, part in enumerate(parts):
        if part not in _child_keys(node):
            return depth, node
        node = node._get_node(int(part) if isinstance(node, ListConfig) else part)
    return len(parts), node


def unknown_key(cfg: DictConfig, key: str, value: Any = None, shown: bool = True) -> str | None:
    """Why the dotted ``key`` (set to ``value``, if ``shown``) is not in ``cfg``, naming the
    closest key there ('... trainer has no such setting; did you mean trainer.max_epochs?'), or
    None if it is there."""
    parts = key.split(".")
    depth, node = _deepest(cfg, parts)
    if depth == len(parts):
        return None
    part = parts[depth]
    owner = ".".join(parts[:depth]) or "the config"
    what = "no such setting" if depth == len(parts) - 1 else f"no setting '{part}'"
    fixed = _corrected(cfg, parts)
    if fixed is not None:
        hint = f"did you mean {'.'.join(fixed)}?"
    elif isinstance(node, ListConfig):
        hint = f"{owner} is a list of {len(node)}"
    elif depth and not dataclasses.is_dataclass(OmegaConf.get_type(node)):
        hint = f"{owner} takes new keys: add it with +{key}=..."
    else:
        hint = f"the settings of {owner} are {', '.join(_child_keys(node))}"
    shown_value = f" = {plain(value)!r}" if shown else ""
    return f"config key '{key}'{shown_value}: {owner} has {what}; {hint}"


def validate(cfg: DictConfig) -> None:
    """Every check that needs no data; raises ConfigError on the first problem."""
    check_known_keys(cfg)
    check_trainer(cfg.trainer)
    check_device_available(cfg.trainer.device)
    check_eval(cfg.eval)
    check_head_and_activation(cfg)
    check_loss(cfg)
    _check_target("dataset", cfg.dataset.get("_target_"))
    check_model(cfg.model)


def validate_against_data(cfg: DictConfig, n_cases: int) -> None:
    if cfg.trainer.folds > n_cases:
        _fail(
            "trainer.folds",
            cfg.trainer.folds,
            f"dataset '{cfg.dataset.name}' has only {n_cases} cases; k-fold cross-validation "
            f"needs at least 2 cases and at most one fold per case: use 2 to {n_cases} folds"
            if n_cases >= 2
            else f"dataset '{cfg.dataset.name}' has {n_cases} case; k-fold cross-validation "
            "needs at least 2 cases (add images, or check dataset.case_regex)",
        )


# --- experiment loggers (``logger=``; segact.runs.loggers) --------------------------------------


@dataclass
class LoggerConfig:
    """``logger=none``: no experiment tracker (epochs.csv and the log lines only). A logger
    changes no number: it is in no run's identity or folder name."""

    _target_: str | None = None
    name: str = "none"


@dataclass
class TensorBoardLoggerConfig(LoggerConfig):
    """Event files per run: scalars ``fold<k>/<column>`` at step = epoch, settings as hparams."""

    _target_: str | None = "segact.runs.loggers.TensorBoardLogger"
    name: str = "tensorboard"
    log_dir: str | None = None  # null: <sweep folder>/tensorboard (single runs: outputs/<exp>/)


@dataclass
class MLflowLoggerConfig(LoggerConfig):
    """A parent MLflow run per segact run (settings as params), a nested run per fold."""

    _target_: str | None = "segact.runs.loggers.MLflowLogger"
    name: str = "mlflow"
    tracking_uri: str | None = None  # null: sqlite:///<sweep folder>/mlflow.db
    experiment: str | None = None  # null: the sweep folder's name


LOGGER_SCHEMAS: dict[str, type] = {
    "none": LoggerConfig,
    "tensorboard": TensorBoardLoggerConfig,
    "mlflow": MLflowLoggerConfig,
}
SCHEMA_GROUPS = (*SCHEMA_GROUPS, "logger")
