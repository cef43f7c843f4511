"""Resume: a finished run is skipped; a run killed mid-way resumes to identical numbers."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from segact.train import train
from tests.helpers import TINY

TIMING = ["train_seconds", "epoch_seconds", "run_dir"]
LONGER = ("trainer.max_epochs=4", "trainer.patience=10")


def _numbers(path):
    return pd.read_csv(path).drop(columns=TIMING, errors="ignore")


def test_finished_run_is_skipped(make_cfg, tmp_path, capsys):
    first = train(make_cfg("trainer.max_epochs=1"), tmp_path)
    started = time.perf_counter()
    again = train(make_cfg("trainer.max_epochs=1"), tmp_path)
    assert time.perf_counter() - started < 2
    assert "skipped" in capsys.readouterr().out
    assert again["best_dice_mean"] == first["best_dice_mean"]
    assert not (tmp_path / "checkpoints").exists()  # removed once every fold finished


def test_changed_config_is_not_skipped(make_cfg, tmp_path, capsys):
    train(make_cfg("trainer.max_epochs=1"), tmp_path)
    capsys.readouterr()
    summary = train(make_cfg("trainer.max_epochs=1", "trainer.lr=0.01"), tmp_path)
    assert "skipped" not in capsys.readouterr().out
    assert summary["lr"] == 0.01


def test_killed_run_resumes_to_identical_results(make_cfg, tmp_path, caplog):
    uninterrupted = tmp_path / "uninterrupted"
    train(make_cfg(*LONGER), uninterrupted)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "segact.train", f"hydra.run.dir={killed}", *TINY, *LONGER],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill once fold 1 has a checkpoint (epoch >= 1): fold 0 is finished, fold 1 is in flight.
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "fold1.pt").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists()
    assert _numbers(killed / "folds.csv")["fold"].tolist() == [0]

    caplog.set_level("INFO")
    summary = train(make_cfg(*LONGER), killed)
    assert "resumed after epoch" in caplog.text
    assert summary["status"] == "ok"
    for name in ("folds.csv", "epochs.csv", "thresholds.csv"):
        pd.testing.assert_frame_equal(
            _numbers(uninterrupted / name), _numbers(killed / name), check_exact=True
        )
    assert not (killed / "checkpoints").exists()


@pytest.mark.parametrize("status", ["ok", "failed"])
def test_folds_of_another_config_are_not_reused(make_cfg, tmp_path, status):
    train(make_cfg("trainer.max_epochs=1"), tmp_path)
    folds = pd.read_csv(tmp_path / "folds.csv")
    folds.assign(config_hash="other", status=status).to_csv(tmp_path / "folds.csv", index=False)
    (tmp_path / "summary.json").unlink()
    train(make_cfg("trainer.max_epochs=1"), tmp_path)
    assert (pd.read_csv(tmp_path / "folds.csv")["config_hash"] != "other").all()
