"""Tiny image folders written by the data tests (8-bit images, brighter inside a {0, 255} mask),
and what the cache tests do to them and to cache files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segact.data import folder


def make_pair(
    rng: np.random.Generator, size: tuple[int, int] = (24, 20), gray: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit image (brighter inside the mask) and its {0, 255} mask."""
    height, width = size
    mask = np.zeros(size, dtype=np.uint8)
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    mask[top : top + height // 2, left : left + width // 2] = 255
    shape = size if gray else (*size, 3)
    noise = rng.integers(0, 80, shape, dtype=np.uint8)
    image = noise + (mask if gray else mask[..., None]) // 2
    return image.astype(np.uint8), mask


def write_folder(
    root: Path,
    n: int = 6,
    image_suffix: str = ".png",
    mask_suffix: str = ".png",
    names: list[str] | None = None,
    gray: bool = False,
    seed: int = 0,
) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for name in names or [f"img{i:02d}" for i in range(n)]:
        image, mask = make_pair(rng, gray=gray)
        Image.fromarray(image).save(root / "images" / f"{name}{image_suffix}")
        Image.fromarray(mask).save(root / "masks" / f"{name}{mask_suffix}")
    return root


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files the folder loader decodes from now on (a list that grows)."""
    calls: list[str] = []
    original = folder.read_pixels

    def counting(path: Path, *args: Any, **kwargs: Any) -> tuple[np.ndarray, tuple[str, ...]]:
        calls.append(path.name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(folder, "read_pixels", counting)
    return calls


def overwrite_middle(path: Path, count: int = 64) -> None:
    """Flip ``count`` bytes in the middle of a .npy file's data, its header left intact."""
    offset = path.stat().st_size // 2 + np.lib.format.ARRAY_ALIGN
    with open(path, "r+b") as handle:
        handle.seek(offset)
        data = handle.read(count)
        handle.seek(offset)
        handle.write(bytes(255 - b for b in data))


def truncate_half(path: Path) -> None:
    """Cut a file to half its length (a disk that filled up, a copy that stopped)."""
    os.truncate(path, path.stat().st_size // 2)
