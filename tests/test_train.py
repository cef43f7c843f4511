"""End to end on a tiny synthetic set: files, columns, determinism, protocols, flags."""

import json

import pandas as pd
import pytest

from segact.runs import schema
from segact.runs.folder import EPOCHS_CSV, FOLDS_CSV, THRESHOLDS_CSV, RunFolder
from segact.runs.runner import train
from tests.helpers import compose_config, numbers

pytestmark = pytest.mark.slow

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
    "threshold_averaged_dice",
    "dice_per_image_at_best_threshold",
    "nll",
    "ece",
    "paper_best_dice",
    "paper_threshold_averaged_dice",
    "paper_nll",
    "hit_max_epochs",
    "degenerate",
    "train_seconds",
    "status",
    "config_hash",
    "run_dir",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    summary = train(compose_config(), run_dir)
    return run_dir, summary


def test_writes_all_four_files_with_documented_columns(tiny_run):
    run_dir, summary = tiny_run
    folds = pd.read_csv(RunFolder(run_dir).folds_csv)
    assert set(FOLDS_COLUMNS) <= set(folds.columns)
    assert folds["fold"].tolist() == [0, 1] and (folds["status"] == "ok").all()
    assert (folds["run_dir"] == run_dir.name).all()  # relative, not this machine's path
    epochs = pd.read_csv(RunFolder(run_dir).epochs_csv)
    assert {"fold", "epoch", "train_loss", "grad_norm", "lr", "val_threshold_averaged_dice"} <= set(
        epochs
    )
    assert len(epochs) == 4
    thresholds = pd.read_csv(RunFolder(run_dir).thresholds_csv)
    assert list(thresholds.columns[:7]) == ["fold", "threshold", "tp", "fp", "fn", "tn", "dice"]
    assert len(thresholds) == 2 * 21
    on_disk = json.loads((RunFolder(run_dir).summary_json).read_text())
    assert on_disk["status"] == "ok" and on_disk["folds"] == 2
    assert on_disk["best_dice_mean"] == pytest.approx(folds["best_dice"].mean())
    assert on_disk["files"][FOLDS_CSV]["rows"] == 2
    assert on_disk["identity"]["trainer.lr"] == 0.001
    assert summary["zero_gradient"] is False
    assert not list(run_dir.rglob(".*.tmp"))  # atomic writes leave no temporary files


def test_every_column_written_is_declared_in_the_schema_in_its_order(tiny_run):
    run_dir = tiny_run[0]
    files = {FOLDS_CSV: schema.FOLDS, EPOCHS_CSV: schema.EPOCHS, THRESHOLDS_CSV: schema.THRESHOLDS}
    for name, table in files.items():
        header = list(pd.read_csv(run_dir / name, nrows=0).columns)
        assert header == [column for column in table.names() if column in header], name


def test_paper_aggregates_and_cap_flag_follow_the_epoch_history(tiny_run):
    run_dir, _ = tiny_run
    folds = pd.read_csv(RunFolder(run_dir).folds_csv).set_index("fold")
    epochs = pd.read_csv(RunFolder(run_dir).epochs_csv).groupby("fold")
    assert (folds["paper_best_dice"] == epochs["val_best_dice"].max()).all()
    assert (
        folds["paper_threshold_averaged_dice"] == epochs["val_threshold_averaged_dice"].max()
    ).all()
    assert (folds["paper_nll"] == epochs["val_nll"].min()).all()
    assert folds["hit_max_epochs"].all()  # 2 epochs, patience 5: stopped by the cap


def test_same_seed_gives_identical_result_files(tiny_run, tmp_path):
    first_dir, _ = tiny_run
    train(compose_config(), tmp_path)
    for name in (FOLDS_CSV, EPOCHS_CSV, THRESHOLDS_CSV):
        first, second = numbers(first_dir / name), numbers(tmp_path / name)
        pd.testing.assert_frame_equal(
            first.drop(columns="run_dir", errors="ignore"),
            second.drop(columns="run_dir", errors="ignore"),
        )


def test_early_stopping_is_not_flagged_as_hitting_the_cap(tmp_path):
    train(compose_config("trainer.max_epochs=6", "trainer.patience=1"), tmp_path)
    folds = pd.read_csv(RunFolder(tmp_path).folds_csv)
    stopped = folds["epochs_run"] < 6
    assert (folds["hit_max_epochs"] == ~stopped).all()


def test_holdout_protocol_reports_outer_fold_at_inner_threshold(tmp_path):
    summary = train(compose_config("eval.protocol=holdout", "dataset.n_images=16"), tmp_path)
    folds = pd.read_csv(RunFolder(tmp_path).folds_csv)
    thresholds = pd.read_csv(RunFolder(tmp_path).thresholds_csv)
    assert summary["status"] == "ok"
    for _, row in folds.iterrows():
        at = thresholds[
            (thresholds["fold"] == row["fold"]) & (thresholds["threshold"] == row["best_threshold"])
        ]
        assert at["dice"].iloc[0] == pytest.approx(row["best_dice"])
        assert row["n_select"] + row["n_train"] + row["n_report"] == 16


def test_hard_binarize_is_reported_as_zero_gradient_and_degenerate(tmp_path, caplog):
    summary = train(compose_config("loss.binarize=hard"), tmp_path)
    assert summary["zero_gradient"] is True
    assert any("exactly zero" in note for note in summary["notes"])
    assert "exactly zero" in caplog.text
    epochs = pd.read_csv(RunFolder(tmp_path).epochs_csv)
    assert (epochs["grad_norm"] == 0).all()
    folds = pd.read_csv(RunFolder(tmp_path).folds_csv)
    assert folds["zero_gradient"].all()
    assert folds["degenerate"].all()


def test_softmax2_head_with_ce_runs(tmp_path):
    summary = train(compose_config("head=softmax2", "activation=softmax", "loss=ce"), tmp_path)
    assert summary["status"] == "ok" and summary["head"] == "softmax2"


def test_sgd_optimizer_and_paper_trainer_are_config_choices(tmp_path):
    cfg = compose_config(
        "optimizer=sgd", "trainer=paper", "trainer.max_epochs=1", "trainer.folds=2"
    )
    assert cfg.trainer.patience == 11 and cfg.scheduler.factor == 0.1  # batch size: TINY
    summary = train(cfg, tmp_path)
    assert summary["status"] == "ok"
    assert summary["identity"]["optimizer._target_"] == "torch.optim.SGD"


@pytest.mark.parametrize(
    "options", [("trainer.channels_last=false",), ("trainer.precision=bf16",)], ids=str
)
def test_speed_options_train_and_report(tmp_path, options):
    summary = train(compose_config(*options, "trainer.max_epochs=1"), tmp_path)
    assert summary["status"] == "ok"
    assert 0.0 <= summary["best_dice_mean"] <= 1.0
