"""Experiment trackers (``logger=``, configs/logger/): TensorBoard and MLflow, fed each epoch's
epochs.csv row by ``segact.runs.monitor``.

They write beside the run folders, never in one (a run folder holds only segact's own files, or
it is refused as someone else's): in the sweep folder for a multirun, in ``outputs/<experiment>``
for a single run. A tracker is opened at the first epoch, not before: a finished run that is
skipped logs nothing. Its failure mid-run (a locked database, a full disk) is one warning and
the tracker stops; the run goes on, since epochs.csv has every number anyway.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import logging
import numbers
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segact.errors import ConfigError
from segact.runs.locks import holding

log = logging.getLogger("segact")

NOT_METRICS = frozenset({"fold", "epoch"})
EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
"""The pyproject extra that installs each tracker's package."""


def require(module: str, logger: str) -> Any:
    """Import ``module``, or a ConfigError saying which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"logger={logger} needs the {EXTRAS[logger]} package ({error}): "
            f"pip install -e '.[{EXTRAS[logger]}]', or logger=none"
        ) from None


def metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The row's numbers besides fold and epoch (the step)."""
    return {
        k: float(v)
        for k, v in row.items()
        if k not in NOT_METRICS and isinstance(v, numbers.Real) and not isinstance(v, bool)
    }


def flat_settings(settings: Mapping[str, Any]) -> dict[str, str | float | int | bool]:
    """Settings as trackers take them: numbers and strings (lists and None as text)."""
    plain = (str, float, int, bool)
    return {k: v if isinstance(v, plain) else str(v) for k, v in settings.items()}


class Tracker:
    """An experiment tracker fed epoch rows; ``fold_end`` and ``close`` may come or not (a
    killed process): the tracker must leave readable records either way."""

    def __init__(self, root: Path, label: str, settings: Mapping[str, Any]) -> None:
        self.root, self.label, self.settings = Path(root), label, dict(settings)
        self.failed = False
        self.opened = False

    def epoch(self, row: Mapping[str, Any]) -> None:
        self._guarded(self._epoch, row)

    def fold_end(self, fold: int) -> None:
        if self.opened:
            self._guarded(self._fold_end, fold)

    def close(self) -> None:
        if self.opened:
            self._guarded(self._close)
            self.opened = False

    def _guarded(self, action: Any, *args: Any) -> None:
        if self.failed:
            return
        try:
            if not self.opened:
                self._open()
                self.opened = True
                atexit.register(self.close)
            action(*args)
        except Exception as error:
            self.failed = True
            log.warning(
                "%s stopped logging %s (%s: %s); the run goes on, epochs.csv has every number",
                type(self).__name__,
                self.label,
                type(error).__name__,
                error,
            )

    def _open(self) -> None:
        raise NotImplementedError

    def _epoch(self, row: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _fold_end(self, fold: int) -> None:
        pass

    def _close(self) -> None:
        pass


class TensorBoardLogger(Tracker):
    """One event folder per run, ``<log_dir>/<run label>``: scalars ``fold<k>/<column>`` at
    step = epoch, and the run's settings as hparams (the HParams tab lists the runs)."""

    def __init__(self, log_dir: str | None = None, **where: Any) -> None:
        super().__init__(**where)
        require("tensorboard", "tensorboard")
        self.log_dir = (Path(log_dir) if log_dir else self.root / "tensorboard") / self.label
        self.writer: Any = None

    def _open(self) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(self.log_dir))
        # hparams written into this writer (add_hparams would open a folder of its own)
        for summary in hparams(flat_settings(self.settings), {}):
            self.writer.file_writer.add_summary(summary)

    def _epoch(self, row: Mapping[str, Any]) -> None:
        fold, step = int(row["fold"]), int(row["epoch"])
        for key, value in metrics(row).items():
            self.writer.add_scalar(f"fold{fold}/{key}", value, step)
        self.writer.flush()  # readable now, whatever happens to the process later

    def _close(self) -> None:
        self.writer.close()


class MLflowLogger(Tracker):
    """A parent MLflow run per segact run (its settings as params, tagged with its folder and
    config_hash) and a nested run per fold (metrics at step = epoch). A resumed run finds its
    parent and fold runs again by those tags and goes on logging into them."""

    PARAMS_PER_BATCH = 100  # MLflow's limit per log_batch call

    def __init__(
        self, tracking_uri: str | None = None, experiment: str | None = None, **where: Any
    ) -> None:
        super().__init__(**where)
        require("mlflow", "mlflow")
        self.tracking_uri = tracking_uri or f"sqlite:///{(self.root / 'mlflow.db').resolve()}"
        self.experiment = experiment or self.root.resolve().name
        self.client: Any = None
        self.parent = ""
        self.folds: dict[int, str] = {}

    def _open(self) -> None:
        from mlflow.tracking import MlflowClient

        self.root.mkdir(parents=True, exist_ok=True)
        with holding(self.root / "mlflow.lock", stale_after_s=300.0):  # one creates the tables
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            found = self.client.get_experiment_by_name(self.experiment)
            self.experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(
                    self.experiment, artifact_location=(self.root / "mlartifacts").as_uri()
                )
            )
        self.parent = self._run({"segact_fold": "run"}, self.label)
        self.client.update_run(self.parent, status="RUNNING")

    def _run(self, tags: dict[str, str], name: str) -> str:
        """The id of the run with these tags under this segact run (created if none)."""
        run_key = f"{self.label}\0{self.settings.get('config_hash', '')}"
        tags = {"segact_run": hashlib.sha256(run_key.encode()).hexdigest()[:16], **tags}
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())  # hex, digits, 'run'
        found = self.client.search_runs([self.experiment_id], query, max_results=1)
        if found:
            return found[0].info.run_id
        tags["segact_run_dir"] = self.label
        if self.parent:
            tags["mlflow.parentRunId"] = self.parent
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        if not self.parent:
            self._log_params(run.info.run_id)
        return run.info.run_id

    def _log_params(self, run_id: str) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in flat_settings(self.settings).items()]
        for start in range(0, len(params), self.PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=params[start : start + self.PARAMS_PER_BATCH])

    def _epoch(self, row: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        fold = int(row["fold"])
        if fold not in self.folds:
            self.folds[fold] = self._run({"segact_fold": str(fold)}, f"fold{fold}")
            self.client.update_run(self.folds[fold], status="RUNNING")
        now, step = int(time.time() * 1000), int(row["epoch"])
        batch = [Metric(k, v, now, step) for k, v in metrics(row).items()]
        self.client.log_batch(self.folds[fold], metrics=batch)

    def _fold_end(self, fold: int) -> None:
        if fold in self.folds:
            self.client.set_terminated(self.folds.pop(fold))

    def _close(self) -> None:
        for fold in list(self.folds):
            self._fold_end(fold)
        self.client.set_terminated(self.parent)
