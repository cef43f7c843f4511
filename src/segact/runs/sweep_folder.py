"""The default sweep folder (configs/config.yaml ``hydra.sweep.dir``), and its log line.

A named sweep (``experiment_name=...``, or an ``experiment=`` file that sets it) keeps
``multirun/<experiment_name>``: committed results and scripts rely on those folders. An unnamed
one gets a folder of its own, ``multirun/<varied keys>_<hash>``: ``activation-loss_1f0c9a2e``
for ``-m activation=sigmoid,arctan loss=dice,bce``. The keys say what the sweep varies; the hash
is of every override that changes numbers (swept values sorted), so two sweeps that differ in
anything, fixed keys included (``dataset=ph2`` vs ``dataset=kvasir_seg``), never mix.

No date in the name, on purpose: the same command run again (tomorrow too) must find its runs
to resume them (a finished run is skipped). Overrides that change no number (``runtime.*``,
the launcher, ``trainer.fold``, ``hydra.*``) stay out of the hash, so a sweep continued under
another launcher or split into fold jobs finds its folder again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from segact.runs.identity import _excluded

log = logging.getLogger("segact")

UNNAMED = "default"
"""``experiment_name``'s default: the sweep is not named (unless given as an override)."""
MAX_KEYS_CHARS = 80
"""The varied keys part of a name is cut here; the hash keeps the name unique."""
NOT_IN_SWEEP = ("launcher",)
"""Overrides besides the identity's exclusions that leave the sweep's runs as they are."""


def _parse(overrides: Sequence[str]) -> list[Override]:
    return OverridesParser.create().parse_overrides(list(overrides))


def sweep_values(override: Override) -> list[str] | None:
    """A swept override's values, sorted (None: not enumerable here, e.g. a glob)."""
    try:
        return sorted(override.sweep_string_iterator())
    except Exception:  # a glob needs Hydra's config loader; intervals are no list
        return None


def _counts(override: Override) -> bool:
    key = override.key_or_group.replace("/", ".")
    return not (override.is_hydra_override() or key in NOT_IN_SWEEP or _excluded(key))


def sweep_overrides(task: Sequence[str], params: Mapping[str, Any] | None) -> list[Override]:
    """The command's overrides and an experiment file's ``hydra.sweeper.params`` that change
    which runs the sweep makes."""
    lines = [*task, *(f"{key}={value}" for key, value in (params or {}).items())]
    return [o for o in _parse(lines) if _counts(o)]


def _spelled(override: Override) -> str:
    values = sweep_values(override) if override.is_sweep_override() else None
    value = ",".join(values) if values is not None else override.get_value_element_as_str()
    return f"{override.get_key_element()}={value}"


def unnamed_folder(task: Sequence[str], params: Mapping[str, Any] | None = None) -> str:
    """``<varied keys>_<hash>`` of an unnamed sweep (``single_<hash>`` when nothing varies)."""
    overrides = sweep_overrides(task, params)
    spelled = sorted({_spelled(o) for o in overrides})
    digest = hashlib.sha256(json.dumps(spelled).encode()).hexdigest()[:8]
    varied = sorted(
        {o.key_or_group.split(".")[-1].split("/")[-1] for o in overrides if o.is_sweep_override()}
    )
    keys = "-".join(varied)[:MAX_KEYS_CHARS] or "single"
    return f"{keys}_{digest}"


def named_by_user(experiment_name: str, task: Sequence[str]) -> bool:
    return experiment_name != UNNAMED or any(
        o.key_or_group == "experiment_name" for o in _parse(task)
    )


def sweep_folder(experiment_name: str, task: Any, params: Any = None) -> str:
    """``${segact_sweep_folder:${experiment_name},${hydra.overrides.task},...}``: the folder
    below multirun/ (``experiment_name`` when the user named the sweep)."""
    task = [str(o) for o in task]
    if named_by_user(experiment_name, task):
        return experiment_name
    plain = OmegaConf.to_container(params) if OmegaConf.is_config(params) else params
    return unnamed_folder(task, plain)


class SweepFolderLog(Callback):
    """Hydra's ``on_multirun_start``: one line saying where the sweep's runs go, and why."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = str(config.hydra.sweep.dir)
        given = any(
            o.key_or_group == "hydra.sweep.dir" for o in _parse(list(config.hydra.overrides.hydra))
        )
        task = list(config.hydra.overrides.task)
        if given:
            why = "hydra.sweep.dir"
        elif named_by_user(str(config.get("experiment_name", UNNAMED)), task):
            why = "named by experiment_name"
        else:
            why = (
                "named from the swept keys and a hash of the overrides: the same command "
                "finds its runs again; experiment_name=NAME names it"
            )
        log.info("sweep folder: %s (%s)", folder, why)
