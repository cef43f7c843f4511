"""Hydra callback: when a multirun ends, gather its runs into one CSV and print the Dice table."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from segact import report
from segact.io import write_csv

log = logging.getLogger(__name__)

SWEEP_CSV = "sweep_folds.csv"


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        folds = report.collect_sweep(sweep_dir)
        if folds.empty:
            log.warning("no finished runs under %s", sweep_dir)
            return
        write_csv(folds, sweep_dir / SWEEP_CSV)
        failed = folds[folds["status"] != "ok"] if "status" in folds.columns else folds.iloc[:0]
        print(f"\nSweep {sweep_dir} ({len(folds)} fold results, {SWEEP_CSV} written)")
        print(report.format_table(report.dice_table(folds)))
        if not failed.empty:
            print(f"\n{failed['run_dir'].nunique()} failed run(s):")
            for run_dir, error in failed.groupby("run_dir")["error"].first().items():
                print(f"  {run_dir}: {error}")
