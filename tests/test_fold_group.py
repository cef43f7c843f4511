"""trainer.fold_group: folds trained side by side in one process write exactly the files of
folds trained one by one (early stopping at different epochs, augmentation, an interrupted and
resumed group), and the option changes neither the run's identity nor its folder name."""

from __future__ import annotations

import contextlib

import pandas as pd
import pytest

from segact.errors import ConfigError
from segact.runs import identity as run_identity
from segact.runs import monitor
from segact.runs.folder import EPOCHS_CSV, FOLDS_CSV, THRESHOLDS_CSV
from segact.runs.runner import train
from segact.training import group
from segact.training.engine import FoldRun
from segact.training.interrupt import Interrupted, StopRequest
from tests.helpers import compose_config, numbers

RESULT_FILES = (FOLDS_CSV, EPOCHS_CSV, THRESHOLDS_CSV)
EARLY_STOPS = ("trainer.folds=3", "trainer.max_epochs=4", "trainer.patience=1", "trainer.lr=0.02")
"""Three folds that stop early at epochs 3, 2 and 2 (measured)."""


def assert_same_files(a, b) -> None:
    for name in RESULT_FILES:
        pd.testing.assert_frame_equal(
            numbers(a / name).drop(columns="run_dir", errors="ignore"),
            numbers(b / name).drop(columns="run_dir", errors="ignore"),
            check_exact=True,
        )


@pytest.mark.slow
def test_group_with_early_stopping_equals_folds_one_by_one(tmp_path, caplog, monkeypatch):
    ended: list[tuple[int, int]] = []  # what the listeners hear of each fold's end
    heard = monitor.Monitor.fold_finished
    monkeypatch.setattr(
        monitor.Monitor, "fold_finished", lambda m, f, e: (ended.append((f, e)), heard(m, f, e))
    )
    train(compose_config(*EARLY_STOPS), tmp_path / "one")
    alone, ended[:] = sorted(ended), []
    caplog.set_level("INFO")
    # 3 folds in groups of 2: a group of two (one of them stops first), then a group of one.
    train(compose_config(*EARLY_STOPS, "trainer.fold_group=2"), tmp_path / "grouped")
    assert_same_files(tmp_path / "one", tmp_path / "grouped")
    epochs_run = pd.read_csv(tmp_path / "grouped" / FOLDS_CSV)["epochs_run"].tolist()
    assert len(set(epochs_run)) > 1 and max(epochs_run) < 4  # stopped early, not together
    assert "training folds 0, 1 side by side" in caplog.text
    assert alone == sorted(ended) == list(enumerate(epochs_run))  # each end heard, once


@pytest.mark.slow
def test_group_with_augmentation_equals_folds_one_by_one_and_a_fold_alone(tmp_path):
    light = ("augment=light",)
    train(compose_config(*light), tmp_path / "one")
    train(compose_config(*light, "trainer.fold_group=2"), tmp_path / "grouped")
    assert_same_files(tmp_path / "one", tmp_path / "grouped")
    # A fold's augmentation starts from the seed whatever ran before it in the process: fold 1
    # as a job of its own gives the same numbers as fold 1 after fold 0.
    train(compose_config(*light, "trainer.fold=1"), tmp_path / "alone")
    alone = numbers(tmp_path / "alone" / EPOCHS_CSV).drop(columns="run_dir", errors="ignore")
    after = numbers(tmp_path / "one" / EPOCHS_CSV).drop(columns="run_dir", errors="ignore")
    pd.testing.assert_frame_equal(
        alone, after[after["fold"] == 1].reset_index(drop=True), check_exact=True
    )


def stop_at(monkeypatch, fold: int, epoch: int) -> None:
    """A stop request (as Ctrl-C makes one) while fold ``fold`` closes epoch ``epoch``."""
    request = StopRequest()

    @contextlib.contextmanager
    def stop_request():
        yield request

    close = FoldRun.close_epoch

    def close_and_stop(run, flight, *rest):
        close(run, flight, *rest)
        if (run.fold.index, flight.epoch) == (fold, epoch):
            request.requested = True

    monkeypatch.setattr(group, "stop_after_epoch_on_sigint", stop_request)
    monkeypatch.setattr(FoldRun, "close_epoch", close_and_stop)


@pytest.mark.slow
def test_interrupted_group_saves_every_fold_and_resumes_to_the_same_files(tmp_path, monkeypatch):
    longer = ("trainer.max_epochs=4", "trainer.patience=10", "runtime.checkpoint_every_s=3600")
    run_dir = tmp_path / "grouped"
    with monkeypatch.context() as patch:
        # Requested while fold 0 closes epoch 2: fold 0 is saved after the round, fold 1 as it
        # closes the epoch (checkpoints are otherwise not due for an hour).
        stop_at(patch, fold=0, epoch=2)
        with pytest.raises(Interrupted, match="folds 0 \\(epoch 2\\), 1 \\(epoch 2\\) stopped"):
            train(compose_config(*longer, "trainer.fold_group=2"), run_dir)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["fold0.pt", "fold1.pt"]
    assert not (run_dir / FOLDS_CSV).exists()
    summary = train(compose_config(*longer, "trainer.fold_group=2"), run_dir)
    assert summary["status"] == "ok"
    assert not (run_dir / "checkpoints").exists()
    train(compose_config(*longer), tmp_path / "one")
    assert_same_files(tmp_path / "one", run_dir)


def test_fold_group_below_one_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer\.fold_group=0"):
        train(compose_config("trainer.fold_group=0", "trainer.max_epochs=1"), tmp_path)


def test_fold_group_and_cuda_graphs_change_neither_identity_nor_folder_name():
    plain = run_identity.identity(compose_config(), "cuda", 1)
    grouped = compose_config("trainer.fold_group=10", "trainer.cuda_graphs=off")
    assert run_identity.identity(grouped, "cuda", 1) == plain
    overrides = ["trainer.fold_group=10", "trainer.cuda_graphs=on", "trainer.lr=0.01"]
    assert run_identity.folder_suffix(overrides) == "trainer.lr=0.01"
