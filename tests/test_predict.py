"""Saved models and ``segact-predict``: each fold's model reproduces the Dice its fold recorded,
exactly; NIfTI in and out; one error line (exit 2, nothing written) for each bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import segact
from segact.data.splits import case_folds
from segact.errors import ModelError
from segact.io import write_json
from segact.predict import main
from segact.runs.folder import RunFolder
from segact.runs.identity import config_hash, identity
from segact.runs.models import check_tensors, load_ensemble
from segact.runs.predict import PredictOptions, find_inputs, in_run_layout, predict, predictions
from segact.runs.runner import load_dataset, train
from tests.data_fixtures import write_folder
from tests.helpers import TINY, compose_config

THRESHOLDS = [0.25, 0.5, 0.75]
CLIP = (np.float32(1e-7), np.float32(1 - 1e-7))  # the evaluation's clip (nn.activations.EPS)
SIZE = (24, 20)  # data_fixtures.make_pair's images: training at their own size


def _file_config(dataset: str, root: Path, size: tuple[int, int], tmp: Path, *overrides: str):
    """A tiny run of the files under ``root`` (``dataset=folder`` or ``nifti``), cached in tmp."""
    return compose_config(
        *(option for option in TINY if not option.startswith("dataset.")),
        "trainer.max_epochs=2",
        "runtime.save_models=true",
        f"eval.thresholds=[{','.join(map(str, THRESHOLDS))}]",
        f"dataset={dataset}",
        f"dataset.root={root}",
        f"dataset.image_size=[{size[0]},{size[1]}]",
        f"dataset.cache_dir={tmp / 'cache'}",
        *overrides,
        tiny=False,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-fold run on a tiny image folder, its config and its data."""
    tmp = tmp_path_factory.mktemp("predict")
    root = write_folder(tmp / "data", n=8)
    cfg = _file_config("folder", root, SIZE, tmp)
    assert train(cfg, tmp / "run")["status"] == "ok"
    return tmp / "run", cfg, load_dataset(cfg), root


def validation_images(trained, fold: int, folder: Path) -> tuple[Path, np.ndarray]:
    """Fold ``fold``'s validation images copied to ``folder``, and their masks as trained."""
    _, cfg, data, root = trained
    trainer = cfg.trainer
    val = case_folds(data.cases, trainer.folds, trainer.seed, trainer.shuffle_folds)[fold].val
    folder.mkdir(parents=True)
    for i in val:
        shutil.copy(root / "images" / f"{data.names[i]}.png", folder)
    return folder, data.batch(val, torch.device("cpu"))[1][:, 0].numpy()


def sweep(probability: np.ndarray, masks: np.ndarray) -> pd.DataFrame:
    return segact.threshold_sweep(np.clip(probability, *CLIP), masks, THRESHOLDS)


def fold_row(run: Path, fold: int) -> pd.Series:
    folds = pd.read_csv(run / "folds.csv")
    return folds.loc[folds["fold"] == fold].iloc[0]


@pytest.mark.slow
def test_each_fold_keeps_its_reported_model_with_a_card(trained):
    run, _, data, _ = trained

    summary = json.loads((run / "summary.json").read_text())
    for fold in range(2):
        card = json.loads(RunFolder(run).model_card(fold).read_text())
        assert card["config_hash"] == summary["config_hash"] and card["fold"] == fold
        assert card["threshold"] == fold_row(run, fold)["best_threshold"]
        assert card["model"] == {"arch": "Unet", "encoder": "resnet18", "kwargs": dict(
            encoder_depth=3, decoder_channels=[32, 16, 8])}  # fmt: skip
        assert card["head"] == "sigmoid1" and card["activation"] == {"name": "sigmoid"}
        assert card["input_size"] == list(SIZE) and card["in_channels"] == 3
        norm = data.normalization
        assert card["normalization"]["mode"] == "dataset"
        assert torch.equal(torch.tensor(card["normalization"]["mean"]), norm.mean.reshape(-1))
        with safe_open(RunFolder(run).model_weights(fold), "pt") as weights:  # no pickle
            assert weights.metadata()["config_hash"] == summary["config_hash"]
    assert RunFolder(run).foreign_entries() == []  # models/ is the run's own


@pytest.mark.slow
def test_a_fold_model_gives_exactly_the_dice_its_fold_recorded(trained, tmp_path):
    run = trained[0]
    thresholds = pd.read_csv(run / "thresholds.csv")
    for fold in range(2):
        folder, masks = validation_images(trained, fold, tmp_path / f"val{fold}")
        ensemble = load_ensemble(run, fold, torch.device("cpu"))
        batch_size = ensemble.card["eval_batch_size"]  # the evaluation's batches, in order
        found = list(predictions(ensemble, find_inputs(folder), batch_size))
        table = sweep(np.stack([p.probability for p in found]), masks)
        row = fold_row(run, fold)
        best = table.loc[table["threshold"] == row["best_threshold"]].iloc[0]
        assert best["dice"] == row["best_dice"]  # exactly, not approximately
        recorded = thresholds.loc[thresholds["fold"] == fold, ["tp", "fp", "fn", "tn"]]
        assert table[["tp", "fp", "fn", "tn"]].to_numpy().tolist() == recorded.to_numpy().tolist()


