"""``segact-train``: compose the config, check it, train every fold, write the result files.

Outputs of a run (DESIGN.md): epochs.csv, thresholds.csv, folds.csv and summary.json, each
written atomically. Each finished fold is first kept in ``parts/`` (its row, epochs and
thresholds), so a crash loses at most the fold in flight, and folds computed by separate jobs
(``trainer.fold=k``) or by two processes sharing a sweep join into the same run files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from segact import checkpoint, runs, tables
from segact.config import (
    ConfigError,
    config_dir,
    instantiate_named,
    validate,
    validate_against_data,
)
from segact.data.base import SegmentationData
from segact.data.splits import Fold, case_folds
from segact.engine import FoldResult, FoldSetup, fit_fold, resolve_device
from segact.fitting import Augment
from segact.heads import build_head
from segact.interrupt import Interrupted
from segact.io import read_json, remove_temporaries_of, write_csv, write_json

log = logging.getLogger("segact")

PARTS_DIR = "parts"


def threads_per_job(n_jobs: int) -> int:
    """Torch threads per job when ``n_jobs`` run side by side (joblib's n_jobs < 1: one each)."""
    return max(1, len(os.sched_getaffinity(0)) // n_jobs) if n_jobs > 0 else 1


OmegaConf.register_new_resolver("threads_per_job", threads_per_job, replace=True)


def configure_torch(cfg: DictConfig) -> tuple[torch.device, int]:
    threads = cfg.trainer.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return resolve_device(cfg.trainer.device), threads


def load_dataset(cfg: DictConfig) -> SegmentationData:
    try:
        data = instantiate_named(cfg.dataset)
    except InstantiationException as error:  # a loader's ConfigError (bad input) stays one
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise
    return dataclasses.replace(data, name=cfg.dataset.name)


def build_augment(cfg: DictConfig) -> Augment | None:
    """The training-batch augmentation of ``augment=``; ``none`` (no _target_) means none."""
    augment_cfg = cfg.get("augment")
    if augment_cfg is None or "_target_" not in augment_cfg:
        return None
    return instantiate_named(augment_cfg)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Where a run writes and what identifies it."""

    run_dir: Path
    label: str  # the run folder relative to its sweep folder
    identity: dict[str, Any]
    fingerprint: str
    keys: dict[str, Any]

    @property
    def columns(self) -> dict[str, Any]:
        return {**self.keys, "run_dir": self.label, "config_hash": self.fingerprint}


class FoldParts:
    """Finished folds of a run, one set of files each in ``parts/``: ``fold<k>.json`` (the fold's
    row and notes, written last), ``fold<k>.epochs.csv`` and ``fold<k>.thresholds.csv``."""

    def __init__(self, run_dir: Path, fingerprint: str) -> None:
        self.folder = Path(run_dir) / PARTS_DIR
        self.fingerprint = fingerprint

    def _path(self, fold: int, kind: str) -> Path:
        return self.folder / f"fold{fold}.{kind}"

    def load(self, fold: int) -> dict[str, Any] | None:
        """The fold's record if it finished under this identity and its files are intact."""
        try:
            record = read_json(self._path(fold, "json"))
            intact = all(
                runs.file_digest(self._path(fold, f"{kind}.csv")) == record["sha256"][kind]
                for kind in ("epochs", "thresholds")
            )
        except (OSError, ValueError, KeyError):
            return None
        return record if intact and record.get("config_hash") == self.fingerprint else None

    def save(self, fold: int, result: FoldResult, row: dict[str, Any]) -> None:
        digests = {}
        for kind, frame in (("epochs", result.epochs), ("thresholds", result.thresholds)):
            write_csv(frame, self._path(fold, f"{kind}.csv"))
            digests[kind] = runs.file_digest(self._path(fold, f"{kind}.csv"))
        record = {"config_hash": self.fingerprint, "row": row, "notes": result.notes}
        write_json({**record, "sha256": digests}, self._path(fold, "json"))

    def frames(self, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        return tuple(
            pd.read_csv(self._path(fold, f"{kind}.csv")) for kind in ("epochs", "thresholds")
        )


def compute_fold(setup: FoldSetup, ctx: RunContext, parts: FoldParts, fold: Fold) -> bool:
    """Train ``fold`` unless it is finished or another process holds it; True if it ran."""
    stale_s = float(setup.cfg.runtime.lock_stale_s)
    lock = runs.acquire(runs.fold_lock_path(ctx.run_dir, fold.index), stale_s)
    if lock is None:
        log.info(
            "fold %d of %s is being computed by another process: skipped", fold.index, ctx.label
        )
        return False
    try:
        if parts.load(fold.index) is not None:  # finished while we waited for the lock
            return False
        saved = checkpoint.fold_checkpoint(ctx.run_dir, fold.index)
        result = fit_fold(setup, fold, saved, heartbeat=lock.refresh)
        row = {**ctx.columns, "fold": fold.index, **result.summary, "status": "ok", "error": ""}
        parts.save(fold.index, result, row)
        checkpoint.remove(saved)
    finally:
        lock.release()
    log.info(
        "fold %d: best Dice %.4f at t=%.2f, mean Dice %.4f (epoch %d)",
        fold.index,
        row["best_dice"],
        row["best_threshold"],
        row["mean_dice"],
        row["epoch_selected"],
    )
    return True


def assemble(ctx: RunContext, parts: FoldParts, n_folds: int, stale_s: float) -> dict[str, Any]:
    """Join the finished folds into the run's files; summary.json says ok once all are there."""
    with runs.holding(runs.run_lock_path(ctx.run_dir), stale_s):
        records = {k: r for k in range(n_folds) if (r := parts.load(k)) is not None}
        frames = [parts.frames(k) for k in records]
        names = ("epochs.csv", "thresholds.csv", "folds.csv")
        for name in (*names, runs.SUMMARY_FILE):
            remove_temporaries_of(ctx.run_dir / name)
        if not records:
            return {**ctx.columns, "status": "incomplete", "folds": 0}
        fold_frame = pd.DataFrame([r["row"] for r in records.values()])
        tables_out = (
            pd.concat([f[0] for f in frames], ignore_index=True),
            pd.concat([f[1] for f in frames], ignore_index=True),
            fold_frame,
        )
        for name, frame in zip(names, tables_out, strict=True):
            write_csv(frame, ctx.run_dir / name)
        notes = sorted({note for r in records.values() for note in r["notes"]})
        summary = {
            **ctx.columns,
            "status": "ok" if len(records) == n_folds else "incomplete",
            "error": "",
            "folds": len(records),
            "zero_gradient": bool(fold_frame["zero_gradient"].all()),
            "notes": notes,
            **tables.summarize_numbers(fold_frame),
            "identity": ctx.identity,
        }
        if summary["status"] == "ok":
            summary["files"] = runs.file_records(ctx.run_dir)
            write_json(summary, ctx.run_dir / runs.SUMMARY_FILE)
    with contextlib.suppress(OSError):  # other processes may still hold locks there
        (ctx.run_dir / runs.LOCK_FOLDER).rmdir()
    return summary


def run_context(
    cfg: DictConfig, run_dir: Path, label: str | None, device: torch.device, threads: int
) -> RunContext:
    identity = runs.identity(cfg, device.type, threads)
    fingerprint = runs.config_hash(identity)
    return RunContext(
        Path(run_dir), label or Path(run_dir).name, identity, fingerprint, runs.run_keys(cfg)
    )


def train(cfg: DictConfig, run_dir: Path, label: str | None = None) -> dict[str, Any]:
    """Run the folds of one configuration (``trainer.fold``: only that one); returns the summary.

    A run whose summary.json says ok (same identity, files intact) is skipped; an interrupted one
    keeps its finished folds and resumes the fold in flight from its last checkpoint.
    """
    validate(cfg)
    device, threads = configure_torch(cfg)
    ctx = run_context(cfg, run_dir, label, device, threads)
    finished = runs.finished_summary(ctx.run_dir, ctx.fingerprint, ctx.identity)
    if finished is not None:
        log.info("skipped %s: finished already (summary.json says ok)", ctx.run_dir)
        return finished
    warn_if_superseding(ctx)
    data = load_dataset(cfg).on_device(device)
    validate_against_data(cfg, data.n_cases)
    head = build_head(cfg.head, cfg.activation)
    setup = FoldSetup(
        cfg, data, head, instantiate_named(cfg.loss), device, build_augment(cfg), ctx.fingerprint
    )
    trainer = cfg.trainer
    folds = case_folds(data.cases, trainer.folds, trainer.seed, trainer.shuffle_folds)
    log.info(
        "%s: %d images, %d cases, %d folds on %s",
        data.name,
        len(data),
        data.n_cases,
        len(folds),
        device,
    )
    parts = FoldParts(ctx.run_dir, ctx.fingerprint)
    for fold in folds if trainer.fold is None else [folds[trainer.fold]]:
        if parts.load(fold.index) is None:
            compute_fold(setup, ctx, parts, fold)
    summary = assemble(ctx, parts, len(folds), float(cfg.runtime.lock_stale_s))
    if summary["status"] == "ok":
        finished_rows = pd.read_csv(ctx.run_dir / "folds.csv")
        log.info("%s\n%s", ctx.run_dir, tables.format_table(tables.dice_table(finished_rows)))
        for note in summary["notes"]:
            log.warning("NOTE: %s", note)
    else:
        log.info("%s: %d of %d folds finished so far", ctx.run_dir, summary["folds"], len(folds))
    return summary


def warn_if_superseding(ctx: RunContext) -> None:
    old = runs.superseded_identity(ctx.run_dir, ctx.fingerprint)
    if old is not None:
        changed = runs.differing_keys(old, ctx.identity)
        log.warning(
            "%s holds a finished run of another configuration (differs in %s); computing the "
            "new one in its place",
            ctx.run_dir,
            ", ".join(changed) or "settings not recorded",
        )


def record_failure(
    cfg: DictConfig, run_dir: Path, label: str | None, error: BaseException
) -> dict[str, Any]:
    """summary.json says failed, and folds.csv gains a failed row, so reports list the run."""
    try:
        keys = runs.run_keys(cfg)
    except Exception:  # the config itself may be what is broken
        keys = {}
    keys["run_dir"] = label or Path(run_dir).name
    message = f"{type(error).__name__}: {error}"
    summary = {
        **keys,
        "status": "failed",
        "error": message,
        "epoch": getattr(error, "epoch", None),
        "traceback": traceback.format_exc(limit=-8),
    }
    write_json(summary, Path(run_dir) / runs.SUMMARY_FILE)
    folds_path = Path(run_dir) / "folds.csv"
    previous = pd.read_csv(folds_path) if folds_path.exists() else pd.DataFrame()
    if "status" in previous.columns:  # a retried run: drop the failed row of the last attempt
        previous = previous[previous["status"] == "ok"]
    failed_row = {**keys, "fold": len(previous), "status": "failed", "error": message}
    failed_row["failed_epoch"] = summary["epoch"]
    write_csv(pd.concat([previous, pd.DataFrame([failed_row])], ignore_index=True), folds_path)
    return summary


def run(
    cfg: DictConfig, run_dir: Path, label: str | None = None, raise_errors: bool = True
) -> dict[str, Any]:
    """``train`` with failures recorded (bad config or data too); in a sweep (raise_errors=False)
    the sweep goes on. An interrupt is no failure: the checkpoint is kept for the next start."""
    started = time.perf_counter()
    try:
        summary = train(cfg, run_dir, label)
    except Exception as error:
        summary = record_failure(cfg, run_dir, label, error)
        log.error("run failed: %s", summary["error"])
        if raise_errors:
            raise
    summary["wall_seconds"] = time.perf_counter() - started
    return summary


def _label(run_dir: Path) -> str:
    """The run folder relative to its sweep folder (multirun) or its outputs/ folder."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return os.path.relpath(run_dir, hydra_cfg.sweep.dir)
    return hydra_cfg.sweep.subdir if hydra_cfg.sweep.subdir else run_dir.name


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        summary = run(cfg, run_dir, _label(run_dir), raise_errors=not multirun)
    except ConfigError as error:
        print(f"segact: error: {error}", file=sys.stderr)
        sys.exit(2)
    except (Interrupted, KeyboardInterrupt):
        print("segact: interrupted; run the same command to resume", file=sys.stderr)
        sys.exit(130)
    return summary.get("mean_dice_mean")


if __name__ == "__main__":
    main()
