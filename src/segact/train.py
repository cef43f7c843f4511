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
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from segact.config import ConfigError, config_dir
from segact.io import describe, naming
from segact.report.tables import dice_table, format_table
from segact.runs.folder import RunFolder, read_result_csv, unusable_root
from segact.runs.identity import segment
from segact.runs.runner import run
from segact.training.interrupt import Interrupted

log = logging.getLogger("segact")


SEGMENT_KEYS = (
    "experiment_name", "dataset.name", "model.arch", "model.encoder", "head.name",
    "activation.name", "loss.name", "loss.binarize",
)  # fmt: skip
"""Keys whose values name folders of a run's path (configs/config.yaml ``hydra.sweep``)."""


def _refuse(message: str) -> None:
    print(f"segact: error: {message}", file=sys.stderr)
    sys.exit(2)


def _refuse_os(error: OSError) -> None:
    """One line naming the file and the cause; the run is not recorded as finished, and the
    same command resumes once the cause is fixed."""
    print(
        f"segact: error: {describe(error)}; fix it and run the same command again to resume",
        file=sys.stderr,
    )
    sys.exit(1)


class RunDirGuard(Callback):
    """Before Hydra creates any folder: the run or sweep folder must not be ``/`` or a home
    directory, and the values that name a run's folders must be plain folder names (in a
    multirun those given on the command line are checked here, the rest as each job starts)."""

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        HydraConfig.instance().set_config(config)  # as run_job does next: ${hydra:...} resolves
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
            key = override.get_key_element().lstrip("+~")
            if key in SEGMENT_KEYS and not override.is_delete():
                sweep = override.is_sweep_override()
                for value in override.sweep_string_iterator() if sweep else [override.value()]:
                    segment(key, value)
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(folder: str, key: str) -> None:
        why = unusable_root(Path(folder))
        if why is not None:
            _refuse(f"{key} = {folder!r} {why}; choose a folder of its own for segact's runs")
        try:  # Hydra's log file goes there next: a traceback of its own if it cannot
            with naming(Path(folder)):
                Path(folder).mkdir(parents=True, exist_ok=True)
            probe = Path(folder) / f".segact-probe-{os.getpid()}.tmp"
            with naming(probe):
                probe.write_bytes(b"")
                probe.unlink()
        except OSError as error:
            _refuse_os(error)


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
    logging.raiseExceptions = False  # a log line lost on a full disk: no traceback per line
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
    except OSError as error:  # disk full, read-only, permission denied: nothing is finished
        _refuse_os(error)
    log_finished(run_dir, summary)
    return summary.get("mean_dice_mean")


if __name__ == "__main__":
    main()
