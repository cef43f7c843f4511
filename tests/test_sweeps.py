"""Named grids, sweep layout, failure isolation, launchers, shared sweeps and fold jobs."""

import itertools
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from segact.config import validate
from segact.runs.folder import EPOCHS_CSV, FOLDS_CSV, SUMMARY_JSON, SWEEP_FOLDS_CSV, THRESHOLDS_CSV
from tests.helpers import TINY, compose_config, composed, numbers, segact_train

GRID = ("trainer.max_epochs=1",)
NAN_ACTIVATION = (
    "defaults:\n  - /schema/activation/activation@_here_\n  - _self_\n"
    "_target_: torch.log\n_partial_: true\nname: log\n"  # NaN for z < 0
)


def _sweep_params(experiment: str) -> dict[str, list[str]]:
    cfg = composed(f"experiment={experiment}", return_hydra_config=True)
    return {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}


@pytest.mark.parametrize(
    ("experiment", "n_jobs"),
    [
        pytest.param("sigmoid_vs_arctan", 4, marks=pytest.mark.slow),
        pytest.param("paper_grid", 21, marks=pytest.mark.slow),
        pytest.param("head_comparison", 4, marks=pytest.mark.slow),
        ("binarize_gradients", 3),
    ],
)
def test_named_grid_expands_to_valid_runs(experiment, n_jobs):
    params = _sweep_params(experiment)
    assert len(list(itertools.product(*params.values()))) == n_jobs
    # Every value of every swept key in at least one composed and validated job.
    longest = max(map(len, params.values()))
    for i in range(longest):
        job = (f"{key}={values[i % len(values)]}" for key, values in params.items())
        cfg = compose_config(f"experiment={experiment}", *job)
        validate(cfg)
        assert cfg.experiment_name == experiment


def _multirun(sweep_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    return segact_train(
        f"hydra.sweep.dir={sweep_dir}", *GRID, *overrides, multirun=True, check=check
    )


def _ok_numbers(sweep_dir: Path) -> pd.DataFrame:
    folds = numbers(sweep_dir / SWEEP_FOLDS_CSV)
    folds = folds[folds["status"] == "ok"].dropna(axis=1, how="all")
    return folds.sort_values(["activation", "fold"], ignore_index=True)


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    """sigmoid, arctan and log (a NaN loss), under the basic launcher."""
    root = tmp_path_factory.mktemp("basic")
    (root / "configs" / "activation").mkdir(parents=True)
    (root / "configs" / "activation" / "log.yaml").write_text(NAN_ACTIVATION)
    sweep = root / "sweep"
    search = f"hydra.searchpath=[file://{root / 'configs'}]"
    result = _multirun(sweep, search, "activation=sigmoid,arctan,log", check=False)
    return search, sweep, result


@pytest.mark.slow
def test_failed_run_is_recorded_and_the_sweep_finishes_non_zero(basic_sweep):
    _, sweep, result = basic_sweep
    assert result.returncode == 1
    folds = pd.read_csv(sweep / SWEEP_FOLDS_CSV)
    failed = folds[folds["status"] == "failed"]
    assert failed["activation"].tolist() == ["log"]
    assert failed["failed_epoch"].iloc[0] == 1
    assert "NonFiniteLossError" in failed["error"].iloc[0]
    ok = sorted(folds.loc[folds["status"] == "ok", "activation"].unique())
    assert ok == ["arctan", "sigmoid"]
    assert "failed run(s)" in result.stdout + result.stderr
    assert "| activation" in result.stdout  # the Dice table of the finished runs


@pytest.mark.slow
def test_run_directories_are_named_by_choices_and_recorded_relative(basic_sweep):
    _, sweep, _ = basic_sweep
    runs = sorted(p.parent.relative_to(sweep).as_posix() for p in sweep.rglob(SUMMARY_JSON))
    assert runs == [
        f"synthetic/Unet-resnet18/sigmoid1-{a}-dice-none/seed0/dataset.image_size=32,"
        "dataset.n_images=12,trainer.batch_size=4,trainer.folds=2,trainer.max_epochs=1"
        for a in ("arctan", "log", "sigmoid")
    ]
    recorded = set(pd.read_csv(sweep / SWEEP_FOLDS_CSV)["run_dir"])
    assert recorded == set(runs)


@pytest.mark.slow
def test_same_sweep_again_skips_finished_runs(basic_sweep):
    search, sweep, _ = basic_sweep
    before = _ok_numbers(sweep)
    result = _multirun(sweep, search, "activation=sigmoid,arctan,log", check=False)
    assert (result.stdout + result.stderr).count("skipped") == 2  # the failed run is tried again
    pd.testing.assert_frame_equal(before, _ok_numbers(sweep))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_give_the_same_numbers_at_the_same_thread_count(basic_sweep, tmp_path, launcher):
    _, basic, _ = basic_sweep
    # The same trainer.threads as the basic sweep: float sums differ across thread counts, and
    # the thread count is part of a run's identity.
    _multirun(tmp_path, f"launcher={launcher}", "activation=sigmoid,arctan", "trainer.threads=1")
    ours, theirs = _ok_numbers(basic), _ok_numbers(tmp_path)
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False, check_exact=True)


