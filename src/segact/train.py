"""``segact-train``: compose the config, check it, train every fold, write the result files.

Outputs of a run (DESIGN.md): epochs.csv, thresholds.csv, folds.csv and summary.json, each
written atomically and refreshed after every fold so a crash loses at most the fold in flight.
"""

from __future__ import annotations

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
from hydra.types import RunMode
from omegaconf import DictConfig

from segact import report
from segact.config import ConfigError, instantiate_named, validate, validate_against_data
from segact.data.base import SegmentationData
from segact.data.splits import case_folds
from segact.engine import Augment, fit_fold, resolve_device
from segact.heads import build_head
from segact.io import write_csv, write_json

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


def configure_torch(cfg: DictConfig) -> torch.device:
    threads = cfg.trainer.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return resolve_device(cfg.trainer.device)


def load_dataset(cfg: DictConfig) -> SegmentationData:
    data = instantiate_named(cfg.dataset)
    return dataclasses.replace(data, name=cfg.dataset.name)


def build_augment(cfg: DictConfig) -> Augment | None:
    """The training-batch augmentation of ``augment=``; ``none`` (no _target_) means none."""
    augment_cfg = cfg.get("augment")
    if augment_cfg is None or "_target_" not in augment_cfg:
        return None
    return instantiate_named(augment_cfg)


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run every fold of one configuration; returns the run's summary."""
    run_dir = Path(run_dir)
    validate(cfg)
    device = configure_torch(cfg)
    data = load_dataset(cfg)
    validate_against_data(cfg, data.n_cases)
    head = build_head(cfg.head, cfg.activation)
    loss_fn = instantiate_named(cfg.loss)
    augment = build_augment(cfg)
    keys = {**run_keys(cfg), "run_dir": str(run_dir)}
    folds = case_folds(data.cases, cfg.trainer.folds, cfg.trainer.seed)
    log.info(
        "%s: %d images, %d cases, %d folds on %s",
        data.name,
        len(data),
        data.n_cases,
        len(folds),
        device,
    )

    epoch_tables, threshold_tables, fold_rows, notes = [], [], [], []
    for fold in folds:
        result = fit_fold(cfg, data, fold, head, loss_fn, device, augment)
        epoch_tables.append(result.epochs)
        threshold_tables.append(result.thresholds)
        fold_rows.append(
            {**keys, "fold": fold.index, **result.summary, "status": "ok", "error": ""}
        )
        notes.extend(n for n in result.notes if n not in notes)
        write_csv(pd.concat(epoch_tables, ignore_index=True), run_dir / "epochs.csv")
        write_csv(pd.concat(threshold_tables, ignore_index=True), run_dir / "thresholds.csv")
        write_csv(pd.DataFrame(fold_rows), run_dir / "folds.csv")
        log.info(
            "fold %d: best Dice %.4f at t=%.2f, mean Dice %.4f (epoch %d)",
            fold.index,
            result.summary["best_dice"],
            result.summary["best_threshold"],
            result.summary["mean_dice"],
            result.summary["epoch_selected"],
        )

    fold_frame = pd.DataFrame(fold_rows)
    summary = {
        **keys,
        "status": "ok",
        "error": "",
        "folds": len(fold_rows),
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
    failed_row = pd.DataFrame(
        [{**keys, "fold": len(previous), "status": "failed", "error": message}]
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