def _cli(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the run's trainer.threads=1: the same sums
    command = [sys.executable, "-m", "segact.predict", *map(str, args), "--no-progress"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_the_cli_writes_masks_and_probabilities_that_give_the_fold_dice(trained, tmp_path):
    run, fold = trained[0], 1
    folder, masks = validation_images(trained, fold, tmp_path / "val")
    result = _cli(run, folder, "--out", tmp_path / "out", "--fold", fold, "--probabilities")
    assert result.returncode == 0, result.stderr
    names = sorted(p.stem for p in folder.iterdir())
    read = [np.asarray(Image.open(tmp_path / "out" / f"{n}_probability.png")) for n in names]
    probability = np.stack(read).astype(np.float64) / 65535
    mask = np.stack([np.asarray(Image.open(tmp_path / "out" / f"{n}.png")) for n in names])
    row = fold_row(run, fold)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, probability >= row["best_threshold"])
    # 16-bit quantisation is exact at 0.5 (0.5 x 65535 lies half-way between two levels)
    at_05 = sweep(probability, masks).set_index("threshold").loc[0.5, "dice"]
    assert at_05 == row["dice_at_05"]


@pytest.mark.slow
def test_all_folds_average_and_resize_back_to_the_input(trained, tmp_path):
    run = trained[0]
    big = tmp_path / "in" / "big.png"
    big.parent.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (50, 37, 3), dtype=np.uint8)).save(big)
    main([str(run), str(big), "--out", str(tmp_path / "out"), "--probabilities", "--no-progress"])
    assert np.asarray(Image.open(tmp_path / "out" / "big.png")).shape == (50, 37)
    probability = np.asarray(Image.open(tmp_path / "out" / "big_probability.png"))
    assert probability.shape == (50, 37) and probability.dtype == np.uint16


