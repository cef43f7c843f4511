"""dataset=nifti on tiny generated volumes: slicing, channels, label mapping, cases, bad input."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

from segact.config import ConfigError
from segact.data.nifti import load_nifti
from segact.data.splits import case_folds
from segact.errors import DatasetError
from segact.runs.runner import load_dataset
from tests.helpers import compose_config

nibabel = pytest.importorskip("nibabel")

SHAPE = (12, 10, 4)  # x, y, z


def save(array: np.ndarray, path: Path) -> None:
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), path)


def write_msd(root: Path, n_cases: int = 3, modalities: int = 2, nnunet: bool = False) -> Path:
    """MSD layout; labels {0, 1, 2} in a box, images brighter inside it."""
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for case in range(n_cases):
        label = np.zeros(SHAPE, np.uint8)
        label[3:8, 2:6, 1:3], label[3:8, 6:8, 1:3] = 1, 2
        image = rng.normal(100 * (case + 1), 10, (*SHAPE, modalities)).astype(np.float32)
        image += 50 * (label > 0)[..., None]
        name = f"prostate_{case:02d}"
        if nnunet:
            for m in range(modalities):
                save(image[..., m], root / "imagesTr" / f"{name}_{m:04d}.nii.gz")
        else:
            save(image if modalities > 1 else image[..., 0], root / "imagesTr" / f"{name}.nii.gz")
        save(label, root / "labelsTr" / f"{name}.nii.gz")
    return root


def load(root: Path, **kwargs):
    options = {"image_size": 8, "cache": False, "foreground_labels": [1, 2], **kwargs}
    return load_nifti(str(root), **options)


def test_volumes_become_slices_with_modalities_as_channels(tmp_path):
    data = load(write_msd(tmp_path / "task"))
    images, masks = data.tensors()
    assert images.shape == (3 * 4, 2, 8, 8) and masks.shape == (12, 1, 8, 8)
    assert data.images.dtype == np.float32  # z-scored volumes stay float32
    assert data.n_cases == 3 and data.cases[:4].tolist() == ["prostate_00"] * 4
    assert data.names[:2] == ["prostate_00_000", "prostate_00_001"]
    assert masks[1].sum() > 0 and masks[0].sum() == 0  # foreground in z = 1, 2 only
    per_volume = images[:4].mean(dim=(0, 2, 3))
    assert per_volume.abs().max() < 0.2  # z-scored per volume although means differ 100-fold


def test_axis_modalities_and_label_subset(tmp_path):
    root = write_msd(tmp_path / "task")
    along_x = load(root, axis=0, modalities=[1], foreground_labels=[2], image_size=[6, 5])
    assert along_x.images.shape == (3 * 12, 1, 6, 5)
    full = load(root, axis=0, image_size=[10, 4])
    assert 0 < along_x.tensors()[1].sum() < full.tensors()[1].sum()
    with pytest.raises(DatasetError, match=r"'dataset.modalities' = \[2\]: .* has 2 modalities"):
        load(root, modalities=[2])
    with pytest.raises(DatasetError, match=r"'dataset.image_size' = 0"):
        load(root, image_size=0)


def test_nnunet_modality_files_are_channels_and_msd_preset_composes(tmp_path):
    root = write_msd(tmp_path / "task", nnunet=True)
    assert load(root).in_channels == 2
    cfg = compose_config(
        "dataset=msd_prostate",
        f"dataset.root={root}",
        "dataset.image_size=8",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        tiny=False,
    )
    data = load_dataset(cfg)
    assert data.name == "msd_prostate" and data.n_cases == 3


def test_folds_split_by_volume_never_by_slice(tmp_path):
    data = load(write_msd(tmp_path / "task", n_cases=5, modalities=1))
    for fold in case_folds(data.cases, 2, seed=0):
        assert not set(data.cases[fold.train]) & set(data.cases[fold.val])
        assert len(fold.val) % 4 == 0  # whole volumes


def test_multi_label_without_rule_names_the_file(tmp_path):
    root = write_msd(tmp_path / "task")
    with pytest.raises(ConfigError, match=r"prostate_00\.nii\.gz: the mask has 3 values"):
        load(root, foreground_labels=None)


def test_shape_mismatch_corrupt_and_missing_labels(tmp_path):
    root = write_msd(tmp_path / "task")
    save(np.zeros((5, 5, 4), np.uint8), root / "labelsTr" / "prostate_01.nii.gz")
    with pytest.raises(DatasetError, match=r"prostate_01\.nii\.gz has shape \(12, 10, 4\)"):
        load(root)
    (root / "labelsTr" / "prostate_01.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError, match=r"prostate_01\.nii\.gz cannot be read as NIfTI"):
        load(root)
    (root / "labelsTr" / "prostate_01.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"images without a mask \(1: prostate_01\)"):
        load(root)
    for path in (root / "labelsTr").iterdir():
        path.unlink()
    (root / "labelsTr").rmdir()
    with pytest.raises(DatasetError, match=r"labelsTr is missing"):
        load(root)


def test_a_single_volume_is_refused_before_training(tmp_path):
    root = write_msd(tmp_path / "task", n_cases=1)
    with pytest.raises(DatasetError, match=r"needs at least 2 cases; found 1 in .*task"):
        load(root)


def test_cached_volumes_are_not_read_again(tmp_path, monkeypatch):
    root = write_msd(tmp_path / "task")
    first = load_nifti(str(root), image_size=8, foreground_labels=[1, 2], cache_dir=str(tmp_path))

    def fail(path):
        raise AssertionError(f"read {path} although cached")

    monkeypatch.setattr("segact.data.nifti.read_volume", fail)
    second = load_nifti(str(root), image_size=8, foreground_labels=[1, 2], cache_dir=str(tmp_path))
    assert torch.equal(first.tensors()[0], second.tensors()[0])
    assert np.array_equal(first.cases, second.cases)


def test_nfc_volume_pairs_with_nfd_label(tmp_path):
    root = write_msd(tmp_path / "task", modalities=1)
    composed, decomposed = (unicodedata.normalize(form, "próstata") for form in ("NFC", "NFD"))
    (root / "imagesTr" / "prostate_01.nii.gz").rename(root / "imagesTr" / f"{composed}.nii.gz")
    (root / "labelsTr" / "prostate_01.nii.gz").rename(root / "labelsTr" / f"{decomposed}.nii.gz")
    data = load(root)
    assert data.n_cases == 3 and set(data.cases) == {"prostate_00", "prostate_02", composed}
