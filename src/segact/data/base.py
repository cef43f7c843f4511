"""The form every dataset takes: compact raw pixels and masks, read and normalised by the batch."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from segact.data.normalize import Normalization, channel_stats, check_normalize, normalization
from segact.data.rows import Rows, n_bytes
from segact.errors import DatasetError

log = logging.getLogger(__name__)

UNBALANCED = 0.01  # warn when the foreground fraction is below this or above 1 - this
# On CUDA the raw arrays move to the GPU when they fit in its free memory minus this margin
# (the model, its activations and the evaluation need the rest).
GPU_MARGIN_BYTES = 2 * 2**30
GPU_MARGIN_FRACTION = 0.2
Raw = Rows | Tensor  # rows read on demand, or a tensor resident on a device
Meta = dict[str, np.ndarray]


@dataclass(frozen=True)
class DatasetStats:
    """What the checks and the normalisation need of a whole dataset, found in one pass over it
    (and kept in the cache): per-channel mean and std of the raw pixels, (1, C, 1, 1) float32 in
    their value scale, and the number of foreground pixels and of all mask pixels."""

    mean: Tensor
    std: Tensor
    foreground: int
    pixels: int

    @classmethod
    def of(cls, images: Rows, masks: Rows) -> DatasetStats:
        mean, std = channel_stats(images)
        foreground = sum(int(np.count_nonzero(block)) for block in masks.blocks())
        return cls(mean, std, foreground, n_bytes(masks))

    def to_meta(self) -> Meta:
        numbers = np.asarray([self.foreground, self.pixels], dtype=np.int64)
        return {"mean": self.mean.numpy(), "std": self.std.numpy(), "mask_pixels": numbers}

    @classmethod
    def from_meta(cls, meta: Meta) -> DatasetStats | None:
        if not {"mean", "std", "mask_pixels"} <= set(meta):
            return None
        foreground, pixels = (int(n) for n in meta["mask_pixels"])
        mean, std = torch.from_numpy(meta["mean"]), torch.from_numpy(meta["std"])
        return cls(mean, std, foreground, pixels)


@dataclass
class Stored:
    """A loader's result: raw rows to read, and ``meta``: ``names`` (the cache adds ``cases`` of
    volumes and the ``DatasetStats``)."""

    images: Rows
    masks: Rows
    meta: Meta


@dataclass
class SegmentationData:
    """Raw ``images`` (N, C, H, W) uint8 (or float32 where the source needs it) and ``masks``
    (N, 1, H, W) uint8 in {0, 1}, read by the batch: ``batch(indices, device)`` gives float32
    images, normalised by ``normalization``, and float32 masks. ``cases[i]`` is the case
    (patient, volume, video) image i belongs to: folds never split a case."""

    name: str
    images: Raw
    masks: Raw
    cases: np.ndarray
    names: list[str]
    normalization: Normalization = dataclasses.field(default_factory=Normalization)
    pinned: bool = False  # stage host batches in pinned memory (CUDA, non-blocking copies)

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.masks.shape[0] != n or len(self.cases) != n or len(self.names) != n:
            raise ValueError(
                f"dataset {self.name}: images, masks, cases and names differ in length"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def n_cases(self) -> int:
        return len(np.unique(self.cases))

    def batch(self, indices: np.ndarray | Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """Images ``indices`` (any order, returned in that order) on ``device``: float32 (N, C, H,
        W) normalised, and float32 masks (N, 1, H, W) in {0, 1}. Only these rows are read.
        ``indices`` may be an int64 tensor already on the arrays' device (no copy per batch)."""
        if not isinstance(indices, Tensor):
            indices = torch.from_numpy(np.asarray(indices, dtype=np.int64).reshape(-1))
        images = _gather(self.images, indices, device, self.pinned)
        masks = _gather(self.masks, indices, device, self.pinned)
        return self.normalization(images), masks.to(torch.float32)

    def tensors(self) -> tuple[Tensor, Tensor]:
        """The whole dataset as one CPU batch: for tests and small data only."""
        return self.batch(np.arange(len(self)), torch.device("cpu"))

    def on_device(self, device: torch.device) -> SegmentationData:
        """For CUDA: a copy whose raw arrays live on the GPU when they fit in its free memory
        (less a margin), else one that stages batches in pinned memory for non-blocking
        copies. Elsewhere (CPU, MPS): this dataset, read from disk by the batch."""
        if device.type != "cuda":
            return self
        free, total = torch.cuda.mem_get_info(device)
        margin = max(GPU_MARGIN_BYTES, GPU_MARGIN_FRACTION * total)
        needed = _raw_bytes(self.images) + _raw_bytes(self.masks)
        if needed <= free - margin:
            return self.resident(device)
        log.info(
            "%s: %.1f GB do not fit on %s: batches are read from disk",
            self.name,
            needed / 1e9,
            device,
        )
        return dataclasses.replace(self, pinned=True, normalization=self.normalization.to(device))

    def resident(self, device: torch.device) -> SegmentationData:
        """A copy whose raw arrays are tensors on ``device``, copied there block by block."""
        return dataclasses.replace(
            self,
            images=_upload(self.images, device),
            masks=_upload(self.masks, device),
            normalization=self.normalization.to(device),
            pinned=False,
        )


