"""The preprocessed cache: a hit decodes nothing; a changed file or setting decodes again."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from segact.data import folder
from segact.data.cache import cache_key, default_cache_dir
from segact.data.folder import load_folder
from tests.test_data_folder import write_folder


@pytest.fixture
def decodes(monkeypatch):
    """Count the files the folder loader decodes."""
    calls = []
    original = folder.read_image

    def counting(path, mask=False):
        calls.append(path.name)
        return original(path, mask)

    monkeypatch.setattr(folder, "read_image", counting)
    return calls


def test_second_load_hits_the_cache(tmp_path, decodes):
    root = write_folder(tmp_path / "data", n=4)
    first = load_folder(str(root), image_size=16, cache_dir=str(tmp_path / "cache"))
    assert len(decodes) == 8
    second = load_folder(str(root), image_size=16, cache_dir=str(tmp_path / "cache"))
    assert len(decodes) == 8
    assert torch.equal(first.images, second.images) and torch.equal(first.masks, second.masks)
    assert first.names == second.names
    uncached = load_folder(str(root), image_size=16, cache=False)
    assert torch.equal(first.images, uncached.images)


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
    assert after.masks[1].all() and not before.masks[1].all()
    decodes.clear()
    load_folder(str(root), image_size=8, cache_dir=cache)
    assert len(decodes) == 6
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3


def test_key_follows_files_and_settings(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"x")
    key = cache_key({"size": [8, 8]}, [path])
    assert key == cache_key({"size": [8, 8]}, [path])
    assert key != cache_key({"size": [16, 16]}, [path])
    path.write_bytes(b"xy")
    assert key != cache_key({"size": [8, 8]}, [path])


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGACT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("SEGACT_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "segact")
