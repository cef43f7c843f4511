"""What identifies a run, in one place: its named choices (the key columns of every result row),
its identity and hash, its folder name, and which of its settings make table rows and pairs.

A run's *identity* is every setting that can change its numbers: the resolved config without
the ``runtime`` node (progress bars, checkpoint interval, lock timeout: nothing that changes a
number), without ``paths`` and the loader-only dataset keys (where the files are, whether the
decoded arrays are cached), and without ``trainer.fold`` (which fold a job computes), plus what
the config leaves to the machine: the device type, and the torch thread count on CPU (float
reductions depend on it). Two runs with the same identity give the same CSVs; the identity's
hash is the ``config_hash`` column and the key of a finished run.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from segact.choices import plain
from segact.runs import schema
from segact.runs.legacy import as_recorded
from segact.training.memory_format import uses_channels_last

RUNTIME_NODE = "runtime"
NOT_IN_IDENTITY: tuple[str, ...] = (
    RUNTIME_NODE,
    "paths",
    "experiment_name",
    "hydra",
    "trainer.fold",
    "trainer.device",  # as resolved.device: auto and cpu are the same run on a CPU machine
    "trainer.threads",  # as resolved.threads: 0 means every core
    "trainer.cuda_graphs",  # graphed and eager steps launch the same kernels
    "trainer.fold_group",  # folds side by side: each with its own state, the same numbers
    "dataset.default_root",
    "dataset.cache",
    "dataset.cache_dir",
    "dataset.workers",
    "dataset.mask_pattern",  # which files pair: the fingerprint has their names and content
    "dataset.max_pixels",  # refuses files, changes no number of the files it accepts
    "logger",  # experiment tracker (configs/logger/): writes beside the run, changes no number
)
"""Dotted keys (or whole nodes) that change no number; every other key is part of a run."""
CHANNELS_LAST = "trainer.channels_last"
"""In the identity as the format it resolves to on the run's device (``auto``: true on CUDA,
false on a CPU), as runs recorded it before ``auto`` existed (true or false): the memory format
changes a CPU's float sums, and ``auto`` on CUDA is the very run ``true`` is."""
DATA_FINGERPRINT = "dataset.fingerprint"
"""The identity key of the dataset files' content hash (``segact.data.fingerprint``): changed
data is another run. Runs that predate it stay finished (``predates``)."""
CHOICES: tuple[str, ...] = (
    "dataset",
    "arch",
    "encoder",
    "head",
    "loss",
    "activation",
    "binarize",
    "protocol",
)
"""The named choices of a run: folds.csv columns, in the order results are sorted by."""
ROW_ORDER: tuple[str, ...] = (
    "loss",
    "activation",
    "head",
    "binarize",
    "arch",
    "encoder",
    "protocol",
)
"""The choices besides the dataset in the order they split a table's rows."""
SETTING_COLUMNS: tuple[str, ...] = ("max_epochs", "lr", "batch_size")
"""folds.csv's copies of trainer settings; like the dotted identity columns, row keys when they
differ between runs."""
REPLICATES = frozenset({"seed", "fold", "trainer.seed", "trainer.fold"})
"""Settings that make replicates (seeds) or parts (folds) of one result, never a table row."""
ROW_IDENTITY: tuple[str, ...] = (*CHOICES, "seed", "fold")
"""What makes a row of a tidy results file (with any differing setting): choices and fold."""
IN_FOLDER_NAME: tuple[str, ...] = (
    "dataset",
    "model",
    "model.arch",
    "model.encoder",
    "head",
    "activation",
    "loss",
    "loss.binarize",
    "trainer.seed",
)
"""Choices the folder name spells out in its path (configs/config.yaml ``hydra.sweep.subdir``)."""
NOT_IN_FOLDER_NAME: tuple[str, ...] = (
    "experiment",
    "launcher",
    "combination",
    "+combination",
    "logger",
)
BY_LAST_NAME: tuple[str, ...] = ("dataset.root",)
"""Paths the folder name shows by their last component and a short hash of the whole resolved
path (``dataset.root=/data/ph2``: ``dataset.root=ph2-1f0c2a9b``): not the data's whole location,
yet two dataset folders with one name (``A/base``, ``B/base``) never share a run folder."""


