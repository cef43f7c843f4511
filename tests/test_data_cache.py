"""The preprocessed cache: a hit decodes nothing; a changed file or setting decodes again."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image

from segact.data.cache import cache_key, default_cache_dir
from segact.data.folder import load_folder
from segact.data.hashing import files_fingerprint
from segact.data.rows import FileRows
from tests.data_fixtures import count_decodes, write_folder


@pytest.fixture
def decodes(monkeypatch):
    """Count the files the folder loader decodes."""
    return count_decodes(monkeypatch)


def test_second_load_hits_the_cache(tmp_path, decodes, monkeypatch):
    root = write_folder(tmp_path / "data", n=4)
    first = load_folder(str(root), image_size=16, cache_dir=str(tmp_path / "cache"))
    assert len(decodes) == 8
    second = load_folder(str(root), image_size=16, cache_dir=str(tmp_path / "cache"))
    assert len(decodes) == 8
    for a, b in zip(first.tensors(), second.tensors(), strict=True):
        assert torch.equal(a, b)
    assert first.names == second.names
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    uncached = load_folder(str(root), image_size=16, cache=False)
    assert torch.equal(first.tensors()[0], uncached.tensors()[0])
    assert not list(tmp_path.glob("segact-*"))  # uncached: the temporary files are gone


def test_changed_file_or_setting_invalidates(tmp_path, decodes):
    root = write_folder(tmp_path / "data", n=3)
    cache = str(tmp_path / "cache")
    before = load_folder(str(root), image_size=16, cache_dir=cache, normalize="none")
    mask_path = root / "masks" / "img01.png"
    Image.fromarray(np.full((24, 20), 255, np.uint8)).save(mask_path)
    stat = mask_path.stat()
    os.utime(mask_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    decodes.clear()
    after = load_folder(str(root), image_size=16, cache_dir=cache, normalize="none")
    assert len(decodes) == 6
    assert after.tensors()[1][1].all() and not before.tensors()[1][1].all()
    decodes.clear()
    load_folder(str(root), image_size=8, cache_dir=cache)
    assert len(decodes) == 6
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3


def test_cache_files_are_compact_arrays_read_by_the_batch(tmp_path):
    root = write_folder(tmp_path / "data", n=4)
    data = load_folder(str(root), image_size=16, cache_dir=str(tmp_path / "cache"))
    [images] = (tmp_path / "cache").glob("data-*.images.npy")
    [masks] = (tmp_path / "cache").glob("data-*.masks.npy")
    assert np.load(images, mmap_mode="r").dtype == np.uint8
    assert np.load(images, mmap_mode="r").shape == (4, 3, 16, 16)
    assert set(np.unique(np.load(masks))) == {0, 1}
    assert isinstance(data.images, FileRows) and data.images.path == images
    assert not list((tmp_path / "cache").glob(".*.tmp"))  # written atomically, nothing left


def test_cached_load_reads_no_pixel(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data", n=3)
    cache = str(tmp_path / "cache")
    first = load_folder(str(root), image_size=16, cache_dir=cache)

    def refuse(self):
        raise AssertionError(f"{self.path} read whole although its statistics are cached")

    monkeypatch.setattr(FileRows, "blocks", refuse)
    again = load_folder(str(root), image_size=16, cache_dir=cache)
    assert torch.equal(first.normalization.mean, again.normalization.mean)
    assert torch.equal(first.tensors()[0], again.tensors()[0])


def test_incomplete_entry_is_rebuilt(tmp_path, decodes):
    root = write_folder(tmp_path / "data", n=3)
    cache = str(tmp_path / "cache")
    first = load_folder(str(root), image_size=16, cache_dir=cache)
    next((tmp_path / "cache").glob("*.images.npy")).unlink()
    decodes.clear()
    again = load_folder(str(root), image_size=16, cache_dir=cache)
    assert len(decodes) == 6 and torch.equal(first.tensors()[0], again.tensors()[0])


def test_mixed_gray_colour_and_16_bit_images_share_one_layout(tmp_path):
    root = write_folder(tmp_path / "data", n=3)
    rgb = np.asarray(Image.open(root / "images" / "img00.png"))
    Image.fromarray(rgb[..., 0]).save(root / "images" / "img01.png")  # gray joins colour
    data = load_folder(str(root), image_size=[24, 20], cache=False, normalize="none")
    images = data.tensors()[0]
    assert data.images.dtype == np.uint8 and images.shape == (3, 3, 24, 20)
    assert torch.equal(images[1, 0], images[1, 2]) and torch.equal(images[1, 0], images[0, 0])
    wide = rgb[..., 1].astype(np.uint16) * 257  # 16-bit: the set becomes float32 in [0, 1]
    Image.fromarray(wide).save(root / "images" / "img02.png")
    data = load_folder(str(root), image_size=[24, 20], cache=False, normalize="none")
    assert data.images.dtype == np.float32
    images = data.tensors()[0]
    torch.testing.assert_close(images[2, 0], torch.from_numpy(rgb[..., 1] / 255).float())
    torch.testing.assert_close(images[0, 1], torch.from_numpy(rgb[..., 1] / 255).float())


def test_key_follows_data_fingerprint_and_settings(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"x")
    data = files_fingerprint(tmp_path, [path])
    key = cache_key({"size": [8, 8]}, data)
    assert key == cache_key({"size": [8, 8]}, files_fingerprint(tmp_path, [path]))
    assert key != cache_key({"size": [16, 16]}, data)
    path.write_bytes(b"y")  # same size
    assert key != cache_key({"size": [8, 8]}, files_fingerprint(tmp_path, [path]))


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGACT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("SEGACT_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "segact")
