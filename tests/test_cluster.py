"""The cluster path against a real one-node SLURM cluster (``scripts/slurm_local.sh``): a fold-job
sweep with only the partition set, ``scancel`` of a running job, a job out of time, and two
sweeps submitted at once on one sweep folder. Numbers are compared with the basic launcher's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from segact.runs.folder import FOLDS_CSV, THRESHOLDS_CSV
from tests.helpers import TIMING

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SLURM_LOCAL = REPO / "scripts" / "slurm_local.sh"
STATE = Path(os.environ.get("SEGACT_SLURM_DIR", "/tmp/segact-slurm"))
SMALL = (
    "model=tiny",
    "dataset.n_images=12",
    "dataset.image_size=32",
    "trainer.folds=2",
    "trainer.batch_size=4",
    "runtime.progress=false",
    "runtime.checkpoint_every_s=0",
    "runtime.save_models=false",
    "runtime.reuse=false",  # the cluster's runs are compared with the basic launcher's
)
SLURM = ("launcher=submitit_slurm", "hydra.launcher.partition=debug")


@pytest.fixture(scope="module")
def cluster():
    """The environment of a running one-node cluster: started here if it is not (and stopped
    after), skipped with the reason where none can be started (not root, no apt-get)."""
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (its daemons run as root)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("no SLURM here and no apt-get to install Debian's slurm-wlm")
    running = subprocess.run([str(SLURM_LOCAL), "status"], capture_output=True).returncode == 0
    if not running:
        started = subprocess.run([str(SLURM_LOCAL), "start"], capture_output=True, text=True)
        if started.returncode != 0:
            pytest.skip(f"scripts/slurm_local.sh start failed: {started.stderr.strip()[-300:]}")
    yield {**os.environ, "SLURM_CONF": str(STATE / "slurm.conf")}
    if not running:
        subprocess.run([str(SLURM_LOCAL), "stop"], capture_output=True)


@pytest.fixture(autouse=True)
def no_jobs_left(cluster):
    """Whatever a test leaves in the queue (a failure mid-sweep) is cancelled after it."""
    yield
    subprocess.run(["scancel", "--user", "root"], env=cluster, capture_output=True)


def _train(env, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "segact.train", "-m", *SMALL, *overrides]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def _results(sweep: Path, name: str = FOLDS_CSV) -> pd.DataFrame:
    """Every run's file below ``sweep``, timing and folder columns dropped, in a fixed order."""
    frames = [
        pd.read_csv(path).assign(run=str(path.parent.relative_to(sweep)))
        for path in sorted(sweep.rglob(name))
        if ".submitit" not in path.parts
    ]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop(columns=[*TIMING, "run_dir", "hardware"], errors="ignore")
    return frame.sort_values([c for c in ("run", "fold", "threshold") if c in frame]).reset_index(
        drop=True
    )


def _basic(tmp_path: Path, env, *overrides: str) -> Path:
    sweep = tmp_path / "basic"
    _train(env, f"hydra.sweep.dir={sweep}", "trainer.threads=1", *overrides)
    return sweep


GRID = ("activation=sigmoid,arctan", "trainer.max_epochs=2")


@pytest.fixture(scope="module")
def basic_grid(cluster, tmp_path_factory) -> Path:
    """The basic launcher's sweep of GRID at one thread: what the cluster's must equal."""
    return _basic(tmp_path_factory.mktemp("basic_grid"), cluster, *GRID)


def test_a_fold_job_sweep_with_only_the_partition_set(cluster, basic_grid, tmp_path):
    sweep = tmp_path / "slurm"
    _train(cluster, *SLURM, f"hydra.sweep.dir={sweep}", *GRID, "trainer.fold=0,1")
    assert (sweep / "sweep_folds.csv").exists()
    pd.testing.assert_frame_equal(_results(sweep), _results(basic_grid))
    pd.testing.assert_frame_equal(
        _results(sweep, THRESHOLDS_CSV), _results(basic_grid, THRESHOLDS_CSV)
    )


def _squeue(env) -> list[str]:
    done = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env)
    return done.stdout.split()