UNSET_SETTINGS: dict[str, str] = {"loss.binarize": "none"}
"""What a stored setting reads as where the config has no such key (a loss without the option)."""
_ABSENT = object()
_TYPED: dict[schema.Dtype, Callable[[Any], Any]] = {
    schema.Dtype.INT: int,
    schema.Dtype.FLOAT: float,
}


def run_keys(cfg: DictConfig) -> dict[str, Any]:
    """The run's experiment and the settings folds.csv stores (``schema.STORED_AS``: choices and
    trainer settings), as columns of every result row, typed as the schema declares them."""
    keys: dict[str, Any] = {"experiment": cfg.get("experiment_name", "default")}
    for key, column in schema.STORED_AS.items():
        value = OmegaConf.select(cfg, key, default=UNSET_SETTINGS.get(key, _ABSENT))
        if value is _ABSENT:
            raise KeyError(f"the run's config has no {key}")
        keys[column] = _TYPED.get(schema.COLUMNS[column].dtype, plain)(plain(value))
    return keys


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat if flat or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def _excluded(key: str) -> bool:
    return any(key == skip or key.startswith(f"{skip}.") for skip in NOT_IN_IDENTITY)


def identity(
    cfg: DictConfig, device_type: str, threads: int, data_fingerprint: str | None = None
) -> dict[str, Any]:
    """Flat {dotted key: value} of every setting that changes the run's numbers, the content of
    the dataset's files included (``dataset.fingerprint``; none for generated data)."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    flat = {k: v for k, v in _flatten(container).items() if not _excluded(k)}
    if CHANNELS_LAST in flat:
        flat[CHANNELS_LAST] = uses_channels_last(flat[CHANNELS_LAST], device_type)
    flat = {k: as_recorded(k, v) for k, v in flat.items()}  # former spellings
    if data_fingerprint is not None:
        flat[DATA_FINGERPRINT] = data_fingerprint
    flat["resolved.device"] = device_type
    if device_type == "cpu":
        flat["resolved.threads"] = threads
    return dict(sorted(flat.items()))


def config_hash(ident: dict[str, Any]) -> str:
    """16 hex characters of the identity's SHA-256: the ``config_hash`` of its result rows."""
    text = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def predates(recorded: dict[str, Any], current: dict[str, Any]) -> list[str] | None:
    """The keys ``current`` adds to ``recorded`` when every recorded setting is unchanged (the
    run predates those keys), else None. A key added to a schema must default to the behaviour
    from before it existed, so that finished runs stay finished (their CSVs would be the same)."""
    if any(key not in current or current[key] != value for key, value in recorded.items()):
        return None
    return sorted(set(current) - set(recorded))


# --- the folder name --------------------------------------------------------------------------


def unsafe_segment(value: object) -> str | None:
    """Why ``value`` cannot be one folder name below the sweep folder (None: it can): a
    separator, ``.`` or ``..``, an empty name or a NUL would put a run folder elsewhere."""
    text = str(value)
    if not text or text in (".", ".."):
        return "is empty or '.' or '..'"
    if any(c in text for c in ("/", "\\", "\0")):
        return "holds a path separator or NUL"
    if len(text.encode()) > 255:
        return "is longer than a folder name may be (255 bytes)"
    return None


def segment(key: str, value: object) -> object:
    """``${segact_segment:key,value}`` in the folder templates: ``value`` if it is one safe folder
    name; else one error line and exit 2, before Hydra creates any folder. (An exception here
    would reach the user as a traceback: Hydra wraps it while it resolves the run folder.)"""
    why = unsafe_segment(value)
    if why is not None:
        print(
            f"segact: error: config key '{key}' = {str(value)!r} {why}: it names a run folder "
            "below the sweep or outputs folder; choose a plain name",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return value


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("~+")


QUOTES = "'\""


def path_tag(value: str) -> str:
    """``<last name>-<8 hex of the resolved path>`` of a path given on the command line (relative
    to the working directory, as the loader reads it)."""
    path = Path(value.strip(QUOTES)).expanduser()
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{path.name or value}-{digest}"


def _in_folder_name(override: str) -> str:
    key, _, value = override.partition("=")
    if key.lstrip("+") in BY_LAST_NAME and value:
        return f"{key}={path_tag(value)}"
    return override


SAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._+=-]")
"""What a folder name keeps as it is: no space, quote, backslash or other character a shell or a
glob would read (``dataset.masks_dir=Ground Truth``: ``Ground_Truth-<hash>``)."""
MAX_SUFFIX = 120
"""The longest override part of a run folder's name; a longer one ends in a hash of the rest."""


