"""The run of one configuration: train every fold not yet finished, keep each finished fold in
``parts/``, and join them into the run's files.

A crash loses at most the fold in flight, and folds computed by separate jobs
(``trainer.fold=k``) or by two processes sharing a sweep join into the same run files. A run
whose summary.json says ok (same identity, files intact) is skipped; a failing one is recorded
(summary.json and a failed row in folds.csv) so that a sweep goes on and the report lists it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from segact.config import (
    ConfigError,
    instantiate_named,
    run_settings,
    validate,
    validate_against_data,
)
from segact.data.base import SegmentationData
from segact.data.fingerprint import dataset_fingerprint
from segact.data.splits import Fold, case_folds
from segact.errors import DatasetError
from segact.nn.heads import build_head
from segact.runs import identity as run_identity
from segact.runs import models, monitor, reuse, schema
from segact.runs.folder import FoldRecords, RunFolder, summary_numbers
from segact.runs.locks import Lock, acquire, holding
from segact.runs.provenance import hardware, provenance
from segact.training import checkpoint
from segact.training.engine import FoldResult, FoldSetup, resolve_device
from segact.training.fitting import Augment
from segact.training.group import fit_group
from segact.training.memory_format import uses_channels_last
from segact.training.settings import TrainerConfig

log = logging.getLogger("segact")


def threads_per_job(n_jobs: int) -> int:
    """Torch threads per job when ``n_jobs`` run side by side (joblib's n_jobs < 1: one each)."""
    return max(1, len(os.sched_getaffinity(0)) // n_jobs) if n_jobs > 0 else 1


def configure_torch(trainer: TrainerConfig) -> tuple[torch.device, int]:
    threads = trainer.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return resolve_device(trainer.device), threads


def load_dataset(cfg: DictConfig) -> SegmentationData:
    try:
        data = instantiate_named(cfg.dataset)
    except InstantiationException as error:  # a loader's ConfigError (bad input) stays one
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise
    return dataclasses.replace(data, name=cfg.dataset.name)


def _container(node: DictConfig) -> dict[str, Any]:
    """A config node as plain values (resolved; Enums as their names), for the layers below."""
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


def build_augment(cfg: DictConfig) -> Augment | None:
    """The training-batch augmentation of ``augment=``; ``none`` (no _target_) means none."""
    augment_cfg = cfg.get("augment")
    if augment_cfg is None or "_target_" not in augment_cfg:
        return None
    return instantiate_named(augment_cfg)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Where a run writes and what identifies it."""

    folder: RunFolder
    label: str  # the run folder relative to its sweep folder
    identity: dict[str, Any]
    config_hash: str
    keys: dict[str, Any]
    device: torch.device
    data_error: DatasetError | None = None  # the dataset could not be read (to fingerprint)
    resolved: dict[str, Any] = dataclasses.field(default_factory=dict)  # provenance: auto's pick
    card: dict[str, Any] | None = None  # models.run_card; None: runtime.save_models=false

    @property
    def columns(self) -> dict[str, Any]:
        return {**self.keys, "run_dir": self.label, "config_hash": self.config_hash}


def run_context(
    cfg: DictConfig, run_dir: Path, label: str | None, device: torch.device, threads: int
) -> RunContext:
    try:  # a folder's content: fast once hashed
        fingerprint = dataset_fingerprint(_container(cfg.dataset))
        missing = None
    except DatasetError as error:  # no data here: only a run that predates fingerprints is found
        fingerprint, missing = None, error
    ident = run_identity.identity(cfg, device.type, threads, fingerprint)
    return RunContext(
        RunFolder(run_dir),
        label or Path(run_dir).name,
        ident,
        run_identity.config_hash(ident),
        run_identity.run_keys(cfg),
        device,
        missing,
        {"resolved.channels_last": uses_channels_last(cfg.trainer.channels_last, device.type)},
    )


def claim_fold(ctx: RunContext, records: FoldRecords, fold: Fold, stale_s: float) -> Lock | None:
    """The fold's lock, unless another process holds it or the fold is finished."""
    lock = acquire(ctx.folder.fold_lock(fold.index), stale_s)
    if lock is None:
        log.info(
            "fold %d of %s is being computed by another process: skipped", fold.index, ctx.label
        )
        return None
    if records.load(fold.index) is not None:  # finished while we waited for the lock
        lock.release()
        return None
    return lock


def record_fold(
    setup: FoldSetup, ctx: RunContext, records: FoldRecords, fold: Fold, result: FoldResult
) -> None:
    """A finished fold's model, record and log line; its checkpoint removed."""
    row = {**ctx.columns, "fold": fold.index, **result.row, "hardware": hardware(ctx.device)}
    row |= {"status": "ok", "error": ""}
    saved: dict[str, str] = {}
    if ctx.card is not None and result.state is not None:  # before the fold's record
        card = models.fold_card(ctx.card, fold.index, row[schema.BEST_THRESHOLD])
        saved[models.MODEL_HASH] = models.save_fold(ctx.folder, fold.index, result.state, card)
    records.save(fold.index, (result.epochs, result.thresholds), row, result.notes, saved)
    checkpoint.remove(ctx.folder.checkpoint(fold.index))
    log.info(
        "fold %d: best Dice %.4f at t=%.2f, threshold-averaged Dice %.4f (epoch %d)",
        fold.index,
        row[schema.BEST_DICE],
        row[schema.BEST_THRESHOLD],
        row[schema.THRESHOLD_AVERAGED_DICE],
        row[schema.EPOCH_SELECTED],
    )


def compute_group(
    setup: FoldSetup, ctx: RunContext, records: FoldRecords, folds: list[Fold]
) -> None:
    """Train ``folds`` (one, or several side by side: ``trainer.fold_group``) in this process,
    each under its own lock, unless it is finished or another process holds it; a fold is
    recorded, and its lock released, as soon as it finishes."""
    stale_s = setup.settings.runtime.lock_stale_s
    locks: dict[int, Lock] = {}
    try:
        for fold in folds:
            if (lock := claim_fold(ctx, records, fold, stale_s)) is not None:
                locks[fold.index] = lock

        def finished(fold: Fold, result: FoldResult) -> None:
            record_fold(setup, ctx, records, fold, result)
            locks.pop(fold.index).release()

        mine = [f for f in folds if f.index in locks]
        starts = [(f, ctx.folder.checkpoint(f.index), locks[f.index].refresh) for f in mine]
        if starts:
            fit_group(setup, starts, finished)
    finally:
        for lock in locks.values():
            lock.release()


def compute_folds(
    setup: FoldSetup, ctx: RunContext, records: FoldRecords, folds: list[Fold]
) -> None:
    """The unfinished ``folds``: one after another, or ``trainer.fold_group`` at a time."""
    group = setup.settings.trainer.fold_group
    if group < 1:
        raise ConfigError(f"trainer.fold_group={group}: train at least 1 fold at a time")
    todo = [fold for fold in folds if records.load(fold.index) is None]
    for start in range(0, len(todo), group):
        compute_group(setup, ctx, records, todo[start : start + group])


def assemble(ctx: RunContext, records: FoldRecords, n_folds: int, stale_s: float) -> dict[str, Any]:
    """Join the finished folds into the run's files; summary.json says ok once all are there."""
    with holding(ctx.folder.run_lock, stale_s):
        finished = {k: r for k in range(n_folds) if (r := records.load(k)) is not None}
        ctx.folder.remove_temporaries()
        if not finished:
            return {**ctx.columns, "status": "incomplete", "folds": 0}
        frames = [records.frames(k) for k in finished]
        fold_frame = pd.DataFrame([r["row"] for r in finished.values()])
        ctx.folder.write_results(
            pd.concat([f[0] for f in frames], ignore_index=True),
            pd.concat([f[1] for f in frames], ignore_index=True),
            fold_frame,
        )
        summary = {
            **ctx.columns,
            "status": "ok" if len(finished) == n_folds else "incomplete",
            "error": "",
            "folds": len(finished),
            schema.ZERO_GRADIENT: bool(fold_frame[schema.ZERO_GRADIENT].all()),
            "notes": sorted({note for r in finished.values() for note in r["notes"]}),
            **summary_numbers(fold_frame),
            **models.recorded_hashes(finished),
            "identity": ctx.identity,
            "provenance": {**provenance(ctx.device), **ctx.resolved},
            "fold_hardware": sorted(set(fold_frame.get("hardware", pd.Series()).dropna())),
        }
        if summary["status"] == "ok":
            ctx.folder.write_summary(summary)
    ctx.folder.remove_lock_folder()
    return summary


def train(cfg: DictConfig, run_dir: Path, label: str | None = None) -> dict[str, Any]:
    """Run the folds of one configuration (``trainer.fold``: only that one); returns the run's
    summary (as summary.json holds it once every fold is finished)."""
    validate(cfg)
    settings = run_settings(cfg)
    device, threads = configure_torch(settings.trainer)
    ctx = run_context(cfg, run_dir, label, device, threads)
    finished = ctx.folder.finished_summary(ctx.config_hash, ctx.identity)
    if finished is not None:
        log.info("skipped %s: finished already (summary.json says ok)", ctx.folder.path)
        return finished
    root = reuse.output_root(run_dir, ctx.label) if settings.runtime.reuse else None
    if root is not None:
        with_models = settings.runtime.save_models
        source = reuse.finished_elsewhere(
            root, ctx.folder, ctx.config_hash, ctx.identity, with_models
        )
        if source is not None:
            log.info("%s: reused the same run, finished in %s (runtime.reuse=false retrains)",
                     ctx.label, source.path)  # fmt: skip
            return reuse.copy_run(source, ctx.folder, ctx.label)
    if ctx.data_error is not None:
        raise ctx.data_error
    warn_if_superseding(ctx)
    data = load_dataset(cfg).on_device(device)
    validate_against_data(cfg, data.n_cases)
    head = build_head(_container(cfg.head), _container(cfg.activation))
    loss = instantiate_named(cfg.loss)
    listeners = monitor.epoch_listeners(cfg, ctx, data)  # log lines, estimates, logger=
    augment = build_augment(cfg)
    setup = FoldSetup(settings, data, head, loss, device, augment, ctx.config_hash, listeners)
    if settings.runtime.save_models:
        ctx = dataclasses.replace(ctx, card=models.run_card(setup, cfg))
    trainer = settings.trainer
    folds = case_folds(data.cases, trainer.folds, trainer.seed, trainer.shuffle_folds)
    log.info(
        "%s: %d images, %d cases, %d folds on %s",
        data.name,
        len(data),
        data.n_cases,
        len(folds),
        device,
    )
    records = FoldRecords(ctx.folder, ctx.config_hash)
    compute_folds(setup, ctx, records, folds if trainer.fold is None else [folds[trainer.fold]])
    ctx.folder.write_splits(data.cases, folds, trainer.seed, trainer.shuffle_folds)
    summary = assemble(ctx, records, len(folds), settings.runtime.lock_stale_s)
    if summary["status"] == "ok":
        reuse.record(root, ctx.folder, ctx.config_hash)
    else:
        log.info("%s: %d of %d folds finished so far", run_dir, summary["folds"], len(folds))
    return summary


def warn_if_superseding(ctx: RunContext) -> None:
    old = ctx.folder.superseded_identity(ctx.config_hash)
    if old is not None:
        changed = run_identity.differing_keys(old, ctx.identity)
        log.warning(
            "%s holds a finished run of another configuration (differs in %s); computing the "
            "new one in its place",
            ctx.folder.path,
            ", ".join(changed) or "settings not recorded",
        )


def record_failure(
    cfg: DictConfig, run_dir: Path, label: str | None, error: BaseException
) -> dict[str, Any]:
    """summary.json says failed, and folds.csv gains a failed row, so reports list the run."""
    try:
        keys = run_identity.run_keys(cfg)
    except Exception:  # the config itself may be what is broken
        keys = {}
    keys["run_dir"] = label or Path(run_dir).name
    summary = {
        **keys,
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "error_kind": "input" if isinstance(error, ConfigError) else "crash",
        "epoch": getattr(error, "epoch", None),
        "traceback": traceback.format_exc(limit=-8),
    }
    RunFolder(run_dir).write_failure(summary, keys)
    return summary


def refused_folder(run_dir: Path) -> str | None:
    """Why ``run_dir`` is no folder for a run (it holds files segact did not write), or None."""
    foreign = RunFolder(run_dir).foreign_entries()
    if not foreign:
        return None
    return (
        f"{run_dir} holds files segact did not write ({', '.join(foreign[:5])}): choose "
        "another hydra.run.dir (or sweep folder), or move them away"
    )


def run(
    cfg: DictConfig, run_dir: Path, label: str | None = None, raise_errors: bool = True
) -> dict[str, Any]:
    """``train`` with failures recorded, and logged, so that a sweep (raise_errors=False) goes on
    and its report lists them (bad config or data too). A single run (raise_errors=True) raises
    for its caller to report, once, and records failures other than bad config or data (a
    ConfigError: the caller removes the folder it made for the run). An interrupt is no
    failure: the checkpoint is kept for the next start."""
    started = time.perf_counter()
    message = refused_folder(run_dir)
    if message is not None:  # nothing may be written there, not even the failure
        if raise_errors:
            raise ConfigError(message)
        log.error("run refused: %s", message)
        return {"status": "refused", "error": message, schema.WALL_SECONDS: 0.0}
    try:
        summary = train(cfg, run_dir, label)
    except Exception as error:
        if raise_errors and isinstance(error, ConfigError):
            raise  # a single run's bad config or data: the caller says so; nothing is recorded
        try:
            summary = record_failure(cfg, run_dir, label, error)
        except OSError:  # e.g. the disk is still full: the cause to report is the first error
            raise error from None
        if raise_errors:
            raise  # the caller reports it, once
        log.error("run failed: %s", summary["error"])
    summary[schema.WALL_SECONDS] = time.perf_counter() - started
    return summary
