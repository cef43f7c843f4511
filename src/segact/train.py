"""``segact-train``: compose the config, check it, train every fold, write the result files.

Outputs of a run (DESIGN.md): epochs.csv, thresholds.csv, folds.csv and summary.json, each
written atomically and refreshed after every fold so a crash loses at most the fold in flight.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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

from segact import checkpoint, report
from segact.config import ConfigError, instantiate_named, validate, validate_against_data
from segact.data.base import SegmentationData
from segact.data.splits import case_folds
from segact.engine import ZERO_GRADIENT_MESSAGE, Augment, fit_fold, resolve_device
from segact.heads import build_head
from segact.io import read_json, write_csv, write_json

log = logging.getLogger("segact")


def config_dir() -> Path:
    """configs/ inside an installed wheel, else the repository's top-level configs/."""
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "configs"


def run_keys(cfg: DictConfig) -> dict[str, Any]:
    """The run's choices, as columns of every result row."""
    return {
        "experiment": cfg.get("experiment_name", "default"),
        "dataset": cfg.dataset.name,
        "arch": cfg.model.arch,
        "encoder": cfg.model.encoder,
        "head": cfg.head.name,
        "activation": cfg.activation.name,
        "loss": cfg.loss.name,
        "binarize": cfg.loss.get("binarize", "none"),
        "protocol": cfg.eval.protocol,
        "seed": int(cfg.trainer.seed),
        "max_epochs": int(cfg.trainer.max_epochs),
        "lr": float(cfg.trainer.lr),
        "batch_size": int(cfg.trainer.batch_size),
    }


UNFINGERPRINTED = {
    "trainer": ("progress", "threads", "checkpoint_every_s"),
    "": ("experiment_name",),
}
"""Keys that change neither the numbers nor the run directory's meaning."""


