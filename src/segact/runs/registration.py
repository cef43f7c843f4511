"""What the entry points register, once per process, before Hydra composes or resolves a config:
the plugins (modules of the ``segact_plugins`` namespace package, which register their own
activations, losses and dataset formats), segact's OmegaConf resolvers, and the config schemas
and registry options in Hydra's ConfigStore.

``segact-train``, ``segact-predict`` and ``segact-report`` call ``register``; so does every
process that runs a job: joblib's and submitit's workers import ``segact.train`` to unpickle the
job's function, and ``segact.train`` registers when it is imported. Library modules register
nothing when imported.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import OmegaConf

from segact.config import config_groups_help, register_schemas, repository_dir
from segact.runs.identity import folder_suffix, segment
from segact.runs.runner import threads_per_job
from segact.runs.sweep_folder import sweep_folder

PLUGINS = "segact_plugins"
"""A namespace package: every module in it on ``sys.path`` is imported as a plugin."""


def _folder_suffix(overrides: Sequence[str]) -> str:
    return folder_suffix(list(overrides))


RESOLVERS: dict[str, Callable[..., Any]] = {
    "segact_repository": repository_dir,  # configs/config.yaml paths.datasets
    "segact_config_groups": config_groups_help,  # segact-train --help
    "segact_segment": segment,  # the run folder's names, each one safe folder name
    "segact_folder_suffix": _folder_suffix,
    "threads_per_job": threads_per_job,  # configs/launcher/joblib.yaml
}
CACHED_RESOLVERS: dict[str, Callable[..., Any]] = {
    # cached: keyed by the arguments' text, and Hydra copies the sweep's cache into every job's
    # config (load_sweep_config), so each job gets the sweep's folder, computed once from the
    # sweep's overrides, not from its own (one value of each swept key).
    "segact_sweep_folder": sweep_folder,
}
_registered: list[bool] = []


def load_plugins() -> list[str]:
    """Import every module of the ``segact_plugins`` namespace package; returns their names."""
    try:
        package = importlib.import_module(PLUGINS)
    except ImportError:
        return []
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__, f"{PLUGINS}."))
    for name in names:
        importlib.import_module(name)
    return names


def register_resolvers() -> None:
    for name, resolver in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)
    for name, resolver in CACHED_RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True, use_cache=True)


def register(again: bool = False) -> None:
    """Plugins, resolvers, schemas: once per process (``again``: after registering more)."""
    if _registered and not again:
        return
    load_plugins()
    register_resolvers()
    register_schemas()
    _registered.append(True)
