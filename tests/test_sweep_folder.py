"""The default sweep folder: named sweeps keep multirun/<experiment_name>; unnamed ones get a
folder of their own that the same command finds again (resume)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from segact.runs.sweep_folder import named_by_user, unnamed_folder
from tests.helpers import TINY, composed

GRID = ("trainer.max_epochs=1",)


def test_the_name_says_what_varies_and_the_hash_what_else_differs():
    name = unnamed_folder(["activation=sigmoid,arctan", "loss=dice,bce", "dataset=synthetic"])
    assert name.startswith("activation-loss_") and len(name.split("_")[-1]) == 8
    assert unnamed_folder(["loss=bce,dice", "activation=arctan,sigmoid", "dataset=synthetic"]) == (
        name
    )  # order of keys and values: the same sweep
    assert unnamed_folder(["activation=sigmoid,arctan", "loss=dice,bce", "dataset=ph2"]) != name
    assert unnamed_folder(["activation=sigmoid,softsign", "loss=dice,bce"]) != name
    assert unnamed_folder(["trainer.max_epochs=3"]).startswith("single_")
    assert unnamed_folder(["activation=a,b"], {"trainer.seed": "0,1"}).startswith(
        "activation-seed_"
    )


def test_overrides_that_change_no_number_leave_the_folder_as_it_is():
    base = ["activation=sigmoid,arctan"]
    same = [
        "launcher=joblib",
        "runtime.progress=false",
        "trainer.fold=0,1",
        "trainer.threads=1",
        "logger=mlflow",
        "hydra.launcher.n_jobs=4",
    ]
    assert unnamed_folder([*base, *same]) == unnamed_folder(base)


def test_a_sweep_is_named_by_experiment_name_or_its_override():
    assert named_by_user("paper_grid", [])
    assert named_by_user("default", ["experiment_name=default"])
    assert not named_by_user("default", ["activation=sigmoid,arctan"])


@pytest.mark.parametrize(
    ("overrides", "folder"),
    [
        (("experiment=binarize_gradients",), "multirun/binarize_gradients"),
        (("experiment=sigmoid_vs_arctan",), "multirun/sigmoid_vs_arctan"),
        (("experiment_name=mine", "trainer.max_epochs=3"), "multirun/mine"),
        (("experiment_name=default",), "multirun/default"),
    ],
)
def test_named_sweeps_keep_their_folders(overrides, folder):
    assert composed(*overrides, return_hydra_config=True).hydra.sweep.dir == folder


def _train_in(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "segact.train", "-m", *TINY, *GRID, *overrides]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if os.path.isabs(p))}
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _said_folder(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stdout.splitlines() if "sweep folder: " in line]
    assert len(lines) == 1, done.stdout[-3000:]
    return lines[0].split("sweep folder: ")[1].split(" ")[0]


@pytest.mark.slow
def test_unrelated_sweeps_get_their_own_folders_and_the_same_one_resumes(tmp_path):
    first = _train_in(tmp_path, "activation=sigmoid,arctan")
    other = _train_in(tmp_path, "loss=dice,bce")
    folders = sorted(p.name for p in (tmp_path / "multirun").iterdir())
    assert len(folders) == 2 and folders[0].startswith("activation_")
    assert folders[1].startswith("loss_")
    assert _said_folder(first) == f"multirun/{folders[0]}"
    assert _said_folder(other) == f"multirun/{folders[1]}"
    for folder in folders:  # each sweep's table holds its own runs only
        assert len(list((tmp_path / "multirun" / folder).rglob("summary.json"))) == 2

    again = _train_in(tmp_path, "activation=arctan,sigmoid")  # the same sweep, values reordered
    assert _said_folder(again) == f"multirun/{folders[0]}"
    assert again.stdout.count("finished already (summary.json says ok)") == 2
    assert "epoch 1/1" not in again.stdout  # nothing trained


@pytest.mark.slow
def test_experiment_name_keeps_its_folder(tmp_path):
    done = _train_in(tmp_path, "experiment_name=mine", "activation=sigmoid,arctan")
    assert _said_folder(done) == "multirun/mine"
    assert [p.name for p in (tmp_path / "multirun").iterdir()] == ["mine"]
    assert len(list((tmp_path / "multirun" / "mine").rglob("summary.json"))) == 2
