"""Run folders with hand-chosen numbers (folds, thresholds, summary) for the report, results,
tables and statistics tests, written through ``segact.runs.folder`` as the runner writes them:
every number is chosen here, no model is trained."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from segact.runs.folder import RunFolder
from segact.runs.identity import config_hash

SIGMOID = [0.70, 0.72, 0.68, 0.75, 0.71]
ARCTAN = [0.69, 0.73, 0.65, 0.72, 0.66]
THRESHOLDS = (0.0, 0.5, 1.0)
KEYS: dict[str, Any] = {
    "experiment": "toy",
    "dataset": "toy",
    "arch": "Unet",
    "encoder": "resnet18",
    "head": "sigmoid1",
    "loss": "dice",
    "binarize": "none",
    "protocol": "paper",
    "max_epochs": 10,
    "batch_size": 4,
}


def fold_rows(keys: dict[str, Any], best_dice: Sequence[float], status: str) -> list[dict]:
    """folds.csv rows: best Dice as given, the other metrics derived from it; a failed row has
    no metrics, as the runner writes it."""
    if status != "ok":
        return [{**keys, "fold": 0, "status": status, "error": "RuntimeError: boom"}]
    return [
        {
            **keys,
            "fold": fold,
            "status": status,
            "error": "",
            "best_dice": dice,
            "threshold_averaged_dice": dice - 0.1,
            "best_threshold": 0.5,
            "nll": 1 - dice,
            "paper_best_dice": dice + 0.01,
            "paper_threshold_averaged_dice": dice - 0.05,
            "paper_nll": 0.9 - dice,
            "hit_max_epochs": False,
            "degenerate": False,
            "zero_gradient": False,
        }
        for fold, dice in enumerate(best_dice)
    ]


def threshold_rows(best_dice: Sequence[float]) -> pd.DataFrame:
    """thresholds.csv: pooled counts per fold x threshold; Dice = best Dice - 0.2 (1 - t)."""
    return pd.DataFrame(
        [
            {
                "fold": fold,
                "threshold": t,
                "tp": 100 - 50 * t,
                "fp": 100 - 90 * t,
                "fn": 50 * t,
                "tn": 900 + 90 * t,
                "dice": dice - 0.2 * (1 - t),
                "mean_nll_tp": 0.1,
            }
            for fold, dice in enumerate(best_dice)
            for t in THRESHOLDS
        ]
    )


def write_run(
    root: Path,
    activation: str,
    best_dice: Sequence[float],
    *,
    seed: int = 0,
    status: str = "ok",
    settings: dict[str, Any] | None = None,
    keys: dict[str, Any] | None = None,
    folder: str | None = None,
    overrides: dict[int, dict[str, Any]] | None = None,
) -> Path:
    """One run folder below ``root``: ``settings`` are extra identity keys (``trainer.lr``...),
    ``keys`` replace folds.csv columns, ``overrides`` replace values in single folds' rows."""
    settings = settings or {}
    keys = {**KEYS, **(keys or {}), "activation": activation, "seed": seed}
    identity = {
        "activation.name": activation,
        "dataset.name": keys["dataset"],
        "loss.name": keys["loss"],
        "trainer.seed": seed,
        "trainer.lr": 0.001,
        "eval.thresholds": list(THRESHOLDS),
        **settings,
    }
    run = root / (folder or f"{activation}-{config_hash(identity)[:6]}-seed{seed}")
    run.mkdir(parents=True)
    keys = {**keys, "lr": identity["trainer.lr"], "config_hash": config_hash(identity)}
    keys["run_dir"] = str(run.relative_to(root))
    rows = fold_rows(keys, best_dice, status)
    for fold, values in (overrides or {}).items():
        rows[fold].update(values)
    folder = RunFolder(run)
    folder.write_folds(pd.DataFrame(rows))
    if status == "ok":
        folder.write_thresholds(threshold_rows(best_dice))
    folder.write_summary(
        {"status": status, "config_hash": config_hash(identity), "identity": identity}
    )
    return run


def write_sweep(root: Path) -> Path:
    """sigmoid and arctan (5 folds each) and a failed hardtanh run (one row)."""
    write_run(root, "sigmoid", SIGMOID)
    write_run(root, "arctan", ARCTAN)
    write_run(root, "hardtanh", [0.1], status="failed")
    return root


def write_two_settings(
    root: Path,
    key: str,
    values: Sequence[Any],
    shifts: Sequence[float] = (0.0, -0.1),
    keys: dict[str, Any] | None = None,
) -> Path:
    """sigmoid and arctan runs (SIGMOID, ARCTAN plus the value's shift) at each value of the
    identity setting ``key``: two kinds of run the report must not merge."""
    for value, shift in zip(values, shifts, strict=True):
        for activation, dice in (("sigmoid", SIGMOID), ("arctan", ARCTAN)):
            values_shifted = [x + shift for x in dice]
            write_run(root, activation, values_shifted, settings={key: value}, keys=keys)
    return root


def write_mixed_sweeps(root: Path, bce_size: int = 32) -> Path:
    """Two sweeps into one folder, as a new user makes them: sigmoid and arctan with the Dice
    loss at 48 px for at most 3 epochs, then with BCE at ``bce_size`` px for at most 2."""
    for loss, size, epochs in (("dice", 48, 3), ("bce", bce_size, 2)):
        for activation, dice in (("sigmoid", SIGMOID), ("arctan", ARCTAN)):
            write_run(
                root,
                activation,
                dice,
                keys={"loss": loss, "max_epochs": epochs},
                settings={"dataset.image_size": size, "trainer.max_epochs": epochs},
                overrides={fold: {"epochs_run": epochs - fold % 2} for fold in range(len(dice))},
            )
    return root
