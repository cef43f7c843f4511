"""Hydra callback: when a multirun ends, gather its runs into one CSV, log the Dice table, and
make the sweep's exit status non-zero when any of its runs failed."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from segact.io import write_csv
from segact.report import tables
from segact.runs import results
from segact.runs.folder import SWEEP_FOLDS_CSV

log = logging.getLogger(__name__)

FAILED_EXIT_CODE = 1


class SweepEnd(Callback):
    """Hydra's ``on_multirun_end``: sweep_folds.csv, the Dice table, the exit status."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        folds = results.collect_sweep(sweep_dir)
        if folds.empty:
            log.warning("no finished runs under %s", sweep_dir)
            return
        # run_path is this machine's absolute path: the file keeps run_dir (relative) only.
        write_csv(folds.drop(columns="run_path", errors="ignore"), sweep_dir / SWEEP_FOLDS_CSV)
        ok = folds[folds["status"] == "ok"]
        failed = folds[folds["status"] != "ok"]
        log.info("sweep %s: %d fold results, %s written", sweep_dir, len(folds), SWEEP_FOLDS_CSV)
        if not ok.empty:
            log.info("\n%s", tables.format_table(tables.dice_table(ok)))
        if failed.empty:
            return
        errors = failed.groupby("run_dir")["error"].first()
        lines = "\n".join(f"  {run}: {error}" for run, error in errors.items())
        log.error(
            "%d failed run(s); run the same command again to retry them:\n%s", len(errors), lines
        )
        sys.exit(FAILED_EXIT_CODE)
