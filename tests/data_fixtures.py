"""Tiny image folders written by the data tests: 8-bit images, brighter inside a {0, 255} mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


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
