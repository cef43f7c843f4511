"""Experiment trackers (logger=): real TensorBoard event files and a real MLflow store, read back
with the libraries' own readers; a tracker changes no run and writes in no run folder."""

from __future__ import annotations

import logging

import pytest

from segact.errors import ConfigError
from segact.runs import identity
from segact.runs.folder import RunFolder
from segact.runs.loggers import MLflowLogger, Tracker, require
from segact.runs.runner import train
from tests.helpers import compose_config

EPOCHS = 2
FOLDS = 2  # tests.helpers.TINY


@pytest.mark.slow  # composes two more config groups (about 2 s)
def test_a_logger_is_in_no_identity_and_no_folder_name():
    plain = identity.identity(compose_config(), "cpu", 1)
    for tracked in (
        compose_config("logger=tensorboard", "logger.log_dir=/x"),
        compose_config("logger=mlflow", "logger.tracking_uri=sqlite:///x"),
    ):
        assert identity.identity(tracked, "cpu", 1) == plain
    assert identity.folder_suffix(["logger=mlflow", "logger.tracking_uri=sqlite:///x"]) == ""


def test_a_missing_package_says_which_extra_to_install():
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[mlflow\]', or logger=none"):
        require("segact_no_such_module", "mlflow")


def test_a_failing_tracker_warns_once_and_the_run_goes_on(tmp_path, caplog):
    class Broken(Tracker):
        def _open(self):
            pass

        def _epoch(self, row):
            raise OSError("disk full")

    tracker = Broken(root=tmp_path, label="run", settings={})
    with caplog.at_level(logging.WARNING, logger="segact"):
        tracker.epoch({"fold": 0, "epoch": 1})
        tracker.epoch({"fold": 0, "epoch": 2})
    assert caplog.text.count("Broken stopped logging run (OSError: disk full)") == 1


def _train(tmp_path, *overrides: str) -> dict:
    run = RunFolder(tmp_path / "sweep" / "run")
    summary = train(compose_config(f"trainer.max_epochs={EPOCHS}", *overrides), run.path, "run")
    assert summary["status"] == "ok"
    assert run.foreign_entries() == []  # the next start takes the folder as segact's own
    return summary


@pytest.mark.slow
def test_tensorboard_event_files_hold_every_epoch_of_every_fold(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _train(tmp_path, "logger=tensorboard")
    events = EventAccumulator(str(tmp_path / "sweep" / "tensorboard" / "run")).Reload()
    scalars = events.Tags()["scalars"]
    for fold in range(FOLDS):
        for column in (
            "val_best_dice",
            "val_threshold_averaged_dice",
            "train_loss",
            "lr",
            "epoch_seconds",
        ):
            points = events.Scalars(f"fold{fold}/{column}")
            assert [p.step for p in points] == list(range(1, EPOCHS + 1))
    assert "fold0/val_best_dice" in scalars and "fold0/fold" not in scalars
    assert events.PluginTagToContent("hparams")  # the run's settings


@pytest.mark.slow
def test_mlflow_holds_a_parent_run_with_settings_and_a_run_per_fold(tmp_path):
    mlflow = pytest.importorskip("mlflow")

    summary = _train(tmp_path, "logger=mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'sweep' / 'mlflow.db'}")
    found = mlflow.search_runs(experiment_names=["sweep"])
    assert len(found) == 1 + FOLDS and set(found["status"]) == {"FINISHED"}
    parent = found[found["tags.segact_fold"] == "run"].iloc[0]
    assert parent["params.trainer.max_epochs"] == str(EPOCHS)
    assert parent["params.model.arch"] == "Unet"
    assert parent["params.config_hash"] == summary["config_hash"]
    client = mlflow.tracking.MlflowClient()
    for fold in range(FOLDS):
        child = found[found["tags.segact_fold"] == str(fold)].iloc[0]
        assert child["tags.mlflow.parentRunId"] == parent["run_id"]
        history = client.get_metric_history(child["run_id"], "val_best_dice")
        assert [m.step for m in history] == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_mlflow_finds_its_runs_again(tmp_path):
    pytest.importorskip("mlflow")
    where = {"root": tmp_path, "label": "a/run", "settings": {"config_hash": "0123", "x": [1]}}
    row = {"fold": 0, "epoch": 1, "val_best_dice": 0.5}
    for epoch in (1, 2):  # a resumed run logs on into the same parent and fold runs
        tracker = MLflowLogger(**where)
        tracker.epoch({**row, "epoch": epoch})
        tracker.close()
        assert not tracker.failed
    runs = tracker.client.search_runs([tracker.experiment_id])
    assert len(runs) == 2
    fold = next(r for r in runs if r.data.tags["segact_fold"] == "0")
    steps = [m.step for m in tracker.client.get_metric_history(fold.info.run_id, "val_best_dice")]
    assert steps == [1, 2]
