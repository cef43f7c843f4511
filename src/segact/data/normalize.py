"""The last loading step: checks on the masks, tensors, and input normalisation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from segact.data.base import SegmentationData, as_tensor_images
from segact.data.errors import DatasetError

log = logging.getLogger(__name__)

NORMALIZE_MODES = ("dataset", "imagenet", "none")
# The statistics smp's imagenet encoders expect (smp's get_preprocessing_params would download).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UNBALANCED = 0.01  # warn when the foreground fraction is below this or above 1 - this


def check_normalize(mode: str) -> None:
    if mode not in NORMALIZE_MODES:
        raise DatasetError(
            f"config key 'dataset.normalize' = {mode!r}: choose one of {', '.join(NORMALIZE_MODES)}"
        )


def check_masks(masks: np.ndarray, source: Path) -> None:
    """All-empty masks are an error; very unbalanced foreground only a warning."""
    fraction = float(masks.mean())
    if fraction == 0.0:
        raise DatasetError(
            f"{source}: all {len(masks)} masks are empty (no foreground pixel): check the masks, "
            "or the rule that binarizes them (dataset.mask_threshold, dataset.foreground_values)"
        )
    if not UNBALANCED <= fraction <= 1 - UNBALANCED:
        log.warning(
            "%s: very unbalanced foreground (%.4f%% of all pixels); Dice and the threshold "
            "sweep still work, but check the masks (polarity, rule) if that is unexpected",
            source,
            100 * fraction,
        )


def normalized(data: SegmentationData, mode: str) -> SegmentationData:
    """``dataset``: per-channel mean/std of this dataset; ``imagenet``: the encoders' statistics
    (3-channel images in [0, 1]); ``none``: as loaded."""
    check_normalize(mode)
    if mode == "dataset":
        return data.standardized()
    if mode == "none":
        return data
    if data.in_channels != 3:
        raise DatasetError(
            f"config key 'dataset.normalize' = 'imagenet' needs 3-channel images, but "
            f"'{data.name}' has {data.in_channels}: set dataset.gray_to_rgb=true or "
            "dataset.normalize=dataset"
        )
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return SegmentationData(
        data.name, (data.images - mean).div_(std), data.masks, data.cases, data.names
    )


def finish(
    name: str,
    arrays: dict[str, np.ndarray],
    cases: np.ndarray,
    normalize: str,
    source: Path,
) -> SegmentationData:
    """Cached arrays (``images`` uint8 0..255 or float, ``masks`` bool, ``names``) -> data."""
    check_normalize(normalize)
    images, masks = arrays["images"], arrays["masks"]
    check_masks(masks, source)
    names = [str(n) for n in arrays["names"]]
    if images.dtype == np.uint8 and normalize == "dataset":
        # Exact per-channel statistics from a 256-bin histogram, then one float array scaled in
        # place: about 3x faster than float statistics on a cached Kvasir-SEG (786 MB float32).
        mean, std = uint8_channel_stats(images)
        tensor = torch.from_numpy(images).float().sub_(mean).div_(std)
        return SegmentationData(name, tensor, as_tensor_images(masks), cases, names)
    if images.dtype == np.uint8:
        tensor = torch.from_numpy(images).float().div_(255.0)  # one float array, scaled in place
    else:
        tensor = as_tensor_images(images)
    data = SegmentationData(name, tensor, as_tensor_images(masks), cases, names)
    return normalized(data, normalize)


def uint8_channel_stats(images: np.ndarray) -> tuple[Tensor, Tensor]:
    """Mean and std (ddof 1, floored at 1e-6) per channel of (N, C, H, W) uint8 images, shaped
    (1, C, 1, 1) and in the uint8 value scale, so that (x - mean) / std standardizes."""
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(torch.from_numpy(images[:, channel]).reshape(-1), minlength=256)
        counts = counts.double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        variance = (counts * (values - mean) ** 2).sum() / (n - 1)
        means.append(mean)
        stds.append(variance.sqrt().clamp_min(1e-6 * 255))
    shape = (1, -1, 1, 1)
    return torch.stack(means).float().view(shape), torch.stack(stds).float().view(shape)
