"""End to end on a tiny synthetic set: files, columns, determinism, zero-gradient reporting."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from segact.train import train

FOLDS_COLUMNS = [
    "dataset",
    "arch",
    "encoder",
    "head",
    "activation",
    "loss",
    "binarize",
    "protocol",
    "seed",
    "fold",
    "epoch_selected",
    "dice_at_05",
    "best_dice",
    "best_threshold",
    "mean_dice",
    "dice_per_image",
    "nll",
    "ece",
    "train_seconds",
    "status",
]
TIMING = ["train_seconds", "epoch_seconds", "run_dir"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.helpers import compose_config

    run_dir = tmp_path_factory.mktemp("run")
    summary = train(compose_config(), run_dir)
    return run_dir, summary


def test_writes_all_four_files_with_documented_columns(tiny_run):
    run_dir, summary = tiny_run
    folds = pd.read_csv(run_dir / "folds.csv")
    assert set(FOLDS_COLUMNS) <= set(folds.columns)
    assert folds["fold"].tolist() == [0, 1] and (folds["status"] == "ok").all()
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert {"fold", "epoch", "train_loss", "grad_norm", "lr", "val_mean_dice"} <= set(
        epochs.columns
    )
    assert len(epochs) == 4
    thresholds = pd.read_csv(run_dir / "thresholds.csv")
    assert list(thresholds.columns[:7]) == ["fold", "threshold", "tp", "fp", "fn", "tn", "dice"]
    assert len(thresholds) == 2 * 21
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["folds"] == 2
    assert on_disk["best_dice_mean"] == pytest.approx(folds["best_dice"].mean())
    assert summary["zero_gradient"] is False
    assert not list(run_dir.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_same_seed_gives_identical_folds_csv(tiny_run, tmp_path):
    from tests.helpers import compose_config

    first_dir, _ = tiny_run
    train(compose_config(), tmp_path)
    first = pd.read_csv(first_dir / "folds.csv").drop(columns=TIMING, errors="ignore")
    second = pd.read_csv(tmp_path / "folds.csv").drop(columns=TIMING, errors="ignore")
    pd.testing.assert_frame_equal(first, second)


def test_holdout_protocol_reports_outer_fold_at_inner_threshold(make_cfg, tmp_path):
    summary = train(make_cfg("eval.protocol=holdout", "dataset.n_images=16"), tmp_path)
    folds = pd.read_csv(tmp_path / "folds.csv")
    thresholds = pd.read_csv(tmp_path / "thresholds.csv")
    assert summary["status"] == "ok"
    for _, row in folds.iterrows():
        at = thresholds[
            (thresholds["fold"] == row["fold"]) & (thresholds["threshold"] == row["best_threshold"])
        ]
        assert at["dice"].iloc[0] == pytest.approx(row["best_dice"])
        assert row["n_select"] + row["n_train"] + row["n_report"] == 16


def test_hard_binarize_is_reported_as_zero_gradient(make_cfg, tmp_path, caplog):
    summary = train(make_cfg("loss.binarize=hard"), tmp_path)
    assert summary["zero_gradient"] is True
    assert any("exactly zero" in note for note in summary["notes"])
    assert "exactly zero" in caplog.text
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    assert (epochs["grad_norm"] == 0).all()
    assert pd.read_csv(tmp_path / "folds.csv")["zero_gradient"].all()


def test_softmax2_head_with_ce_runs(make_cfg, tmp_path):
    summary = train(make_cfg("head=softmax2", "activation=softmax", "loss=ce"), tmp_path)
    assert summary["status"] == "ok" and summary["head"] == "softmax2"


@pytest.mark.slow
def test_multirun_grid_prints_table_and_writes_sweep_csv(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "segact.train",
            "-m",
            f"hydra.sweep.dir={tmp_path}",
            "activation=sigmoid,arctan",
            "model=tiny",
            "dataset.n_images=8",
            "dataset.image_size=32",
            "trainer.folds=2",
            "trainer.max_epochs=1",
            "trainer.batch_size=4",
            "trainer.progress=false",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sweep = pd.read_csv(tmp_path / "sweep_folds.csv")
    assert sorted(sweep["activation"].unique()) == ["arctan", "sigmoid"] and len(sweep) == 4
    assert "| activation" in result.stdout and "arctan" in result.stdout


@pytest.mark.parametrize(
    "options", [("trainer.channels_last=true",), ("trainer.precision=bf16",)], ids=str
)
def test_speed_options_train_and_report(make_cfg, tmp_path, options):
    summary = train(make_cfg(*options, "trainer.folds=2", "trainer.max_epochs=1"), tmp_path)
    assert summary["status"] == "ok"
    assert 0.0 <= summary["best_dice_mean"] <= 1.0
