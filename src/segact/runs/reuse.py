"""Finished runs reused across sweeps (a run cache, as DVC's): a run whose identity finished in
another sweep folder of the same output root (``multirun/``, ``outputs/``, ``results/runs/``) is
copied from there instead of trained again.

The index is one small file per finished run, ``<root>/.segact-index/<config_hash>.json``,
naming its folder relative to the root: written atomically when a run finishes, so concurrent
jobs need no lock, and a lookup reads one file. An index that does not exist yet is built once
by a scan of the root's summary.json files (runs that finished before the index existed).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from segact.io import read_json, write_json
from segact.runs.folder import (
    CHECKPOINTS_DIR,
    FOLDS_CSV,
    LOCKS_DIR,
    SUMMARY_JSON,
    RunFolder,
    read_result_csv,
)
from segact.runs.models import SUMMARY_MODELS

log = logging.getLogger(__name__)

INDEX_DIR = ".segact-index"
ROOT_NAMES = frozenset({"multirun", "outputs", "runs"})
"""Output roots a run cache is kept in (Hydra's defaults and ``results/runs``): never a folder
such as ``/tmp`` that a sweep folder merely lies in, which would be scanned and shared."""
NOT_COPIED = frozenset({".hydra", CHECKPOINTS_DIR, LOCKS_DIR, FOLDS_CSV, SUMMARY_JSON})
"""The new run keeps its own Hydra files; folds.csv and summary.json are written anew (the run's
own folder name in them)."""


def output_root(run_dir: Path, label: str) -> Path | None:
    """The folder above the run's sweep folder (``multirun/`` for ``multirun/<sweep>/<label>``);
    None for a run folder chosen by hand (a one-part label): no index is kept beside it."""
    parts = Path(label).parts
    folder = Path(os.path.abspath(run_dir))
    if len(parts) < 2 or folder.parts[-len(parts) :] != parts or len(folder.parts) <= len(parts):
        return None  # also a hydra.run.dir that does not end in the label
    root = folder.parents[len(parts)]
    return root if root.name in ROOT_NAMES or (root / INDEX_DIR).is_dir() else None


def _entry(root: Path, config_hash: str) -> Path:
    return root / INDEX_DIR / f"{config_hash}.json"


def record(root: Path | None, run: RunFolder, config_hash: str) -> None:
    """Index a run that just finished (best effort: the index is a cache)."""
    if root is None:
        return
    try:
        relative = os.path.relpath(os.path.abspath(run.path), root)
        write_json({"run": relative}, _entry(root, config_hash))
    except OSError as error:
        log.debug("run index not written: %s", error)


def _build_index(root: Path) -> None:
    """Index every finished run below ``root`` (the first lookup under a new index)."""
    for summary_path in root.rglob(SUMMARY_JSON):
        summary = RunFolder(summary_path.parent).read_summary()
        if summary.get("status") == "ok" and summary.get("config_hash"):
            record(root, RunFolder(summary_path.parent), str(summary["config_hash"]))


def finished_elsewhere(
    root: Path | None,
    run: RunFolder,
    config_hash: str,
    identity: dict[str, Any],
    with_models: bool,
) -> RunFolder | None:
    """The finished, intact run of this identity in another folder of ``root``, if any (with
    its saved models when ``with_models``: runtime.save_models asks for them)."""
    if root is None:
        return None
    if not (root / INDEX_DIR).is_dir():
        _build_index(root)
    try:
        source = RunFolder(root / read_json(_entry(root, config_hash))["run"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if Path(os.path.abspath(source.path)) == Path(os.path.abspath(run.path)):
        return None
    summary = source.finished_summary(config_hash, identity)
    if summary is None or (with_models and not summary.get(SUMMARY_MODELS)):
        return None
    return source


def copy_run(source: RunFolder, target: RunFolder, label: str) -> dict[str, Any]:
    """Copy a finished run into ``target`` (models hard-linked where the filesystem can), with
    its own folder name in folds.csv and summary.json; returns the new summary."""
    for entry in source.path.iterdir():
        if entry.name in NOT_COPIED or entry.suffix == ".log":
            continue
        destination = target.path / entry.name
        if entry.is_dir():
            shutil.copytree(entry, destination, copy_function=_link_or_copy, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, destination)
    folds = pd.read_csv(source.folds_csv, dtype=str, keep_default_na=False)
    if "run_dir" in folds.columns:
        folds["run_dir"] = label
    target.write_folds(folds)
    read_result_csv(target.folds_csv)  # as the report will: the copy must read back
    summary = {**source.read_summary(), "run_dir": label, "reused_from": str(source.path)}
    target.write_summary(summary)
    return summary


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
