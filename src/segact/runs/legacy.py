"""The names older segact versions wrote, and the one place each is read under today's name:
result columns (``LEGACY_NAMES``: every result file and results.csv), summary.json's means and a
checkpoint's metrics (``RENAMED_METRICS``), and the values and module paths a run's identity
keeps in their former spelling (``RENAMED_VALUES``, ``MOVED_MODULES``), so that a rename, which
changes no number, leaves every finished run finished and its ``config_hash`` as it was.

Whoever renames a column, a metric, a choice or a module adds its former name here, and only
here. This module imports nothing from segact but the schema, so every layer that reads an old
file may import it (``tests/test_layout.py`` treats it as part of the base).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from segact.runs.schema import (
    CELLS,
    DICE_PER_IMAGE,
    DICE_PER_IMAGE_AT_BEST_THRESHOLD,
    NLL,
    PAPER_PREFIX,
    THRESHOLD_AVERAGED_DICE,
    VALIDATION_PREFIX,
    mean_nll,
)

if TYPE_CHECKING:
    import pandas as pd

RENAMED_METRICS: dict[str, str] = {"mean_dice": THRESHOLD_AVERAGED_DICE}
"""Metrics renamed since files and checkpoints recorded them (2026-12-01): former -> current."""
LEGACY_NAMES: dict[str, str] = {
    DICE_PER_IMAGE: DICE_PER_IMAGE_AT_BEST_THRESHOLD,
    **{
        f"{prefix}{old}": f"{prefix}{new}"
        for old, new in RENAMED_METRICS.items()
        for prefix in ("", VALIDATION_PREFIX, PAPER_PREFIX)
    },
    **{f"{NLL}_{cell}": mean_nll(cell) for cell in CELLS},
}
"""Columns older segact versions wrote under another name: renamed on reading (every file's,
thresholds.csv's ``dice_per_image`` too)."""
RENAMED_VALUES: dict[tuple[str, str], Any] = {
    ("eval.select_metric", new): old for old, new in RENAMED_METRICS.items()
}
"""Values renamed since runs recorded them (``mean_dice`` became ``threshold_averaged_dice`` on
2026-12-01): the identity spells them by their former name, so that a rename, which changes no
number, leaves every finished run finished and its ``config_hash`` as it was.
(``trainer.channels_last=auto`` is no rename: the identity records what it resolves to,
``runs/identity.py``.)"""
MOVED_MODULES: dict[str, str] = {"segact.nn.losses.": "segact.losses."}
"""Modules that moved since runs recorded a ``_target_`` in them (the package layout of
2026-11-30): the identity spells such a target by its former path, for the same reason."""


def current_name(column: str) -> str:
    """A result column's name today (``column`` itself unless an older version wrote it)."""
    return LEGACY_NAMES.get(column, column)


def current_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the columns of older versions under today's names."""
    return frame.rename(columns=LEGACY_NAMES)


def former_names(metric: str) -> list[str]:
    """The names ``metric`` had before (``RENAMED_METRICS``), e.g. in an older summary.json."""
    return [old for old, new in RENAMED_METRICS.items() if new == metric]


def rename_metrics(values: MutableMapping[str, Any], prefix: str = "") -> None:
    """The keys of ``values`` that are a former metric name (after ``prefix``: ``val_`` for an
    epoch row) under today's name, in place (a checkpoint saved before a rename)."""
    for old, new in RENAMED_METRICS.items():
        if f"{prefix}{old}" in values:
            values[f"{prefix}{new}"] = values.pop(f"{prefix}{old}")


def as_recorded(key: str, value: Any) -> Any:
    """The identity's spelling of a setting: a ``_target_`` in a moved module by its former path
    (``MOVED_MODULES``), a renamed value by its former name (``RENAMED_VALUES``)."""
    if isinstance(value, str) and (key, value) in RENAMED_VALUES:
        return RENAMED_VALUES[key, value]
    if key.endswith("_target_") and isinstance(value, str):
        for now, before in MOVED_MODULES.items():
            if value.startswith(now):
                return before + value[len(now) :]
    return value
