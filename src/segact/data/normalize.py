"""Input normalisation: per-channel statistics computed once at load, applied to every batch.

The stored pixels stay compact (uint8, or float32 where the source needs it); a batch becomes
float32 only after its copy to the device, by exactly the operations a whole-array
normalisation used, so every element equals what the earlier in-memory float datasets held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from segact.choices import Choice
from segact.data.rows import Rows
from segact.errors import DatasetError


class Normalize(Choice):
    """``dataset.normalize``: which per-channel statistics a batch is normalised with."""

    dataset = "dataset"  # per-channel mean/std of the dataset
    imagenet = "imagenet"  # the statistics smp's ImageNet encoders expect (no download)
    none = "none"


# The statistics smp's imagenet encoders expect (smp's get_preprocessing_params would download).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_STD = 1e-6  # in [0, 1] units: a constant channel is shifted, not blown up
STATS_SHAPE = (1, -1, 1, 1)


@dataclass(frozen=True)
class Normalization:
    """``raw -> float32(raw) / scale``, then ``(x - mean) / std`` per channel, each step only
    where set; ``mean`` and ``std`` are (1, C, 1, 1) float32 tensors."""

    scale: float | None = None
    mean: Tensor | None = None
    std: Tensor | None = None

    def __call__(self, raw: Tensor) -> Tensor:
        x = raw.to(torch.float32, copy=True)
        if self.scale is not None:
            x.div_(self.scale)
        if self.mean is not None and self.std is not None:
            x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))
        return x

    def to(self, device: torch.device) -> Normalization:
        """The same with its statistics on ``device`` (moved once, not with every batch)."""
        if self.mean is None or self.std is None:
            return self
        return Normalization(self.scale, self.mean.to(device), self.std.to(device))


def check_normalize(mode: str) -> None:
    if mode not in set(Normalize):
        raise DatasetError(
            f"config key 'dataset.normalize' = {mode!r}: choose one of "
            f"{', '.join(m.value for m in Normalize)}"
        )


def normalization(
    images: Rows, mode: str, name: str, stats: tuple[Tensor, Tensor] | None = None
) -> Normalization:
    """``dataset``: this dataset's per-channel mean/std (``stats`` when known, else computed
    now); ``imagenet``: the encoders' statistics (3-channel images in [0, 1]); ``none``: as
    stored, uint8 scaled to [0, 1]."""
    check_normalize(mode)
    scale = 255.0 if images.dtype == np.uint8 else None
    if mode == "none":
        return Normalization(scale)
    if mode == "imagenet":
        if images.shape[1] != 3:
            raise DatasetError(
                f"config key 'dataset.normalize' = 'imagenet' needs 3-channel images, but "
                f"'{name}' has {images.shape[1]}: set dataset.gray_to_rgb=true or "
                "dataset.normalize=dataset"
            )
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        return Normalization(scale, mean.view(STATS_SHAPE), std.view(STATS_SHAPE))
    return Normalization(None, *(stats or channel_stats(images)))


def channel_stats(images: Rows) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std in the pixels' own scale (uint8: 0..255, no division first)."""
    if images.dtype == np.uint8:
        return uint8_channel_stats(images)
    return float_channel_stats(images)


def uint8_channel_stats(images: Rows) -> tuple[Tensor, Tensor]:
    """Mean and std (ddof 1, floored at 1e-6 * 255) per channel of (N, C, H, W) uint8 images,
    exact from a 256-bin histogram, shaped (1, C, 1, 1) and in the uint8 value scale, so that
    (x - mean) / std standardizes."""
    counts = torch.zeros(images.shape[1], 256, dtype=torch.int64)
    for block in images.blocks():
        for channel in range(images.shape[1]):
            pixels = torch.from_numpy(block[:, channel]).reshape(-1)
            counts[channel] += torch.bincount(pixels, minlength=256)
    values = torch.arange(256, dtype=torch.float64)
    n = counts.sum(dim=1, keepdim=True).double()
    mean = (counts * values).sum(dim=1, keepdim=True) / n
    variance = (counts * (values - mean) ** 2).sum(dim=1, keepdim=True) / (n - 1)
    std = variance.sqrt().clamp_min(MIN_STD * 255)
    return mean.float().view(STATS_SHAPE), std.float().view(STATS_SHAPE)


def float_channel_stats(images: Rows) -> tuple[Tensor, Tensor]:
    """Mean and std (ddof 1, floored at 1e-6) per channel of (N, C, H, W) float images, shaped
    (1, C, 1, 1). An array read in one block (in memory, or a small file) gets torch.std_mean's
    own float32 result, as every earlier version; a larger file is read block by block and the
    blocks' moments are combined in float64 (Chan et al.), so memory stays bounded."""
    dims = (0, 2, 3)
    moments = []  # (pixels per channel, variance, mean) of each block
    for block in images.blocks():
        tensor = torch.from_numpy(block)
        if not moments and len(block) == images.shape[0]:  # the whole array at once
            std, mean = torch.std_mean(tensor, dim=dims, keepdim=True)
            return mean, std.clamp_min(MIN_STD)
        variance, mean = torch.var_mean(tensor, dim=dims, correction=0)
        moments.append((block.size // block.shape[1], variance.double(), mean.double()))
    counts = torch.tensor([n for n, _, _ in moments], dtype=torch.float64)[:, None]
    variances = torch.stack([variance for _, variance, _ in moments])
    means = torch.stack([mean for _, _, mean in moments])
    total = counts.sum()
    mean = (counts * means).sum(0) / total
    m2 = (counts * (variances + (means - mean) ** 2)).sum(0)
    std = (m2 / (total - 1)).sqrt().clamp_min(MIN_STD)
    return mean.float().view(STATS_SHAPE), std.float().view(STATS_SHAPE)