def _raw_bytes(raw: Raw) -> int:
    return raw.nelement() * raw.element_size() if isinstance(raw, Tensor) else n_bytes(raw)


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


def _gather(raw: Raw, indices: Tensor, device: torch.device, pinned: bool) -> Tensor:
    if isinstance(raw, Tensor):
        return raw.index_select(0, indices.to(raw.device)).to(device)
    shape = (len(indices), *raw.shape[1:])
    out = torch.empty(shape, dtype=_torch_dtype(raw.dtype), pin_memory=pinned)
    raw.read_into(indices.cpu().numpy(), out.numpy())
    return out.to(device, non_blocking=pinned)


def _upload(raw: Raw, device: torch.device) -> Tensor:
    if isinstance(raw, Tensor):
        return raw.to(device)
    out = torch.empty(raw.shape, dtype=_torch_dtype(raw.dtype), device=device)
    start = 0
    for block in raw.blocks():
        out[start : start + len(block)].copy_(torch.from_numpy(block))
        start += len(block)
    return out


def check_masks(stats: DatasetStats, n_masks: int, source: str, fix: str) -> None:
    """All-empty masks are an error (``fix`` says what to do); very unbalanced foreground only a
    warning."""
    fraction = stats.foreground / stats.pixels
    if fraction == 0.0:
        raise DatasetError(f"{source}: all {n_masks} masks are empty (no foreground pixel): {fix}")
    if not UNBALANCED <= fraction <= 1 - UNBALANCED:
        log.warning(
            "%s: very unbalanced foreground (%.4f%% of all pixels); Dice and the threshold "
            "sweep still work, but check the masks (polarity, rule) if that is unexpected",
            source,
            100 * fraction,
        )


MASK_FIX = (
    "check the masks, or the rule that binarizes them (dataset.mask_threshold, "
    "dataset.foreground_values, dataset.mask_channel)"
)


def checked_dataset(
    name: str,
    stored: Stored,
    cases: np.ndarray,
    normalize: str,
    source: Path | str,
    mask_fix: str = MASK_FIX,
) -> SegmentationData:
    """The dataset of a loader's raw arrays, after the checks every dataset must pass (masks not
    all empty, at least 2 cases) and with its normalisation (from the cached ``DatasetStats``, else
    from one pass over the arrays now)."""
    check_normalize(normalize)
    n_cases = len(np.unique(cases))
    if n_cases < 2:
        raise DatasetError(
            f"k-fold cross-validation needs at least 2 cases; found {n_cases} in {source}: "
            "add data (a case is a file, a volume or the group dataset.case_regex finds)"
        )
    images, masks = stored.images, stored.masks
    stats = DatasetStats.from_meta(stored.meta) or DatasetStats.of(images, masks)
    check_masks(stats, masks.shape[0], str(source), mask_fix)
    norm = normalization(images, normalize, name, (stats.mean, stats.std))
    names = [str(n) for n in stored.meta["names"]]
    return SegmentationData(name, images, masks, np.asarray(cases), names, norm)
