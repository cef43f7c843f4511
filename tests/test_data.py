"""The synthetic set, the batch interface every dataset shares, and k-fold splits."""

import numpy as np
import pytest
import torch

from segact.data import rows as rows_module
from segact.data.base import SegmentationData
from segact.data.normalize import float_channel_stats
from segact.data.rows import FileRows, MemoryRows
from segact.data.splits import case_folds, inner_split
from segact.data.synthetic import make_synthetic
from segact.errors import DatasetError
from segact.runs.runner import load_dataset
from tests.helpers import compose_config

CPU = torch.device("cpu")


def test_synthetic_is_deterministic_with_empty_masks_and_configurable_size():
    a = make_synthetic(n_images=30, image_size=32, channels=2, seed=3, empty_fraction=0.3)
    b = make_synthetic(n_images=30, image_size=32, channels=2, seed=3, empty_fraction=0.3)
    (images, masks), (images_b, masks_b) = a.tensors(), b.tensors()
    assert images.shape == (30, 2, 32, 32) and masks.shape == (30, 1, 32, 32)
    assert torch.equal(images, images_b) and torch.equal(masks, masks_b)
    empty = masks.flatten(1).sum(1) == 0
    assert 0 < empty.sum() < 30
    assert set(torch.unique(masks).tolist()) == {0.0, 1.0}
    c = make_synthetic(n_images=30, image_size=32, channels=2, seed=4)
    assert not torch.equal(images, c.tensors()[0])


def test_foreground_fraction_follows_blob_size():
    small = make_synthetic(n_images=20, image_size=32, blob_radius=(0.05, 0.08), empty_fraction=0)
    large = make_synthetic(n_images=20, image_size=32, blob_radius=(0.2, 0.3), empty_fraction=0)
    assert small.tensors()[1].mean() < large.tensors()[1].mean()


def test_synthetic_batches_equal_the_old_whole_array_standardisation_bitwise():
    data = make_synthetic(n_images=24, image_size=32)
    raw = torch.from_numpy(data.images.array)  # type: ignore[union-attr]
    assert raw.dtype == torch.float32  # the source type, kept
    std, mean = torch.std_mean(raw, dim=(0, 2, 3), keepdim=True)
    old = (raw - mean).div_(std.clamp_min(1e-6))
    index = np.array([17, 3, 3, 0, 23, 8])  # any order, repeats allowed
    images, masks = data.batch(index, CPU)
    assert torch.equal(images, old[index])
    assert masks.dtype == torch.float32 and torch.equal(masks, data.tensors()[1][index])


def test_on_device_and_resident_copies_give_the_same_batches():
    data = make_synthetic(n_images=12, image_size=16)
    assert data.on_device(CPU) is data
    resident = data.resident(CPU)
    assert isinstance(resident.images, torch.Tensor) and resident.images.dtype == torch.float32
    index = np.array([4, 1, 7])
    for got, want in zip(resident.batch(index, CPU), data.batch(index, CPU), strict=True):
        assert torch.equal(got, want)


def write_npy(tmp_path, array: np.ndarray) -> FileRows:
    np.save(tmp_path / "a.npy", array)
    return FileRows(tmp_path / "a.npy")


def test_file_rows_read_only_the_rows_asked_for_in_any_order(tmp_path, monkeypatch):
    array = np.arange(10 * 2 * 3 * 4, dtype=np.uint8).reshape(10, 2, 3, 4)
    rows = write_npy(tmp_path, array)
    assert rows.shape == array.shape and rows.dtype == np.uint8
    read = []
    original = rows_module.os.preadv

    def counting(fd, buffers, offset):
        read.append(sum(len(b) for b in buffers))
        return original(fd, buffers, offset)

    monkeypatch.setattr(rows_module.os, "preadv", counting)
    index = np.array([7, 2, 3, 4, 9, 2])
    out = np.empty((len(index), 2, 3, 4), np.uint8)
    rows.read_into(index, out)
    assert np.array_equal(out, array[index])
    assert sum(read) == out.nbytes and len(read) == 5  # 2, 2 again, 3-4 (one run), 7, 9


def test_blocks_cover_the_array_and_chunked_stats_agree(tmp_path, monkeypatch):
    array = np.random.default_rng(0).normal(3.0, 2.0, (9, 2, 5, 5)).astype(np.float32)
    rows = write_npy(tmp_path, array)
    whole = float_channel_stats(MemoryRows(array))
    monkeypatch.setattr(rows_module, "CHUNK_BYTES", 2 * rows.row_bytes)  # 5 blocks
    assert np.array_equal(np.concatenate(list(rows.blocks())), array)
    chunked = float_channel_stats(rows)
    for got, want in zip(chunked, whole, strict=True):
        assert got.shape == (1, 2, 1, 1)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_length_mismatch_is_refused():
    images = MemoryRows(np.zeros((3, 1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="differ in length"):
        SegmentationData("x", images, images, np.arange(2), ["a", "b"])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("image_size", 0, "at least 1"),
        ("n_images", 1, "at least 2"),
        ("channels", 0, "at least 1"),
        ("empty_fraction", 1.5, r"in \[0.0, 1.0\]"),
        ("blob_radius", (0.3, 0.1), "low <= high"),
    ],
)
def test_bad_synthetic_settings_name_their_key(key, value, message):
    with pytest.raises(DatasetError, match=rf"^config key 'dataset.{key}' = .*{message}"):
        make_synthetic(**{key: value})


def test_image_size_zero_through_the_config_is_one_line():
    cfg = compose_config("dataset=synthetic", "dataset.image_size=0")
    with pytest.raises(DatasetError) as error:
        load_dataset(cfg)
    assert "dataset.image_size" in str(error.value) and "\n" not in str(error.value)


def test_case_folds_never_split_a_case():
    cases = np.repeat(np.arange(10), 3)
    folds = case_folds(cases, n_folds=4, seed=0)
    assert len(folds) == 4
    seen = np.concatenate([f.val for f in folds])
    assert sorted(seen.tolist()) == list(range(30))
    for fold in folds:
        assert not set(cases[fold.train]) & set(cases[fold.val])
        inner_train, inner_val = inner_split(cases, fold.train, 0.2, seed=1)
        assert not set(cases[inner_train]) & set(cases[inner_val])
        assert sorted([*inner_train, *inner_val]) == sorted(fold.train)


@pytest.mark.parametrize("n_folds", [1, 11])
def test_case_folds_refuse_impossible_counts(n_folds):
    with pytest.raises(ValueError, match="folds"):
        case_folds(np.arange(10), n_folds, seed=0)
