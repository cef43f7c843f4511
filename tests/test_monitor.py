"""What a run says while it trains: one line per epoch, the time left, the CPU warning, where
it stands in its sweep, and when its folds end (segact.runs.monitor)."""

from __future__ import annotations

import logging
import re

import pytest
from omegaconf import OmegaConf

from segact.runs import monitor
from segact.runs.monitor import Monitor, RunPlan, SweepPosition, duration, estimate_left
from segact.runs.runner import train
from tests.helpers import compose_config

EPOCH_LINE = re.compile(
    r"fold (\d) epoch (\d+)/(\d+): loss \d\.\d{4}, val best Dice \d\.\d{4} at t=\d\.\d\d, "
    r"threshold-averaged Dice \d\.\d{4}, lr \d\.\d\de-\d\d, \d+\.\d s"
)


def _plan(**changes) -> RunPlan:
    plan = {
        "folds": 3,
        "max_epochs": 30,
        "patience": 5,
        "cpu": False,
        "shape": "32x32 px, Unet resnet18",
        "big_images": False,
    }
    return RunPlan(**{**plan, **changes})


def _row(fold: int, epoch: int, mean_dice: float = 0.5, seconds: float = 10.0) -> dict:
    return {
        "fold": fold,
        "epoch": epoch,
        "train_loss": 0.5,
        "grad_norm": 1.0,
        "lr": 1e-3,
        "val_best_dice": 0.7,
        "val_best_threshold": 0.45,
        "val_threshold_averaged_dice": mean_dice,
        "epoch_seconds": seconds,
    }


def test_estimate_arithmetic():
    # epoch 1 of 30 done, 2 folds after this one, 20 epochs likely, 10 s an epoch
    left = estimate_left(10.0, 1, 30, 2, 20)
    assert left.upper_s == 10.0 * (29 + 2 * 30)
    assert left.likely_s == 10.0 * (19 + 2 * 20)
    assert estimate_left(10.0, 25, 30, 0, 20).likely_s == 0.0  # past the likely epoch
    assert estimate_left(10.0, 1, 30, 1, 99).likely_s == estimate_left(10.0, 1, 30, 1, 30).upper_s


def test_durations_read_as_a_person_would_say_them():
    assert [duration(s) for s in (42, 17 * 60, 3 * 3600 + 5 * 60)] == [
        "42 s",
        "17 min",
        "3 h 05 min",
    ]


def test_first_epoch_of_each_fold_says_the_time_left_and_the_sweep(caplog):
    watch = Monitor(_plan(), position=SweepPosition(run=2, of=4))
    with caplog.at_level(logging.INFO, logger="segact"):
        watch(_row(0, 1))
        watch(_row(0, 2))
    estimates = [r.getMessage() for r in caplog.records if "time left" in r.getMessage()]
    assert estimates == [
        "time left for this run: at most 15 min (this fold and 2 more, up to 30 epochs each at "
        "10.0 s), likely about 10 min (if early stopping ends folds near epoch 20); sweep: run 2 "
        "of 4, 2 after it (up to 15 min each if alike and not finished already)"
    ]  # 10 s x (29 + 60) = 890 s; 10 s x (19 + 40) = 590 s; 10 s x 3 x 30 = 900 s


def test_the_tracker_hears_each_fold_end_the_engine_reports(caplog):
    class Recorder:
        def __init__(self):
            self.calls = []

        def epoch(self, row):
            self.calls.append(("epoch", row["fold"], row["epoch"]))

        def fold_end(self, fold):
            self.calls.append(("end", fold))

        def close(self):
            self.calls.append(("close",))

    tracker = Recorder()
    watch = Monitor(_plan(folds=2, patience=2, max_epochs=10), tracker=tracker)
    with caplog.at_level(logging.INFO, logger="segact"):
        for epoch, dice in enumerate([0.5, 0.6, 0.55, 0.58], start=1):  # 2 stale: stops
            watch(_row(0, epoch, dice))
        watch.fold_finished(0, 4)  # as the engine says it (FoldRun.finish)
        watch(_row(1, 1))  # fold 1's estimate uses fold 0's 4 epochs
        watch(_row(1, 2, 0.4))  # fold 1 never ends here: the process stops (close at exit)
    assert ("end", 0) in tracker.calls and ("end", 1) not in tracker.calls
    assert tracker.calls.index(("end", 0)) < tracker.calls.index(("epoch", 1, 1))
    assert "as the folds so far: 4 epochs" in caplog.text
    assert "likely about 30 s" in caplog.text  # fold 1: 10 s x (4 - 1)


def test_a_large_configuration_on_a_cpu_is_said_once(caplog, monkeypatch):
    monkeypatch.setattr(monitor, "WARNED", set())
    big = _plan(cpu=True, big_images=True, shape="256x256 px, Unet resnet34", max_epochs=3)
    with caplog.at_level(logging.INFO, logger="segact"):
        Monitor(big)(_row(0, 1, seconds=1.0))
        Monitor(big)(_row(0, 1, seconds=1.0))  # the next run of a sweep: said already
        Monitor(_plan(cpu=False, big_images=True))(_row(0, 1))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "256x256 px, Unet resnet34" in warnings[0].getMessage()
    assert "model=tiny dataset.image_size=48" in warnings[0].getMessage()


def test_a_long_run_on_a_cpu_is_large_whatever_its_images(caplog, monkeypatch):
    monkeypatch.setattr(monitor, "WARNED", set())
    with caplog.at_level(logging.INFO, logger="segact"):
        Monitor(_plan(cpu=True))(_row(0, 1, seconds=30.0))  # 30 s x 89 epochs > 30 min
    assert "large for a CPU" in caplog.text


def test_jobs_in_sweep_from_multirun_yaml(tmp_path):
    saved = {
        "hydra": {
            "overrides": {"task": ["activation=sigmoid,arctan", "loss=dice,bce,mse", "a.b=1"]},
            "sweeper": {"params": {"trainer.seed": "0,1", "loss": "dice"}},
        }
    }
    OmegaConf.save(OmegaConf.create(saved), tmp_path / "multirun.yaml")
    assert monitor.jobs_in_sweep(tmp_path) == 2 * 3 * 2  # the command's loss replaces the file's
    assert monitor.jobs_in_sweep(tmp_path / "missing") is None


@pytest.mark.slow
def test_a_tiny_run_logs_each_epoch_and_the_time_left(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="segact"):
        train(compose_config("trainer.max_epochs=2"), tmp_path / "run")
    lines = [EPOCH_LINE.fullmatch(r.getMessage()) for r in caplog.records]
    epochs = [(int(m[1]), int(m[2]), int(m[3])) for m in lines if m]
    assert epochs == [(0, 1, 2), (0, 2, 2), (1, 1, 2), (1, 2, 2)]
    estimates = [r.getMessage() for r in caplog.records if "time left" in r.getMessage()]
    assert len(estimates) == 2
    assert "this fold and 1 more, up to 2 epochs" in estimates[0]
    assert (
        "this fold and 0 more" in estimates[1] and "as the folds so far: 2 epochs" in estimates[1]
    )
    assert all(
        r.name == "segact" and r.levelno == logging.INFO
        for r in caplog.records
        if "epoch" in r.getMessage()
    )
