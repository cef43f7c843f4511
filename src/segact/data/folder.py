"""``dataset=folder``: ``root/images/*`` and ``root/masks/*`` (png, jpg, tif, bmp) paired by name.

Images are scaled to [0, 1], resized bilinearly to ``image_size``; masks are binarized (see
``preprocess.binarize``) and resized by nearest neighbour. A case is one file, or the group that
``case_regex`` extracts from the name (e.g. a video id), so folds never split a group.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from segact.data.base import SegmentationData
from segact.data.cache import Arrays, cached
from segact.data.errors import DatasetError
from segact.data.normalize import finish
from segact.data.pairs import list_named, match_pairs, require_nonempty, resolve_root
from segact.data.preprocess import binarize, parse_size, resize_image, resize_mask, unit_scale

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


COLOUR_MODES = ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV")  # read as RGB (a mask keeps P indices)


def read_image(path: Path, mask: bool = False) -> np.ndarray:
    """Pixels as stored: (H, W) or (H, W, C) without alpha; a DatasetError names a bad file."""
    require_nonempty(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in COLOUR_MODES and not (mask and image.mode == "P"):
                image = image.convert("RGB")
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(
            f"{path} cannot be read as an image ({error}): replace it with a valid file, or "
            "remove it together with its image or mask"
        ) from error
    if array.ndim == 3 and array.shape[-1] in (2, 4):  # drop alpha
        array = array[..., :-1]
    return array


def _decode(
    image_path: Path,
    mask_path: Path,
    size: tuple[int, int],
    threshold: float | None,
    foreground_values: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    image, mask = read_image(image_path), read_image(mask_path, mask=True)
    if image.shape[:2] != mask.shape[:2]:
        raise DatasetError(
            f"{image_path} is {image.shape[1]}x{image.shape[0]} but its mask {mask_path} is "
            f"{mask.shape[1]}x{mask.shape[0]} (width x height): they must have the same size"
        )
    if mask.ndim == 3:  # a colour mask: its brightest channel
        mask = mask.max(axis=-1)
    foreground = binarize(mask, mask_path, threshold, foreground_values)
    is_8bit = image.dtype == np.uint8
    pixels = unit_scale(image)
    resized = resize_image(pixels[..., None] if pixels.ndim == 2 else pixels, size)
    if is_8bit:  # 8-bit stays 8-bit in the cache: four times smaller
        resized = np.clip(np.rint(resized * 255), 0, 255).astype(np.uint8)
    return resized, resize_mask(foreground, size)


def _stack_images(images: list[np.ndarray], gray_to_rgb: bool, root: Path) -> np.ndarray:
    channels = {image.shape[0] for image in images}
    if gray_to_rgb or channels == {1, 3}:  # mixed gray and colour: colour wins
        images = [np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image for image in images]
        channels = {image.shape[0] for image in images}
    if len(channels) > 1:
        raise DatasetError(
            f"{root / 'images'}: images have different channel counts {sorted(channels)}: "
            "convert them to one format"
        )
    if len({image.dtype for image in images}) > 1:
        images = [
            image.astype(np.float32) / 255 if image.dtype == np.uint8 else image for image in images
        ]
    return np.stack(images)


def cases_from_names(
    names: Sequence[str], case_regex: str | None, case_starts: Sequence[int] | None = None
) -> np.ndarray:
    """Each name its own case, or the part ``case_regex`` captures (its group ``case``, else its
    first group, else the whole match). With ``case_starts`` the captured part is a number and
    the case is the numbered range it falls in (case_starts = first number of each range)."""
    if case_regex is None:
        return np.asarray(names)
    try:
        pattern = re.compile(case_regex)
    except re.error as error:
        raise DatasetError(f"config key 'dataset.case_regex' = {case_regex!r}: {error}") from error
    cases = []
    for name in names:
        match = pattern.search(name)
        if match is None:
            raise DatasetError(
                f"file '{name}' does not match dataset.case_regex={case_regex!r}: fix the regex "
                "so that it finds the case (e.g. the video id) in every file name"
            )
        groups = match.groupdict()
        cases.append(groups.get("case") or (match.group(1) if pattern.groups else match.group(0)))
    if case_starts is None:
        return np.asarray(cases)
    starts = np.asarray(sorted(case_starts))
    try:
        numbers = np.asarray([int(case) for case in cases])
    except ValueError as error:
        raise DatasetError(
            f"dataset.case_starts needs case_regex={case_regex!r} to capture a number ({error})"
        ) from error
    index = np.searchsorted(starts, numbers, side="right")
    return np.asarray([f"case{i:03d}" for i in index])


def load_folder(
    root: str | None = None,
    image_size: int | Sequence[int] = 256,
    images_dir: str = "images",
    masks_dir: str = "masks",
    mask_threshold: float | None = None,
    foreground_values: Sequence[int] | None = None,
    gray_to_rgb: bool = False,
    case_regex: str | None = None,
    case_starts: Sequence[int] | None = None,
    normalize: str = "dataset",
    cache: bool = True,
    cache_dir: str | None = None,
    default_root: str | None = None,
    workers: int = 0,
) -> SegmentationData:
    """The dataset under ``root`` (or the preset's ``default_root``), held in memory."""
    path = resolve_root(root, default_root)
    size = parse_size(image_size)
    images = list_named(path / images_dir, IMAGE_SUFFIXES, lambda p: p.stem, "the images")
    masks = list_named(path / masks_dir, IMAGE_SUFFIXES, lambda p: p.stem, "one mask per image")
    pairs = match_pairs(images, masks, path)
    fg = None if foreground_values is None else [int(v) for v in foreground_values]

    def build() -> Arrays:
        log.info("%s: decoding %d image/mask pairs", path, len(pairs))
        threads = workers or min(8, len(os.sched_getaffinity(0)))
        with ThreadPoolExecutor(threads) as pool:
            decoded = list(pool.map(lambda p: _decode(p[1], p[2], size, mask_threshold, fg), pairs))
        return {
            "images": _stack_images([image for image, _ in decoded], gray_to_rgb, path),
            "masks": np.stack([mask for _, mask in decoded])[:, None],
            "names": np.asarray([name for name, _, _ in pairs]),
        }

    settings = {
        "loader": "folder",
        "size": size,
        "mask_threshold": mask_threshold,
        "foreground_values": fg,
        "gray_to_rgb": gray_to_rgb,
    }
    files = [file for _, image, mask in pairs for file in (image, mask)]
    arrays = cached(path.name, settings, files, build, cache_dir, cache)
    cases = cases_from_names([str(n) for n in arrays["names"]], case_regex, case_starts)
    return finish(path.name, arrays, cases, normalize, path)
