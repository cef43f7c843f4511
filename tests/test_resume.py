"""Resume: a finished run is skipped, a killed or interrupted run resumes to identical numbers,
and a damaged run folder is repaired rather than trusted."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from segact.runs.folder import EPOCHS_CSV, FOLDS_CSV, THRESHOLDS_CSV, RunFolder
from segact.runs.runner import train
from segact.training import checkpoint
from segact.training.interrupt import Interrupted, warned_before_training
from tests.helpers import TINY, compose_config, numbers

pytestmark = pytest.mark.slow

LONGER = ("trainer.max_epochs=4", "trainer.patience=10")
RESULT_FILES = (FOLDS_CSV, EPOCHS_CSV, THRESHOLDS_CSV)


def _assert_same_results(a, b):
    for name in RESULT_FILES:
        pd.testing.assert_frame_equal(
            numbers(a / name).drop(columns="run_dir", errors="ignore"),
            numbers(b / name).drop(columns="run_dir", errors="ignore"),
            check_exact=True,
        )


def test_finished_run_is_skipped(tmp_path, caplog):
    first = train(compose_config("trainer.max_epochs=1"), tmp_path)
    caplog.set_level("INFO")
    again = train(compose_config("trainer.max_epochs=1"), tmp_path)
    assert "skipped" in caplog.text
    assert again["best_dice_mean"] == first["best_dice_mean"]
    assert not (tmp_path / "checkpoints").exists()  # removed once every fold finished


def test_changed_config_is_not_skipped(tmp_path, caplog):
    train(compose_config("trainer.max_epochs=1"), tmp_path)
    caplog.set_level("INFO")
    summary = train(compose_config("trainer.max_epochs=1", "trainer.lr=0.01"), tmp_path)
    assert "skipped" not in caplog.text
    assert "trainer.lr" in caplog.text  # says what differs from the run it replaces
    assert summary["lr"] == 0.01


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_damaged_result_file_is_rebuilt_not_skipped(tmp_path, damage):
    train(compose_config("trainer.max_epochs=1"), tmp_path)
    original = numbers(RunFolder(tmp_path).folds_csv)
    folds = RunFolder(tmp_path).folds_csv
    if damage == "deleted":
        folds.unlink()
    else:
        folds.write_text(folds.read_text().splitlines()[0] + "\n")
    summary = train(compose_config("trainer.max_epochs=1"), tmp_path)
    assert summary["status"] == "ok"
    pd.testing.assert_frame_equal(numbers(folds), original)


def _start(run_dir, *overrides):
    return subprocess.Popen(
        [sys.executable, "-m", "segact.train", f"hydra.run.dir={run_dir}", *TINY, *overrides],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("augment", ["none", "light"])
def test_killed_run_resumes_to_identical_results(tmp_path, caplog, augment):
    overrides = (*LONGER, f"augment={augment}")
    uninterrupted = tmp_path / "uninterrupted"
    train(compose_config(*overrides), uninterrupted)

    killed = tmp_path / "killed"
    process = _start(killed, *overrides)
    # Kill once fold 1 has a checkpoint (epoch >= 1): fold 0 is finished, fold 1 is in flight.
    _wait_for(killed / "checkpoints" / "fold1.pt", process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (RunFolder(killed).summary_json).exists()
    (killed / "checkpoints" / ".fold1.pt.x1y2.tmp").write_bytes(b"half a checkpoint")

    caplog.set_level("INFO")
    summary = train(compose_config(*overrides), killed)
    assert "resumed after epoch" in caplog.text
    assert summary["status"] == "ok"
    _assert_same_results(uninterrupted, killed)
    assert not (killed / "checkpoints").exists()  # stale temporary removed with the folder


def test_ctrl_c_saves_a_checkpoint_and_exits_130_with_one_line(tmp_path):
    run_dir = tmp_path / "run"
    process = _start(run_dir, *LONGER)
    _wait_for(run_dir / "checkpoints" / "fold0.pt", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "segact: interrupted; run the same command to resume"
    assert "Traceback" not in stderr
    assert (run_dir / "checkpoints" / "fold0.pt").exists()
    summary = train(compose_config(*LONGER), run_dir)
    assert summary["status"] == "ok"
    uninterrupted = tmp_path / "uninterrupted"
    train(compose_config(*LONGER), uninterrupted)
    _assert_same_results(uninterrupted, run_dir)


def test_a_time_limit_warning_before_training_stops_after_one_epoch(tmp_path, caplog):
    """SLURM may send its warning (SIGUSR2) while the data still loads: the run keeps it, trains
    one epoch, saves and stops (it used to reach submitit's handler and fail the run)."""
    run_dir = tmp_path / "run"
    caplog.set_level("INFO")
    with warned_before_training():
        os.kill(os.getpid(), signal.SIGUSR2)
        with pytest.raises(Interrupted, match="fold 0 stopped after epoch 1"):
            train(compose_config(*LONGER), run_dir)
    assert "time-limit warning (SIGUSR2) before training" in caplog.text
    assert (run_dir / "checkpoints" / "fold0.pt").exists()
    summary = train(compose_config(*LONGER), run_dir)  # the warning is forgotten with the job
    assert summary["status"] == "ok" and "resumed after epoch 1" in caplog.text
    uninterrupted = tmp_path / "uninterrupted"
    train(compose_config(*LONGER), uninterrupted)
    _assert_same_results(uninterrupted, run_dir)


def test_a_stop_request_after_the_epochs_save_decision_still_saves(tmp_path, caplog, monkeypatch):
    """SLURM's warning can land between an epoch's checkpoint decision and the check that stops
    the fold (it did in CI: the next attempt resumed 29 epochs back, from the last periodic save):
    the fold stops after that epoch all the same, with its checkpoint."""
    real = checkpoint.Saver.maybe_save

    def then_warned(self, trainable, augment, progress, force=False):
        real(self, trainable, augment, progress, force=force)
        if progress.epoch == 2 and not force:
            os.kill(os.getpid(), signal.SIGUSR2)

    monkeypatch.setattr(checkpoint.Saver, "maybe_save", then_warned)
    run_dir = tmp_path / "run"
    config = compose_config(*LONGER, "runtime.checkpoint_every_s=3600")
    with pytest.raises(Interrupted, match="fold 0 stopped after epoch 2"):
        train(config, run_dir)
    monkeypatch.setattr(checkpoint.Saver, "maybe_save", real)
    caplog.set_level("INFO")
    assert train(config, run_dir)["status"] == "ok"
    assert "resumed after epoch 2" in caplog.text
