"""``segact-train``: compose the config (Hydra), run it, and say how it went.

One job is one run (``segact.runs.runner``); a multirun's end is ``segact.report.sweep_callback``.
Bad input is one line and exit 2; Ctrl-C saves a checkpoint and exits 130.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from segact.config import ConfigError, config_dir
from segact.report.tables import dice_table, format_table
from segact.runs.folder import RunFolder, read_result_csv
from segact.runs.runner import run
from segact.training.interrupt import Interrupted

log = logging.getLogger("segact")


def _label(run_dir: Path) -> str:
    """The run folder relative to its sweep folder (multirun) or its outputs/ folder."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return os.path.relpath(run_dir, hydra_cfg.sweep.dir)
    return hydra_cfg.sweep.subdir if hydra_cfg.sweep.subdir else run_dir.name


def log_finished(run_dir: Path, summary: dict) -> None:
    """A finished run's Dice table and notes."""
    if summary.get("status") != "ok":
        return
    folds = read_result_csv(RunFolder(run_dir).folds_csv)
    log.info("%s\n%s", run_dir, format_table(dice_table(folds)))
    for note in summary.get("notes", []):
        log.warning("NOTE: %s", note)


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
    log_finished(run_dir, summary)
    return summary.get("mean_dice_mean")


if __name__ == "__main__":
    main()
