"""Hydra callback: when a multirun ends, gather its runs into one CSV, log the Dice table, and
make the sweep's exit status non-zero when any of its runs failed: 2 when every failure is bad
input (a config key or the data: the same command fails again until it is fixed), 1 otherwise
(a crash, which running the same command again retries)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from segact.io import write_csv
from segact.report import tables
from segact.runs import results
from segact.runs.folder import MODELS_DIR, SWEEP_FOLDS_CSV, run_folders

log = logging.getLogger(__name__)

INPUT_EXIT_CODE = 2
CRASH_EXIT_CODE = 1
ADVICE = {
    "input": "fix the config key or the data it names, then run the same command again",
    "crash": "run the same command again to retry (finished runs are kept)",
}


def failed_runs(sweep_dir: Path) -> pd.DataFrame:
    """The failed row of each failed run (its folds.csv as written, ``run_dir`` relative to the
    sweep) with ``kind`` from its summary.json: read without the range checks of result files,
    which are for metrics, not a failed run's settings (``trainer.lr=-1``)."""
    rows = []
    for run in run_folders(sweep_dir):
        summary = run.read_summary()
        if summary.get("status") != "failed":
            continue
        written = pd.read_csv(run.folds_csv)
        row = written[written["status"] == "failed"].tail(1)
        label = str(run.path.relative_to(sweep_dir))
        rows.append(row.assign(run_dir=label, kind=summary.get("error_kind", "crash")))
    columns = ["run_dir", "error", "kind"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def saved_models(sweep_dir: Path) -> tuple[int, int]:
    """How many fold models the sweep's runs keep (``runtime.save_models``), and the bytes of
    their files (weights and cards)."""
    files = [p for run in run_folders(sweep_dir) for p in run.path.glob(f"{MODELS_DIR}/fold*")]
    return sum(p.suffix == ".safetensors" for p in files), sum(p.stat().st_size for p in files)


class SweepEnd(Callback):
    """Hydra's ``on_multirun_end``: sweep_folds.csv, the Dice table, the exit status."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = failed_runs(sweep_dir)
        folds = results.collect_sweep(sweep_dir, skip=set(failed["run_dir"]))
        if folds.empty and failed.empty:
            log.warning("no finished runs under %s", sweep_dir)
            return
        ok = folds[folds["status"] == "ok"] if not folds.empty else folds
        # run_path is this machine's absolute path: the file keeps run_dir (relative) only.
        every = pd.concat([folds, failed.drop(columns="kind")], ignore_index=True)
        write_csv(every.drop(columns="run_path", errors="ignore"), sweep_dir / SWEEP_FOLDS_CSV)
        log.info(
            "sweep %s: %d fold results, %d failed run(s), %s written",
            sweep_dir, len(ok), len(failed), SWEEP_FOLDS_CSV,
        )  # fmt: skip
        if not ok.empty:
            log.info("\n%s", tables.format_table(tables.dice_table(ok)))
        n_models, size = saved_models(sweep_dir)
        if n_models:
            log.info(
                "saved models: %d folds, %.1f MB (runtime.save_models=false: none)",
                n_models,
                size / 1e6,
            )
        if failed.empty:
            return
        for kind, runs in failed.groupby("kind"):
            lines = "\n".join(
                f"  {run}: {error}" for run, error in zip(runs.run_dir, runs.error, strict=True)
            )
            log.error(
                "%d failed run(s); %s:\n%s", len(runs), ADVICE.get(kind, ADVICE["crash"]), lines
            )
        crashed = (failed["kind"] != "input").any()
        sys.exit(CRASH_EXIT_CODE if crashed else INPUT_EXIT_CODE)
