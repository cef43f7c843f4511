"""Finished runs reused across sweeps (issue 33, point 4): a run whose identity finished in
another sweep folder of the same output root is copied from there, not trained again."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from segact.runs.folder import EPOCHS_CSV, FOLDS_CSV, SUMMARY_JSON, RunFolder
from segact.runs.reuse import INDEX_DIR, output_root
from tests.helpers import segact_train

REUSE = "runtime.reuse=true"  # the tests' TINY turns it off
EPOCH_LINE = re.compile(r"fold \d+ epoch \d+/")


def _run(sweep, activation: str, loss: str):
    return next(p.parent for p in sweep.rglob(SUMMARY_JSON) if f"-{activation}-{loss}-" in str(p))


def test_output_root_is_above_the_sweep_folder(tmp_path):
    run = tmp_path / "multirun" / "sweep" / "synthetic" / "Unet-resnet18" / "x" / "seed0" / "y"
    assert output_root(run, "synthetic/Unet-resnet18/x/seed0/y") == tmp_path / "multirun"
    elsewhere = tmp_path / "sw" / "sweep" / "synthetic" / "Unet-resnet18" / "x" / "seed0" / "y"
    assert output_root(elsewhere, "synthetic/Unet-resnet18/x/seed0/y") is None  # not /tmp
    assert output_root(tmp_path / "mine", "mine") is None  # a folder chosen by hand
    assert output_root(tmp_path / "x", "synthetic/Unet-resnet18/x/seed0/y") is None
    assert output_root(Path("/y"), "a/b/c/d/y") is None  # shallower than its label


@pytest.mark.slow
def test_a_run_finished_in_another_sweep_is_copied_not_trained(tmp_path):
    first, second, third = (tmp_path / "multirun" / name for name in ("a", "b", "c"))
    segact_train("activation=sigmoid,arctan", f"hydra.sweep.dir={first}", multirun=True)
    done = segact_train(
        "activation=sigmoid", "loss=dice,bce", REUSE, f"hydra.sweep.dir={second}", multirun=True
    )
    said = done.stdout + done.stderr
    assert said.count("reused the same run, finished in") == 1
    assert len(EPOCH_LINE.findall(said)) == 2 * 2  # only sigmoid + BCE trained: 2 folds x 2
    source, copy = _run(first, "sigmoid", "dice"), _run(second, "sigmoid", "dice")
    assert (copy / EPOCHS_CSV).read_bytes() == (source / EPOCHS_CSV).read_bytes()  # timing too
    folds = pd.read_csv(copy / FOLDS_CSV)
    assert set(folds["run_dir"]) == {str(copy.relative_to(second))}
    assert RunFolder(copy).read_summary()["reused_from"] == str(source)
    assert (tmp_path / "multirun" / INDEX_DIR).is_dir()
    # runtime.reuse=false: trained again, the same numbers
    again = segact_train(
        "activation=sigmoid", "runtime.reuse=false", f"hydra.sweep.dir={third}", multirun=True
    )
    assert "reused" not in again.stdout + again.stderr
    retrained = pd.read_csv(_run(third, "sigmoid", "dice") / EPOCHS_CSV)
    original = pd.read_csv(source / EPOCHS_CSV)
    pd.testing.assert_frame_equal(
        retrained.drop(columns="epoch_seconds"), original.drop(columns="epoch_seconds")
    )
