"""The embedded default dataset: textured, noisy images of irregular blobs, made from a seed.

Foreground blobs are deformed discs with a soft edge, a brightness offset and a finer texture
than the background; unlabelled distractor blobs of weaker contrast and an illumination gradient
make the task hard enough for the output activation to matter. Some images have empty masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from segact.data.base import SegmentationData, Stored, checked_dataset
from segact.data.format import DatasetConfig
from segact.data.preprocess import check_int, check_range
from segact.data.rows import MemoryRows
from segact.errors import DatasetError


def _blob(rng: np.random.Generator, size: int, radius_range: tuple[float, float]) -> np.ndarray:
    """A disc whose radius wobbles: r(theta) = r0 (1 + sum_j a_j cos(j theta + phi_j))."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
    r0 = rng.uniform(*radius_range) * size
    theta = np.arctan2(yy - cy, xx - cx)
    wobble = np.ones_like(theta)
    for j in (2, 3, 5):
        wobble += rng.uniform(0.0, 0.22) * np.cos(j * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(yy - cy, xx - cx) < r0 * wobble


def _texture(rng: np.random.Generator, size: int, channels: int, sigma: float) -> np.ndarray:
    noise = rng.standard_normal((channels, size, size))
    smooth = ndimage.gaussian_filter(noise, sigma=(0, sigma, sigma))
    return smooth / smooth.std()


def make_image(
    rng: np.random.Generator,
    size: int,
    channels: int,
    max_blobs: int,
    blob_radius: tuple[float, float],
    empty: bool,
    distractors: int,
    contrast: tuple[float, float],
    distractor_contrast: float,
    noise: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One (image (C, H, W), mask (H, W)) pair."""
    mask = np.zeros((size, size), dtype=bool)
    if not empty:
        for _ in range(rng.integers(1, max_blobs + 1)):
            mask |= _blob(rng, size, blob_radius)
    decoy = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(0, distractors + 1)):
        decoy |= _blob(rng, size, blob_radius)
    decoy &= ~mask

    colour = rng.uniform(0.5, 1.0, channels)[:, None, None]
    strength = rng.uniform(*contrast)
    soft_mask = ndimage.gaussian_filter(mask.astype(np.float64), 1.2)
    soft_decoy = ndimage.gaussian_filter(decoy.astype(np.float64), 1.2)
    gy, gx = rng.normal(0, 0.6, 2)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    image = (
        _texture(rng, size, channels, sigma=3.0)
        + strength * colour * soft_mask
        + 0.5 * _texture(rng, size, channels, sigma=0.8) * soft_mask
        + distractor_contrast * strength * colour * soft_decoy
        + (gy * yy + gx * xx)[None]
        + noise * rng.standard_normal((channels, size, size))
    )
    return image.astype(np.float32), mask


def _check_pair(key: str, value: tuple[float, float], low: float, high: float) -> None:
    values = list(value) if not isinstance(value, (int, float, str)) else []
    if len(values) != 2 or check_range(key, values[0], low, high) > check_range(
        key, values[1], low, high
    ):
        raise DatasetError(f"config key '{key}' = {value!r}: give [low, high] with low <= high")


def _check_settings(settings: dict[str, object]) -> None:
    """Every synthetic setting, so that a bad one is one line naming its key."""
    for key, minimum in (("n_images", 2), ("image_size", 1), ("channels", 1), ("max_blobs", 1)):
        check_int(f"dataset.{key}", settings[key], minimum)
    check_int("dataset.distractors", settings["distractors"], 0)
    check_int("dataset.seed", settings["seed"], 0)
    check_range("dataset.empty_fraction", settings["empty_fraction"], 0.0, 1.0)
    for key in ("distractor_contrast", "noise"):
        check_range(f"dataset.{key}", settings[key], 0.0, float("inf"))
    _check_pair("dataset.blob_radius", settings["blob_radius"], 0.0, 1.0)  # type: ignore[arg-type]
    _check_pair("dataset.contrast", settings["contrast"], -float("inf"), float("inf"))  # type: ignore[arg-type]


def make_synthetic(
    n_images: int = 200,
    image_size: int = 64,
    channels: int = 3,
    seed: int = 0,
    max_blobs: int = 3,
    blob_radius: tuple[float, float] = (0.08, 0.22),
    empty_fraction: float = 0.1,
    distractors: int = 2,
    contrast: tuple[float, float] = (1.0, 2.2),
    distractor_contrast: float = 0.4,
    noise: float = 0.6,
) -> SegmentationData:
    """``n_images`` pairs, identical for the same arguments; each image is its own case. Held
    in memory as float32 (their source type), standardised per batch like every dataset."""
    _check_settings(locals())
    rng = np.random.default_rng(seed)
    empty = rng.random(n_images) < empty_fraction
    pairs = [
        make_image(
            rng,
            image_size,
            channels,
            max_blobs,
            tuple(blob_radius),
            bool(is_empty),
            distractors,
            tuple(contrast),
            distractor_contrast,
            noise,
        )
        for is_empty in empty
    ]
    images = np.stack([image for image, _ in pairs])
    masks = np.stack([mask for _, mask in pairs])[:, None].astype(np.uint8)
    names = np.asarray([f"synthetic_{i:05d}" for i in range(n_images)])
    stored = Stored(MemoryRows(images), MemoryRows(masks), {"names": names})
    fix = "lower dataset.empty_fraction or raise dataset.n_images"
    return checked_dataset("synthetic", stored, names, "dataset", "dataset=synthetic", fix)


@dataclass
class SyntheticDatasetConfig(DatasetConfig):
    """The embedded default: procedurally generated blobs on textured noise, no files."""

    _target_: str = "segact.data.synthetic.make_synthetic"
    name: str = "synthetic"
    n_images: int = 200
    image_size: int = 64
    channels: int = 3
    seed: int = 0
    max_blobs: int = 3
    blob_radius: list[float] = field(default_factory=lambda: [0.08, 0.22])
    empty_fraction: float = 0.1
    distractors: int = 2
    contrast: list[float] = field(default_factory=lambda: [1.0, 2.2])
    distractor_contrast: float = 0.4  # brightness of the unlabelled look-alikes
    noise: float = 0.6