def _short_hash(text: str, length: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _safe_override(override: str) -> str:
    """``key=value`` with the value in safe characters (Hydra's escapes undone first); a value
    that had to change gets a short hash of its original, so two values never share a name."""
    key, equals, value = override.partition("=")
    plain = re.sub(r"\\(.)", r"\1", value)  # Hydra's escapes: Ground\ Truth
    safe = SAFE_CHARACTERS.sub("_", plain.replace("/", "_"))
    if safe != value.replace("/", "_"):
        safe = f"{safe.strip('_')}-{_short_hash(value)}"
    return f"{key}{equals}{safe}"


def folder_suffix(overrides: Sequence[str]) -> str:
    """The overrides that are not yet part of the folder's path and that change numbers, as
    ``key=value,key=value`` (Hydra's override_dirname, minus the runtime node as a whole; a
    path of ``BY_LAST_NAME`` by its last component and a hash of the whole path), each value in
    safe characters, at most ``MAX_SUFFIX`` characters in all (then cut, with a hash)."""
    kept = sorted(
        _in_folder_name(o)
        for o in overrides
        if (key := _override_key(o)) not in IN_FOLDER_NAME
        and key not in NOT_IN_FOLDER_NAME
        and not key.startswith("hydra.")
        and not _excluded(key)
    )
    suffix = ",".join(_safe_override(o) for o in kept)
    if len(suffix) <= MAX_SUFFIX:
        return suffix
    return f"{suffix[: MAX_SUFFIX - 9]}-{_short_hash(suffix, 8)}"


# --- identity columns of result frames ----------------------------------------------------------


def setting_columns(folds: pd.DataFrame) -> list[str]:
    """The result-changing settings beyond the named choices: folds.csv's trainer copies, then
    every dotted identity column, seeds and folds excepted (they are replicates)."""
    dotted = sorted(c for c in folds.columns if "." in c and c not in REPLICATES)
    return [c for c in SETTING_COLUMNS if c in folds.columns] + dotted


def sort_keys(folds: pd.DataFrame) -> list[str]:
    """Every identity column present: the names, the settings, then seed and fold."""
    return [*CHOICES, *setting_columns(folds), "seed", "fold"]


def varies_within(folds: pd.DataFrame, by: Sequence[str], column: str) -> bool:
    """Whether ``column`` takes more than one value (NaN counts as one) in some group of ``by``."""
    if not by:
        return folds[column].nunique(dropna=False) > 1
    counts = folds.groupby(list(by), dropna=False, sort=False)[column].nunique(dropna=False)
    return bool((counts > 1).any())


def row_keys(
    folds: pd.DataFrame, always: Sequence[str] = ("dataset", "loss", "activation")
) -> list[str]:
    """What makes two runs different kinds (rows of a table): ``always`` plus every other choice
    or setting that differs between runs alike in the keys before it, so each run is counted
    once, in a row of its own kind. A setting that only follows the keys already there
    (``optimizer.lr`` next to ``lr``, ``dataset.root`` with the dataset) adds no row."""
    keys = [k for k in always if k in folds.columns]
    for candidate in (*ROW_ORDER, *setting_columns(folds)):
        present = candidate in folds.columns and candidate not in keys
        if present and varies_within(folds, keys, candidate):
            keys.append(candidate)
    return keys


def pair_keys(folds: pd.DataFrame) -> list[str]:
    """What two runs must share to be paired (besides seed and fold): dataset and loss, and every
    other named choice or setting that differs between runs of one dataset, loss and activation.
    A setting that only follows the dataset (``dataset.root``, the synthetic set's
    ``dataset.noise``) or the activation (``activation.eps``; ``head``: softmax comes only with
    the 2-channel head) adds no key, so sigmoid1 + Dice pairs with softmax2 + Dice."""
    keys = ["dataset", "loss"]
    for key in (*CHOICES, *setting_columns(folds)):
        if key not in folds.columns or key in keys or key == "activation":
            continue
        if varies_within(folds, [*keys, "activation"], key):
            keys.append(key)
    return keys