def threads_per_job(n_jobs: int) -> int:
    """Torch threads per job when ``n_jobs`` run side by side (joblib's n_jobs < 1: one each)."""
    return max(1, len(os.sched_getaffinity(0)) // n_jobs) if n_jobs > 0 else 1


OmegaConf.register_new_resolver("threads_per_job", threads_per_job, replace=True)


def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of the resolved config: results and checkpoints are reused only under the same one
    (the directory name holds only the command line's choices, not edits to the YAML files)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for section, keys in UNFINGERPRINTED.items():
        node = container.get(section, {}) if section else container
        for key in keys:
            node.pop(key, None)
    text = json.dumps(container, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finished_summary(run_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The run's summary.json if it says ok and was written under the same config."""
    path = run_dir / "summary.json"
    try:
        summary = read_json(path)
    except (OSError, ValueError):
        return None
    if summary.get("status") == "ok" and summary.get("config_hash") == fingerprint:
        return summary
    return None


@dataclasses.dataclass
class _Outputs:
    """The run's three tables, grown fold by fold and rewritten after each fold."""

    epochs: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    thresholds: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    folds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def finished(cls, run_dir: Path, fingerprint: str) -> _Outputs:
        """Folds an interrupted run already finished under the same config."""
        try:
            tables = {
                name: pd.read_csv(run_dir / f"{name}.csv")
                for name in ("folds", "epochs", "thresholds")
            }
            folds = tables["folds"]
            done = folds[(folds["status"] == "ok") & (folds["config_hash"] == fingerprint)]
        except (OSError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
            return cls()
        if done.empty:
            return cls()
        epochs, thresholds = (
            tables[name][tables[name]["fold"].isin(done["fold"])]
            for name in ("epochs", "thresholds")
        )
        notes = [ZERO_GRADIENT_MESSAGE] if done["zero_gradient"].any() else []
        return cls([epochs], [thresholds], done.to_dict("records"), notes)

    @property
    def fold_indices(self) -> set[int]:
        return {int(row["fold"]) for row in self.folds}

    def add(self, result: Any, row: dict[str, Any], run_dir: Path) -> None:
        self.epochs.append(result.epochs)
        self.thresholds.append(result.thresholds)
        self.folds.append(row)
        self.notes.extend(n for n in result.notes if n not in self.notes)
        write_csv(pd.concat(self.epochs, ignore_index=True), run_dir / "epochs.csv")
        write_csv(pd.concat(self.thresholds, ignore_index=True), run_dir / "thresholds.csv")
        write_csv(pd.DataFrame(self.folds), run_dir / "folds.csv")


def configure_torch(cfg: DictConfig) -> torch.device:
    threads = cfg.trainer.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return resolve_device(cfg.trainer.device)


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


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run every fold of one configuration; returns the run's summary.

    A run whose summary.json says ok (under the same config) is skipped; an interrupted one keeps
    its finished folds and resumes the fold in flight from its last epoch checkpoint.
    """
    run_dir = Path(run_dir)
    fingerprint = config_fingerprint(cfg)
    finished = finished_summary(run_dir, fingerprint)
    if finished is not None:
        print(f"skipped {run_dir}: finished already (summary.json says ok)")
        return finished
    validate(cfg)
    device = configure_torch(cfg)
    data = load_dataset(cfg)
    validate_against_data(cfg, data.n_cases)
    head = build_head(cfg.head, cfg.activation)
    loss_fn = instantiate_named(cfg.loss)
    augment = build_augment(cfg)
    keys = {**run_keys(cfg), "run_dir": str(run_dir), "config_hash": fingerprint}
    folds = case_folds(data.cases, cfg.trainer.folds, cfg.trainer.seed)
    log.info(
        "%s: %d images, %d cases, %d folds on %s",
        data.name,
        len(data),
        data.n_cases,
        len(folds),
        device,
    )

    outputs = _Outputs.finished(run_dir, fingerprint)
    if outputs.folds:
        log.info("resuming %s: folds %s finished already", run_dir, sorted(outputs.fold_indices))
    for fold in folds:
        if fold.index in outputs.fold_indices:
            continue
        saved = checkpoint.fold_checkpoint(run_dir, fold.index)
        result = fit_fold(cfg, data, fold, head, loss_fn, device, augment, saved, fingerprint)
        row = {**keys, "fold": fold.index, **result.summary, "status": "ok", "error": ""}
        outputs.add(result, row, run_dir)
        checkpoint.remove(saved)
        log.info(
            "fold %d: best Dice %.4f at t=%.2f, mean Dice %.4f (epoch %d)",
            fold.index,
            result.summary["best_dice"],
            result.summary["best_threshold"],
            result.summary["mean_dice"],
            result.summary["epoch_selected"],
        )

    fold_frame = pd.DataFrame(outputs.folds)
    notes = outputs.notes
    summary = {
        **keys,
        "status": "ok",
        "error": "",
        "folds": len(fold_frame),
        "zero_gradient": bool(fold_frame["zero_gradient"].all()),
        "notes": notes,
        **report.summarize_numbers(fold_frame),
    }
    write_json(summary, run_dir / "summary.json")
    print(f"\n{run_dir}")
    print(report.format_table(report.dice_table(fold_frame)))
    for note in notes:
        print(f"NOTE: {note}")
    return summary


def record_failure(cfg: DictConfig, run_dir: Path, error: BaseException) -> dict[str, Any]:
    """summary.json says failed, and folds.csv gains a failed row, so reports list the run."""
    try:
        keys = run_keys(cfg)
    except Exception:  # the config itself may be what is broken
        keys = {}
    keys["run_dir"] = str(run_dir)
    message = f"{type(error).__name__}: {error}"
    summary = {
        **keys,
        "status": "failed",
        "error": message,
        "epoch": getattr(error, "epoch", None),
        "traceback": traceback.format_exc(limit=-8),
    }
    write_json(summary, run_dir / "summary.json")
    folds_path = run_dir / "folds.csv"
    previous = pd.read_csv(folds_path) if folds_path.exists() else pd.DataFrame()
    if "status" in previous.columns:  # a retried run: drop the failed row of the last attempt
        previous = previous[previous["status"] == "ok"]
    failed_row = pd.DataFrame(
        [
            {
                **keys,
                "fold": len(previous),
                "status": "failed",
                "error": message,
                "failed_epoch": summary["epoch"],
            }
        ]
    )
    write_csv(pd.concat([previous, failed_row], ignore_index=True), folds_path)
    return summary


def run(cfg: DictConfig, run_dir: Path, raise_errors: bool = True) -> dict[str, Any]:
    """``train`` with failures recorded; in a sweep (raise_errors=False) the sweep goes on."""
    started = time.perf_counter()
    try:
        summary = train(cfg, run_dir)
    except Exception as error:
        summary = record_failure(cfg, run_dir, error)
        log.error("run failed: %s", summary["error"])
        if raise_errors:
            raise
    summary["wall_seconds"] = time.perf_counter() - started
    return summary


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, run_dir, raise_errors=not _is_multirun())
    except ConfigError as error:
        print(f"segact: error: {error}", file=sys.stderr)
        sys.exit(2)
    return summary.get("mean_dice_mean")


if __name__ == "__main__":
    main()