@pytest.mark.slow
def test_folds_as_jobs_give_the_same_files_as_one_job(basic_sweep, tmp_path):
    _, basic, _ = basic_sweep
    _multirun(tmp_path, "activation=sigmoid", "trainer.fold=0,1")
    [one_job] = [p.parent for p in basic.rglob(SUMMARY_JSON) if "-sigmoid-" in str(p)]
    [fold_jobs] = [p.parent for p in tmp_path.rglob(SUMMARY_JSON)]
    assert one_job.relative_to(basic) == fold_jobs.relative_to(tmp_path)  # one run folder
    for name in (FOLDS_CSV, EPOCHS_CSV, THRESHOLDS_CSV):
        pd.testing.assert_frame_equal(numbers(one_job / name), numbers(fold_jobs / name))


@pytest.mark.slow
def test_two_copies_of_a_sweep_share_the_work(tmp_path):
    command = [
        sys.executable,
        "-m",
        "segact.train",
        "-m",
        f"hydra.sweep.dir={tmp_path}",
        *TINY,
        *GRID,
        "trainer.folds=3",
        "dataset.n_images=18",
        "activation=sigmoid,arctan",
    ]
    copies = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in copies]
    assert all(p.returncode == 0 for p in copies), outputs
    computed = sum(out.count(": best Dice") for out in outputs)
    assert computed == 2 * 3  # each fold of each run computed once
    for summary in tmp_path.rglob(SUMMARY_JSON):
        assert '"status": "ok"' in summary.read_text()


@pytest.mark.slow
def test_jobs_in_other_processes_write_to_the_sweeps_default_folder(tmp_path):
    """The unnamed sweep's folder is computed once, from the sweep's overrides: joblib's worker
    processes get it too (not one folder per job from each job's own overrides)."""
    command = [sys.executable, "-m", "segact.train", "-m", *TINY, *GRID, "launcher=joblib"]
    done = subprocess.run(
        [*command, "activation=sigmoid,arctan"], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [sweep] = (tmp_path / "multirun").iterdir()
    assert sweep.name.startswith("activation_")
    assert f"sweep folder: multirun/{sweep.name}" in done.stdout
    assert "sweep: run 1 of 2" in done.stdout and "sweep: run 2 of 2" in done.stdout
    folds = pd.read_csv(sweep / SWEEP_FOLDS_CSV)
    assert sorted(folds["activation"].unique()) == ["arctan", "sigmoid"]
    assert not folds["run_dir"].str.startswith(("/", "..")).any()  # relative to the sweep