def test_scancel_saves_stops_and_the_same_command_resumes(cluster, tmp_path):
    grid = ("trainer.fold=0,1", "trainer.max_epochs=25", "trainer.patience=25")
    sweep = tmp_path / "slurm"
    command = [sys.executable, "-m", "segact.train", "-m", *SMALL, *SLURM, *grid]
    command.append(f"hydra.sweep.dir={sweep}")
    submitting = subprocess.Popen(command, env=cluster, stderr=subprocess.PIPE, text=True)
    checkpoints = list(sweep.rglob("fold0.pt"))
    deadline = time.monotonic() + 120
    while not checkpoints and time.monotonic() < deadline:  # fold 0 has trained an epoch
        time.sleep(0.5)
        checkpoints = list(sweep.rglob("fold0.pt"))
    jobs = [j for j in _squeue(cluster) if j.endswith("_0")]
    assert checkpoints and jobs, "fold 0's job did not start in 2 minutes"
    cancelled = time.monotonic()
    subprocess.run(["scancel", jobs[0]], env=cluster, check=True)
    _, stderr = submitting.communicate(timeout=300)
    assert submitting.returncode == 1
    lines = [x for x in stderr.splitlines() if x.startswith("segact: error")]
    assert (
        lines == [lines[0]] and f"job {jobs[0]}" in lines[0] and "run the same command" in lines[0]
    )
    assert time.monotonic() - cancelled < 60  # seconds, not SLURM's accounting timeout
    assert checkpoints[0].exists()  # saved on SIGTERM, kept for the resume
    resumed = subprocess.run(command, env=cluster, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.out"))
    assert "fold 0: resumed after epoch" in logs
    basic = _basic(tmp_path, cluster, *grid)
    pd.testing.assert_frame_equal(_results(sweep), _results(basic))


OUT_OF_TIME = ("trainer.max_epochs=400", "trainer.patience=400", "trainer.fold=0")
"""About 30 s of training on an idle core (0.06-0.08 s per epoch, no checkpoint between stops):
more than SLURM's warning leaves the first attempt (20 s into the minute at the latest, less the
job's start), so the first attempt always stops, and usually two to four attempts finish it."""
ATTEMPTS_CAP = 15


def _epochs_reached(sweep: Path) -> tuple[int | None, int] | None:
    """The newest job's 'resumed after epoch N' (None: started afresh) and its last epoch; None
    for a job that trained no epoch (SLURM's warning came before Python could catch it)."""
    newest = max((sweep / ".submitit").glob("*/*_log.out"), key=lambda p: p.stat().st_mtime)
    log = newest.read_text()
    resumed = re.search(r"fold 0: resumed after epoch (\d+)", log)
    epochs = [int(e) for e in re.findall(r"fold 0 epoch (\d+)/", log)]
    if not epochs:
        return None
    return (int(resumed.group(1)) if resumed else None), max(epochs)


def test_a_job_out_of_time_is_resubmitted_and_finishes(cluster, tmp_path):
    """SLURM's warning (``--signal=USR2@40`` in a 1-minute limit) stops the fold at an epoch
    boundary with its checkpoint; README's resubmit loop (the same command again) ends it. Only
    what SLURM promises is asserted: the warning may come up to 60 s early, so how far an attempt
    gets varies (one that gets it while Python starts, before any handler, trains nothing and
    loses nothing), but every attempt that trains resumes where the last one stopped and gets
    further, and the first one that trains stops with a checkpoint."""
    sweep, basic = tmp_path / "slurm", tmp_path / "basic"
    reference = subprocess.Popen(  # the uninterrupted run, beside the cluster's (one CPU each)
        [sys.executable, "-m", "segact.train", "-m", *SMALL, *OUT_OF_TIME, "trainer.threads=1",
         "runtime.checkpoint_every_s=60", f"hydra.sweep.dir={basic}"],
        env=cluster, stdout=subprocess.DEVNULL, stderr=(tmp_path / "basic.err").open("w"),
    )  # fmt: skip
    limits = ("hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=40")
    command = (*SLURM, *limits, f"hydra.sweep.dir={sweep}", *OUT_OF_TIME)
    trained: list[tuple[int | None, int]] = []  # per attempt that trained: resumed after, last
    for _ in range(ATTEMPTS_CAP):
        done = _train(cluster, *command, "runtime.checkpoint_every_s=60", check=False)
        reached = _epochs_reached(sweep)
        if reached is not None:
            trained.append(reached)
        if done.returncode == 0:
            break
        assert done.returncode == 1, done.stderr[-2000:]
        if reached is None:
            continue  # killed before training: nothing gained, nothing lost
        assert list(sweep.rglob("fold0.pt")), "a stopped attempt left no checkpoint"
        if len(trained) > 1:  # progress: each attempt starts where the last one stopped
            assert trained[-1][0] == trained[-2][1] < trained[-1][1], trained
    assert len(trained) > 1 and trained[0][0] is None, trained  # the first one was stopped
    assert done.returncode == 0, (trained, done.stderr[-2000:])
    assert trained[-1] == (trained[-2][1], 400), trained
    assert reference.wait(timeout=600) == 0, (tmp_path / "basic.err").read_text()[-2000:]
    pd.testing.assert_frame_equal(_results(sweep, "epochs.csv"), _results(basic, "epochs.csv"))


def test_two_sweeps_at_once_compute_each_fold_once(cluster, basic_grid, tmp_path):
    sweep = tmp_path / "slurm"
    command = [sys.executable, "-m", "segact.train", "-m", *SMALL, *SLURM, *GRID]
    command.append(f"hydra.sweep.dir={sweep}")
    both = [
        subprocess.Popen(command, env=cluster, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    said = [p.communicate(timeout=600)[1][-2000:] for p in both]
    assert [p.returncode for p in both] == [0, 0], said
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.out"))
    finished = re.findall(r"fold \d+: best Dice", logs)  # a fold's last line, not its epochs'
    assert len(finished) == 4  # 2 runs x 2 folds, each computed by one job
    pd.testing.assert_frame_equal(_results(sweep), _results(basic_grid))


@pytest.mark.parametrize(
    ("request_", "said"),
    [
        ("hydra.launcher.gpus_per_node=1", "sbatch refused the jobs: sbatch: error: Invalid gene"),
        ("hydra.launcher.mem_gb=100000", "sbatch refused the jobs: sbatch: error: Memory spec"),
        ("hydra.launcher.cpus_per_task=64", "SLURM cannot start job"),
    ],
)
def test_what_the_cluster_cannot_give_is_one_line_at_once(cluster, tmp_path, request_, said):
    started = time.monotonic()
    done = _train(cluster, *SLURM, f"hydra.sweep.dir={tmp_path}", request_, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"segact: error: {said}")
    assert "hydra.launcher.cpus_per_task" in lines[0]  # the keys to change
    assert time.monotonic() - started < 60 and _squeue(cluster) == []
