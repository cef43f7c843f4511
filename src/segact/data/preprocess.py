"""Steps shared by every loader: the output size, mask binarization, resizing and scaling."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from segact.errors import DatasetError


def _whole(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(key: str, value: object, minimum: int) -> int:
    """A whole-number setting of at least ``minimum``; else a DatasetError naming its key."""
    if not _whole(value) or value < minimum:  # type: ignore[operator]
        raise DatasetError(
            f"config key '{key}' = {value!r}: must be a whole number of at least {minimum}"
        )
    return int(value)


def check_range(key: str, value: object, low: float, high: float) -> float:
    """A number in [low, high]; else a DatasetError naming its key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise DatasetError(f"config key '{key}' = {value!r}: must be a number in [{low}, {high}]")
    return float(value)


def parse_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``dataset.image_size``: one positive int (square) or [height, width]."""
    values = [image_size] if _whole(image_size) else image_size
    try:
        size = list(values)  # type: ignore[call-overload]
    except TypeError:
        size = []
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or not all(_whole(s) and s >= 1 for s in size):
        raise DatasetError(
            f"config key 'dataset.image_size' = {image_size!r}: give a positive int or [H, W]"
        )
    return int(size[0]), int(size[1])


MASK_RULES = (
    "set dataset.mask_threshold (e.g. 127: foreground = value > 127) or "
    "dataset.foreground_values (e.g. [1, 2])"
)
BINARY_TOPS = (1, 255)  # a binary mask: 0 and one of these (or its integer type's largest value)
SHOWN_VALUES = 8


def _shown(values: np.ndarray) -> str:
    more = ", ..." if len(values) > SHOWN_VALUES else ""
    return ", ".join(f"{v:g}" for v in values[:SHOWN_VALUES].tolist()) + more


def _is_binary(unique: np.ndarray, dtype: np.dtype) -> bool:
    tops = {*BINARY_TOPS, *([np.iinfo(dtype).max] if np.issubdtype(dtype, np.integer) else [])}
    found = set(unique.tolist()) - {0}
    return len(found) == 0 or (len(found) == 1 and found <= tops)


def check_finite(values: np.ndarray, source: Path, spatial: int, unit: str) -> None:
    """Refuse NaN or infinite values (they would make the loss and the metrics NaN): one line
    with how many ``unit`` (the first ``spatial`` axes; any channel counts) have one."""
    if not np.issubdtype(values.dtype, np.inexact):
        return
    finite = np.isfinite(values)
    if values.ndim > spatial:
        finite = finite.all(axis=tuple(range(spatial, values.ndim)))
    bad = finite.size - int(np.count_nonzero(finite))
    if bad:
        raise DatasetError(
            f"{source}: {bad} of {finite.size} {unit} are NaN or infinite: fix or replace the "
            "file, or remove it together with its image or mask"
        )


def binarize_mask(
    values: np.ndarray,
    source: Path,
    threshold: float | None = None,
    foreground_values: Sequence[int] | None = None,
    rules: str = MASK_RULES,
) -> np.ndarray:
    """Foreground of a mask or label map as bool; never by rounding.

    ``foreground_values`` (e.g. MSD prostate [1, 2]; every value must then be a whole number)
    or ``threshold`` (foreground = value > threshold, e.g. 127 for 8-bit masks with soft edges)
    decide when set; otherwise the mask must be binary already: 0 and 1, 0 and 255, or 0 and its
    integer type's largest value (or one of these alone). Anything else (a NaN, a label 0.5, a
    third value) is a DatasetError naming the file and the values found; ``rules``: the
    settings that would decide.
    """
    check_finite(values, source, values.ndim, "values")
    if foreground_values is not None:
        if np.issubdtype(values.dtype, np.inexact):
            fractional = np.unique(values[values != np.round(values)])
            if len(fractional):
                raise DatasetError(
                    f"{source}: the mask has values that are not whole numbers "
                    f"({_shown(fractional)}), which no list of foreground values names: fix "
                    "the file (segact never rounds a mask)"
                )
        return np.isin(values, np.asarray(list(foreground_values)))
    if threshold is not None:
        return values > threshold
    unique = np.unique(values)
    if not _is_binary(unique, values.dtype):
        raise DatasetError(
            f"{source}: the mask has {len(unique)} values ({_shown(unique)}), not 0 and 1 "
            f"or 0 and 255, and no rule says which are foreground: {rules}"
        )
    return values > 0


def unit_scale(array: np.ndarray) -> np.ndarray:
    """Integer intensities to [0, 1] by their type's range (16-bit data by 65535); floats kept."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        top = 255 if array.dtype == np.uint8 else max(65535, int(array.max(initial=0)))
        return array.astype(np.float32) / top
    return array.astype(np.float32)


def resize_image(channels_last: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) float -> (C, h, w) float32, bilinear (antialiased when shrinking)."""
    height, width = size
    if channels_last.shape[:2] == size:
        return np.moveaxis(channels_last, -1, 0).astype(np.float32)
    return np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), mode="F").resize(
                    (width, height), Image.Resampling.BILINEAR
                )
            )
            for channel in np.moveaxis(channels_last, -1, 0)
        ]
    )


def resize_plane(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) float -> (H, W) float32 at ``shape``, bilinear (unchanged where it is the size)."""
    return resize_image(plane[..., None], tuple(shape))[0]


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool -> (h, w) bool, nearest neighbour."""
    height, width = size
    if mask.shape == size:
        return mask.astype(bool)
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.resize((width, height), Image.Resampling.NEAREST)) > 127
