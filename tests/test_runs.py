"""A run's identity, folder name, "finished?" check and locks (no training)."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from segact.io import atomic_path, remove_temporaries_of, write_csv, write_json
from segact.runs import identity, locks
from segact.runs.folder import RunFolder
from tests.helpers import composed


def identity_of(make_cfg, *overrides, device="cpu", threads=1):
    return identity.identity(make_cfg(*overrides), device, threads)


def test_runtime_settings_change_neither_identity_nor_folder_name(make_cfg):
    base = identity_of(make_cfg)
    assert identity_of(make_cfg, "runtime.progress=true", "runtime.checkpoint_every_s=5") == base
    assert identity_of(make_cfg, "trainer.fold=1") == base
    assert not any(key.startswith(("runtime.", "paths.")) for key in base)
    name = identity.folder_suffix(
        ["runtime.progress=true", "trainer.fold=1", "launcher=joblib", "x=1"]
    )
    assert name == "x=1"


def test_every_result_changing_setting_is_part_of_the_identity(make_cfg):
    base = identity.config_hash(identity_of(make_cfg))
    for overrides in (("trainer.lr=0.1",), ("trainer.batch_size=2",), ("optimizer=sgd",)):
        assert identity.config_hash(identity_of(make_cfg, *overrides)) != base, overrides
    # Threads change float sums on CPU; on a GPU they do not enter the identity.
    assert identity.config_hash(identity_of(make_cfg, threads=2)) != base
    cuda = identity_of(make_cfg, device="cuda", threads=1)
    assert cuda == identity_of(make_cfg, device="cuda", threads=8)
    assert cuda["resolved.device"] == "cuda" and "resolved.threads" not in cuda


def test_differing_keys_names_what_changed(make_cfg):
    old, new = identity_of(make_cfg), identity_of(make_cfg, "trainer.lr=0.1", threads=2)
    assert identity.differing_keys(old, new) == ["optimizer.lr", "resolved.threads", "trainer.lr"]


def _finished_run(run_dir, config_hash="abc"):
    folder = RunFolder(run_dir)
    folder.write_results(
        pd.DataFrame({"fold": [0, 1], "epoch": [1, 1]}),
        pd.DataFrame({"fold": [0, 1], "threshold": [0.5, 0.5]}),
        pd.DataFrame({"fold": [0, 1], "best_dice": [0.5, 0.6]}),
    )
    folder.write_summary({"status": "ok", "config_hash": config_hash})


@pytest.mark.parametrize("damage", ["deleted", "emptied", "truncated", "edited"])
def test_a_damaged_result_file_means_not_finished(tmp_path, damage):
    _finished_run(tmp_path)
    assert RunFolder(tmp_path).finished_summary("abc") is not None
    folds = RunFolder(tmp_path).folds_csv
    if damage == "deleted":
        folds.unlink()
    elif damage == "emptied":
        folds.write_text("")
    elif damage == "truncated":
        folds.write_text(folds.read_text()[:-8])
    else:
        folds.write_text(folds.read_text().replace("0.6", "0.7"))
    assert RunFolder(tmp_path).finished_summary("abc") is None


def test_another_identity_or_a_failed_run_is_not_finished(tmp_path):
    _finished_run(tmp_path)
    assert RunFolder(tmp_path).finished_summary("other") is None
    assert RunFolder(tmp_path).superseded_identity("other") == {}
    summary = json.loads((RunFolder(tmp_path).summary_json).read_text())
    write_json({**summary, "status": "failed"}, RunFolder(tmp_path).summary_json)
    assert RunFolder(tmp_path).finished_summary("abc") is None


def test_a_run_that_predates_a_new_setting_stays_finished(tmp_path):
    _finished_run(tmp_path)
    summary = json.loads((RunFolder(tmp_path).summary_json).read_text())
    old = {"trainer.lr": 0.001, "loss.name": "dice"}
    write_json({**summary, "identity": old}, RunFolder(tmp_path).summary_json)
    extended = {**old, "trainer.grad_clip": None}
    assert RunFolder(tmp_path).finished_summary("new-hash", extended) is not None
    assert RunFolder(tmp_path).finished_summary("new-hash", {**extended, "trainer.lr": 0.1}) is None
    assert (
        RunFolder(tmp_path).finished_summary("new-hash", {"loss.name": "dice"}) is None
    )  # key gone
    assert RunFolder(tmp_path).finished_summary("new-hash") is None


def test_a_lock_is_held_once_and_released(tmp_path):
    path = tmp_path / "locks" / "fold0.lock"
    lock = locks.acquire(path, stale_after_s=60)
    assert lock is not None
    holder = json.loads(path.read_text())
    assert holder["pid"] == os.getpid() and holder["host"]
    assert locks.acquire(path, stale_after_s=60) is None  # a live holder: skip
    lock.release()
    assert locks.acquire(path, stale_after_s=60) is not None


def test_a_dead_processs_lock_is_stale(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path = tmp_path / "fold0.lock"
    locks.acquire(path, stale_after_s=3600)
    lock_record = json.loads(path.read_text())
    path.write_text(json.dumps({**lock_record, "pid": int(dead.stdout)}))
    assert locks.is_stale(path, stale_after_s=3600)
    assert locks.acquire(path, stale_after_s=3600) is not None


def test_a_lock_without_heartbeat_goes_stale(tmp_path):
    path = tmp_path / "fold0.lock"
    lock = locks.acquire(path, stale_after_s=60)
    old = time.time() - 120
    os.utime(path, (old, old))
    assert locks.is_stale(path, stale_after_s=60)
    lock.refresh()
    assert not locks.is_stale(path, stale_after_s=60)


def test_written_files_get_the_umask_mode_and_leave_no_temporary(tmp_path):
    previous = os.umask(0o022)
    try:
        write_csv(pd.DataFrame({"a": [1]}), tmp_path / "x.csv")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "x.csv").stat().st_mode) == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and not list(tmp_path.glob(".*.tmp"))


def test_temporaries_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".fold1.pt.abc123.tmp").write_bytes(b"x" * 100)
    (tmp_path / ".other.csv.abc.tmp").write_bytes(b"x")
    removed = remove_temporaries_of(tmp_path / "fold1.pt")
    assert [p.name for p in removed] == [".fold1.pt.abc123.tmp"]
    assert (tmp_path / ".other.csv.abc.tmp").exists()


LOSSES = ("dice", "bce", "mse", "boundary", "ce")


def _committed_runs() -> list[Path]:
    """One committed run folder per loss (the losses' module moved since they were trained)."""
    runs = Path(__file__).resolve().parents[1] / "results" / "runs"
    finished = [sorted(runs.glob(f"*/*/*/*-{loss}-*/*/*/summary.json"))[0] for loss in LOSSES]
    return [summary.parent for summary in finished]  # not a run still in flight


@pytest.mark.parametrize("run", _committed_runs(), ids=LOSSES)
def test_the_committed_runs_keep_their_identity(run):
    """The config a committed run was composed from gives today the identity, and so the
    config_hash, it was recorded under: its sweep finds it finished and computes nothing."""
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    chosen = [o for o in overrides if not o.startswith(("hydra.", "launcher="))]
    recorded = RunFolder(run).read_summary()
    resolved = recorded["identity"]
    now = identity.identity(
        composed(*chosen),
        resolved["resolved.device"],
        resolved.get("resolved.threads", 0),
        resolved.get(identity.DATA_FINGERPRINT),  # a real dataset's files: not read here
    )
    assert identity.differing_keys(now, resolved) == []
    assert identity.config_hash(now) == recorded["config_hash"]
