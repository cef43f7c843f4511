"""Named grids, sweep layout, failure isolation and launchers (basic, joblib, submitit_local)."""

import itertools
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from segact.config import validate
from segact.train import config_dir
from tests.helpers import TINY, compose_config

GRID = (*(o for o in TINY if not o.startswith("trainer.max_epochs")), "trainer.max_epochs=1")
NOT_NUMBERS = ["train_seconds", "run_dir"]
NAN_ACTIVATION = "_target_: torch.log\n_partial_: true\nname: log\n"  # NaN for z < 0


def _sweep_params(experiment: str) -> dict[str, list[str]]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", [f"experiment={experiment}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    return {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}


@pytest.mark.parametrize(
    ("experiment", "n_jobs"),
    [
        ("sigmoid_vs_arctan", 4),
        ("paper_grid", 21),
        ("head_comparison", 4),
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


def _multirun(sweep_dir: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "segact.train",
            "-m",
            f"hydra.sweep.dir={sweep_dir}",
            *GRID,
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _ok_numbers(sweep_dir: Path) -> pd.DataFrame:
    folds = pd.read_csv(sweep_dir / "sweep_folds.csv")
    folds = folds[folds["status"] == "ok"].drop(columns=NOT_NUMBERS).dropna(axis=1, how="all")
    return folds.sort_values(["activation", "fold"], ignore_index=True)


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    """sigmoid, arctan and log (a NaN loss), under the basic launcher."""
    root = tmp_path_factory.mktemp("basic")
    (root / "configs" / "activation").mkdir(parents=True)
    (root / "configs" / "activation" / "log.yaml").write_text(NAN_ACTIVATION)
    sweep = root / "sweep"
    result = _multirun(
        sweep, f"hydra.searchpath=[file://{root / 'configs'}]", "activation=sigmoid,arctan,log"
    )
    return root, sweep, result


def test_failed_run_is_recorded_and_the_sweep_finishes(basic_sweep):
    _, sweep, result = basic_sweep
    folds = pd.read_csv(sweep / "sweep_folds.csv")
    failed = folds[folds["status"] == "failed"]
    assert failed["activation"].tolist() == ["log"]
    assert failed["failed_epoch"].iloc[0] == 1
    assert "NonFiniteLossError" in failed["error"].iloc[0]
    assert sorted(folds.loc[folds["status"] == "ok", "activation"].unique()) == [
        "arctan",
        "sigmoid",
    ]
    assert "failed run(s)" in result.stdout


def test_run_directories_are_named_by_choices(basic_sweep):
    _, sweep, _ = basic_sweep
    runs = sorted(p.parent.relative_to(sweep).as_posix() for p in sweep.rglob("summary.json"))
    assert runs == [
        f"synthetic/Unet-resnet18/sigmoid1-{a}-dice-none/seed0/dataset.image_size=32,"
        "dataset.n_images=12,trainer.batch_size=4,trainer.folds=2,trainer.max_epochs=1"
        for a in ("arctan", "log", "sigmoid")
    ]


@pytest.mark.slow
def test_same_sweep_again_skips_finished_runs(basic_sweep):
    root, sweep, _ = basic_sweep
    before = _ok_numbers(sweep)
    result = _multirun(
        sweep, f"hydra.searchpath=[file://{root / 'configs'}]", "activation=sigmoid,arctan,log"
    )
    assert result.stdout.count("skipped") == 2  # the failed run is tried again
    pd.testing.assert_frame_equal(before, _ok_numbers(sweep))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_give_the_same_numbers_as_basic(basic_sweep, tmp_path, launcher):
    _, basic, _ = basic_sweep
    # trainer.threads=1 as in the basic sweep: float sums may differ across thread counts.
    _multirun(tmp_path, f"launcher={launcher}", "activation=sigmoid,arctan", "trainer.threads=1")
    pd.testing.assert_frame_equal(
        _ok_numbers(basic), _ok_numbers(tmp_path), check_dtype=False, check_exact=True
    )