def _refused(capsys, *args: object) -> str:
    with pytest.raises(SystemExit) as stopped:
        main([*map(str, args), "--no-progress"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("segact-predict: error: ") and err.count("\n") == 1, err
    return err


def test_a_folder_that_is_no_finished_run_is_refused(tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(image)
    err = _refused(capsys, tmp_path / "nothing", image, "--out", tmp_path / "out")
    assert "is not a finished segact run" in err and not (tmp_path / "out").exists()


def test_a_run_without_saved_models_is_refused(tmp_path, capsys):
    summary = {"status": "ok", "config_hash": "abc", "folds": 2, "identity": {"trainer.folds": 2}}
    write_json(summary, RunFolder(tmp_path / "run").summary_json)
    err = _refused(capsys, tmp_path / "run", tmp_path, "--out", tmp_path / "out")
    assert "has no saved models" in err and "runtime.save_models" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_bad_runs_and_inputs_are_one_line_and_write_nothing(trained, tmp_path, capsys):
    run = trained[0]
    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    RunFolder(partial).model_weights(1).unlink()
    good = tmp_path / "in" / "good.png"
    good.parent.mkdir()
    Image.fromarray(np.zeros((24, 20, 3), np.uint8)).save(good)
    broken = tmp_path / "broken" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"not a png")
    gray = tmp_path / "gray" / "gray.png"
    gray.parent.mkdir()
    Image.fromarray(np.zeros((24, 20), np.uint8)).save(gray)
    out = tmp_path / "out"
    cases = [
        ((partial, good), "fold 1 has no saved model"),
        ((run, good, "--fold", 5), "has folds 0 to 1"),
        ((run, broken), "cannot be read"),
        ((run, gray), "has 1 channel(s), but the run's model takes 3"),
        ((run, tmp_path / "missing.png"), "no such file or folder"),
    ]
    for args, message in cases:
        assert message in _refused(capsys, *args, "--out", out)
        assert not out.exists()
    (out / "x").mkdir(parents=True)
    main([str(run), str(good), "--out", str(out), "--no-progress"])  # an earlier prediction
    assert "--overwrite" in _refused(capsys, run, good, "--out", out)
    assert sorted(p.name for p in out.iterdir()) == [".segact-predict.json", "good.png", "x"]
    main([str(run), str(good), "--out", str(out), "--overwrite", "--no-progress"])


@pytest.mark.slow
def test_a_bad_input_among_good_ones_writes_nothing(trained, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((24, 20, 3), np.uint8)).save(folder / f"{name}.png")
    (folder / "c.png").write_bytes(b"broken")
    _refused(capsys, trained[0], folder, "--out", tmp_path / "out", "--batch-size", 1)
    assert not (tmp_path / "out").exists()


def test_tensor_names_and_shapes_that_differ_are_named_in_one_line():
    expected = {"a": torch.zeros(2), "b": torch.zeros(3, 3), "c": torch.zeros(1)}
    saved = {"a": torch.zeros(2), "b": torch.zeros(3, 4), "d": torch.zeros(1)}
    with pytest.raises(ModelError, match=r"missing c; unexpected d; shape of b 3x4 in the file"):
        check_tensors(saved, expected, Path("fold0.safetensors"))


def test_gray_images_feed_a_colour_model_only_where_training_repeated_them():
    gray = np.zeros((1, 1, 4, 4), np.uint8)
    card = {"in_channels": 3, "pixels": "uint8", "input": {"gray_to_rgb": True}}
    assert in_run_layout(gray, card, Path("g.png")).shape == (1, 3, 4, 4)
    with pytest.raises(ModelError, match="has 1 channel"):
        in_run_layout(gray, {**card, "input": {"gray_to_rgb": False}}, Path("g.png"))
    sixteen_bit = np.full((1, 3, 2, 2), 0.5, np.float32)  # an 8-bit model: the uint8 scale
    assert in_run_layout(sixteen_bit, card, Path("x.tif")).max() == np.float32(127.5)


def test_saving_models_changes_no_run_identity():
    on, off = compose_config("runtime.save_models=true"), compose_config()
    assert on.runtime.save_models and not off.runtime.save_models
    assert config_hash(identity(on, "cpu", 1)) == config_hash(identity(off, "cpu", 1))


SHAPE = (12, 10, 4)  # x, y, z: slices along z at their own size (12 x 10)


def write_volumes(root: Path, n_cases: int = 3) -> Path:
    nibabel = pytest.importorskip("nibabel")
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    for case in range(n_cases):
        label = np.zeros(SHAPE, np.uint8)
        label[3:8, 2:7, 1:3] = 1
        image = rng.normal(100, 10, SHAPE).astype(np.float32) + 50 * label
        name = f"case_{case:02d}.nii.gz"
        nibabel.save(nibabel.Nifti1Image(image, affine), root / "imagesTr" / name)
        nibabel.save(nibabel.Nifti1Image(label, affine), root / "labelsTr" / name)
    return root


@pytest.mark.slow
def test_volumes_get_masks_with_their_affine_and_the_fold_dice(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    root = write_volumes(tmp_path / "task", n_cases=2)  # a fold's validation: one volume, one batch
    cfg = _file_config("nifti", root, SHAPE, tmp_path)
    assert train(cfg, tmp_path / "run")["status"] == "ok"
    data, fold = load_dataset(cfg), 0
    val = case_folds(data.cases, 2, cfg.trainer.seed, cfg.trainer.shuffle_folds)[fold].val
    cases = sorted(set(data.cases[val]))
    out = tmp_path / "out"
    for case in cases:
        volume = root / "imagesTr" / f"{case}.nii.gz"
        main([str(tmp_path / "run"), str(volume), "--out", str(out), "--fold", str(fold),
              "--probabilities", "--no-progress"])  # fmt: skip
    mask = nibabel.load(out / f"{cases[0]}.nii.gz")
    assert mask.shape == SHAPE and np.array_equal(mask.affine, np.diag([0.5, 0.5, 2.0, 1.0]))
    assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1}
    loaded = [nibabel.load(out / f"{case}_probability.nii.gz") for case in cases]
    assert all(volume.get_data_dtype() == np.float32 for volume in loaded)
    slices = np.concatenate([np.moveaxis(v.get_fdata(dtype=np.float32), 2, 0) for v in loaded])
    masks = data.batch(val, torch.device("cpu"))[1][:, 0].numpy()
    row = fold_row(tmp_path / "run", fold)
    best = sweep(slices, masks).set_index("threshold").loc[row["best_threshold"], "dice"]
    assert best == row["best_dice"]
    assert "trained on NIfTI volumes" in str(_bad_kind(tmp_path, root))


def _bad_kind(tmp_path: Path, root: Path) -> ModelError:
    image = tmp_path / "flat.png"
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(image)
    with pytest.raises(ModelError) as refused:
        predict(tmp_path / "run", image, tmp_path / "out2", PredictOptions(progress=False))
    return refused.value


@pytest.mark.slow
def test_a_fold_of_a_run_still_in_progress_can_be_applied(tmp_path):
    """Fold jobs: fold 0 finished, fold 1 not yet: fold 0's model applies (checked against its
    finished record), the ensemble of every fold and the unfinished fold are refused."""
    root = write_folder(tmp_path / "data", n=8)
    cfg = _file_config("folder", root, SIZE, tmp_path, "trainer.fold=0")
    run = tmp_path / "run"
    assert train(cfg, run)["status"] == "incomplete"
    ensemble = load_ensemble(run, 0, torch.device("cpu"))
    assert len(ensemble.forwards) == 1
    for fold in (None, 1):
        with pytest.raises(ModelError, match="is not a finished segact run"):
            load_ensemble(run, fold, torch.device("cpu"))
