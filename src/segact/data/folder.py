"""``dataset=folder``: ``root/images/*`` and ``root/masks/*`` (png, jpg, tif, bmp, gif) paired by
name (a mask's name: ``mask_pattern`` with ``{stem}`` = its image's, e.g. ``{stem}_mask``), or one
folder of both (``images_dir`` = ``masks_dir``), where a file named like a mask is a mask.

Images are resized bilinearly to ``image_size`` and stored as 8-bit where the files are (else as
float32 in [0, 1]); masks are binarized (see ``MaskRule``, ``preprocess.binarize_mask``) and resized
by nearest neighbour. A case is one file, or the group that ``case_regex`` extracts from the
name (e.g. a video id), so folds never split a group.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segact.data.base import Meta, SegmentationData, checked_dataset
from segact.data.cache import Writer, cached
from segact.data.format import FileDatasetConfig, Sample
from segact.data.normalize import check_normalize
from segact.data.pairs import (
    STEM,
    Wanted,
    list_named,
    match_pairs,
    pair_files,
    require_folders,
    resolve_root,
    same_file,
    split_mixed,
)
from segact.data.preprocess import (
    binarize_mask,
    check_finite,
    check_int,
    parse_size,
    resize_image,
    resize_mask,
    resize_plane,
    unit_scale,
)
from segact.data.source import MAX_PIXELS, MAX_PIXELS_KEY, Source
from segact.errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")


COLOUR_MODES = ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV")  # read as RGB (a mask keeps P indices)
ALPHA_BANDS = ("A", "a")
MASK_CHANNELS = "null (the mask's colour), alpha, or a channel index 0, 1, ..."
MIXED_TWINS = (
    "in a folder of images and masks, name the masks otherwise (e.g. a_mask.png with "
    "\"dataset.mask_pattern='{stem}_mask'\") or keep them in a folder of their own"
)
# PIL's decompression-bomb limit is a global of PIL: it is lifted, under this lock, while a
# header is read, so that dataset.max_pixels decides (see ``_open``).
_PIL_LIMIT = threading.Lock()


@dataclass(frozen=True)
class MaskRule:
    """Which pixels of a mask file are foreground (see ``read_mask`` and ``binarize_mask``)."""

    threshold: float | None = None
    foreground_values: list[int] | None = None
    channel: str | int | None = None  # None: the colour (alpha dropped); "alpha"; an index


def mask_rule(
    threshold: float | None, foreground_values: Sequence[int] | None, channel: str | int | None
) -> MaskRule:
    """The dataset.mask_* settings, checked."""
    wrong_index = isinstance(channel, bool) or not isinstance(channel, int) or channel < 0
    if channel is not None and channel != "alpha" and wrong_index:
        raise DatasetError(f"config key 'dataset.mask_channel' = {channel!r}: use {MASK_CHANNELS}")
    values = None if foreground_values is None else [int(v) for v in foreground_values]
    return MaskRule(threshold, values, channel)


def _unreadable(path: Path, error: Exception) -> DatasetError:
    return DatasetError(
        f"{path} cannot be read as an image ({error}): replace it with a valid file, or "
        "remove it together with its image or mask"
    )


def _open(data: bytes) -> Image.Image:
    """PIL's image of a file's bytes, only its header read. PIL's own decompression-bomb warning
    (89 MP) and error (179 MP) name no file and ignore dataset.max_pixels: they are off here,
    and the caller checks the size against dataset.max_pixels before decoding."""
    with _PIL_LIMIT:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def read_pixels(
    path: Path, mask: bool = False, source: Source | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Pixels as stored, (H, W) or (H, W, C), and their band names; colour modes are read as RGB
    (a mask's as RGBA when it has alpha, its P indices as they are). The bytes come from
    ``source`` (which hashes them), the size is checked from the header against its
    ``max_pixels`` before decoding; a bad file is named."""
    source = source or Source()
    data = source.read(path)
    try:
        image = _open(data)
    except (OSError, SyntaxError, ValueError) as error:
        raise _unreadable(path, error) from error
    with image:
        source.check_size(path, image.size)
        try:
            image.load()
            if image.mode in COLOUR_MODES and not (mask and image.mode == "P"):
                keep_alpha = mask and image.mode == "PA"
                image = image.convert("RGBA" if keep_alpha else "RGB")
            return np.asarray(image), image.getbands()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise _unreadable(path, error) from error


def _without_alpha(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[-1] in (2, 4):  # LA, RGBA, RGBX: drop the last band
        pixels = pixels[..., :-1]
    return pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels


def read_image(path: Path, source: Source | None = None) -> np.ndarray:
    """(H, W) or (H, W, 3) pixels without alpha; NaN or infinite values are refused."""
    pixels, _ = read_pixels(path, False, source)
    check_finite(pixels, path, 2, "pixels")
    return _without_alpha(pixels)


def read_mask(
    path: Path, channel: str | int | None = None, source: Source | None = None
) -> np.ndarray:
    """(H, W) values of a mask: its colour (the brightest channel; alpha dropped), its
    ``alpha`` channel, or channel number ``channel``."""
    pixels, bands = read_pixels(path, True, source)
    has_alpha = bands[-1] in ALPHA_BANDS
    if channel == "alpha":
        if not has_alpha:
            raise DatasetError(
                f"{path} has no alpha channel (bands {''.join(bands)}) but "
                f"dataset.mask_channel=alpha: use {MASK_CHANNELS}"
            )
        return pixels[..., -1]
    if isinstance(channel, int):
        planes = pixels.reshape(*pixels.shape[:2], -1)
        if channel >= planes.shape[-1]:
            raise DatasetError(
                f"config key 'dataset.mask_channel' = {channel}: {path} has only "
                f"{planes.shape[-1]} channel(s) ({''.join(bands)}): use {MASK_CHANNELS}"
            )
        return planes[..., channel]
    if has_alpha and _only_alpha_varies(pixels):
        raise DatasetError(
            f"{path}: the mask's colour is the same everywhere and only its alpha channel "
            "varies: set dataset.mask_channel=alpha to use the alpha channel as the mask"
        )
    colour = _without_alpha(pixels)
    return colour.max(axis=-1) if colour.ndim == 3 else colour


def _only_alpha_varies(pixels: np.ndarray) -> bool:
    colour, alpha = pixels[..., :-1], pixels[..., -1]
    return bool(colour.min() == colour.max() and alpha.min() != alpha.max())


def _decode(
    image_path: Path, mask_path: Path, size: tuple[int, int], rule: MaskRule, source: Source
) -> tuple[np.ndarray, np.ndarray]:
    """(C, h, w) image (uint8 for 8-bit files, else float32 in [0, 1]) and (h, w) bool mask."""
    image = read_image(image_path, source)
    mask = read_mask(mask_path, rule.channel, source)
    if image.shape[:2] != mask.shape[:2]:
        raise DatasetError(
            f"{image_path} is {image.shape[1]}x{image.shape[0]} but its mask {mask_path} is "
            f"{mask.shape[1]}x{mask.shape[0]} (width x height): they must have the same size"
        )
    foreground = binarize_mask(mask, mask_path, rule.threshold, rule.foreground_values)
    return stored_pixels(image, size), resize_mask(foreground, size)


def stored_pixels(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) or (H, W, C) pixels of ``read_image`` as the dataset stores them (segact-predict
    preprocesses with it too): (C, h, w), uint8 for 8-bit files, else float32 in [0, 1]."""
    pixels = unit_scale(image)
    resized = resize_image(pixels[..., None] if pixels.ndim == 2 else pixels, size)
    if image.dtype == np.uint8:  # 8-bit stays 8-bit in the cache: four times smaller
        resized = np.clip(np.rint(resized * 255), 0, 255).astype(np.uint8)
    return resized


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


def folder_pairs(
    root: str | None = None,
    default_root: str | None = None,
    images_dir: str = "images",
    masks_dir: str = "masks",
    mask_pattern: str = STEM,
) -> tuple[Path, list[tuple[str, Path, Path]]]:
    """The dataset folder and its (name, image, mask) pairs: the files ``load_folder`` reads;
    an image's mask is named ``mask_pattern`` with ``{stem}`` = the image's name."""
    path = resolve_root(root, default_root)
    folders = (path / images_dir, path / masks_dir)
    if same_file(*folders):  # images and masks in one folder: the pattern tells them apart
        both = list_named(folders[0], IMAGE_SUFFIXES, _stem, "images and masks", MIXED_TWINS)
        images, masks = split_mixed(both, mask_pattern, folders[0])
    else:
        image_folder = Wanted("dataset.images_dir", images_dir, "the images")
        mask_folder = Wanted("dataset.masks_dir", masks_dir, "one mask per image", masks=True)
        require_folders(path, image_folder, mask_folder)
        images = list_named(folders[0], IMAGE_SUFFIXES, _stem, image_folder.what)
        require_folders(path, mask_folder)
        masks = list_named(folders[1], IMAGE_SUFFIXES, _stem, mask_folder.what)
    return path, match_pairs(images, masks, path, mask_pattern, folders)


def _stem(path: Path) -> str:
    return path.stem


def load_folder(
    root: str | None = None,
    image_size: int | Sequence[int] = 256,
    images_dir: str = "images",
    masks_dir: str = "masks",
    mask_pattern: str = STEM,
    mask_threshold: float | None = None,
    foreground_values: Sequence[int] | None = None,
    mask_channel: str | int | None = None,
    gray_to_rgb: bool = False,
    case_regex: str | None = None,
    case_starts: Sequence[int] | None = None,
    normalize: str = "dataset",
    cache: bool = True,
    cache_dir: str | None = None,
    default_root: str | None = None,
    workers: int = 0,
    max_pixels: int = MAX_PIXELS,
) -> SegmentationData:
    """The dataset under ``root`` (or the preset's ``default_root``), read by the batch; at most
    ``workers`` images of at most ``max_pixels`` pixels each are decoded at once."""
    check_normalize(normalize)
    size = parse_size(image_size)
    rule = mask_rule(mask_threshold, foreground_values, mask_channel)
    workers = check_int("dataset.workers", workers, minimum=0)
    threads = workers or min(8, len(os.sched_getaffinity(0)))
    source = Source(check_int(MAX_PIXELS_KEY, max_pixels, minimum=1))
    path, pairs = folder_pairs(root, default_root, images_dir, masks_dir, mask_pattern)

    def build(writer: Writer) -> Meta:
        log.info("%s: decoding %d image/mask pairs", path, len(pairs))
        with ThreadPoolExecutor(threads) as pool:
            for image, mask in pool.map(lambda p: _decode(p[1], p[2], size, rule, source), pairs):
                writer.add(image[None], mask[None])
        return {"names": np.asarray([name for name, _, _ in pairs])}

    settings = {"loader": "folder", "size": size, "gray_to_rgb": gray_to_rgb, **asdict(rule)}
    if mask_pattern != STEM:  # the default keeps the cache entries made before the setting
        settings["mask_pattern"] = mask_pattern
    stored = cached(path, settings, pair_files(pairs), build, cache_dir, cache, source)
    cases = cases_from_names([str(n) for n in stored.meta["names"]], case_regex, case_starts)
    return checked_dataset(path.name, stored, cases, normalize, path)


@dataclass
class FolderDatasetConfig(FileDatasetConfig):
    """<root>/images/<name>.<png|jpg|tif|bmp> + <root>/masks/<mask_pattern>.<...>, paired by
    name (mask_pattern '{stem}_mask': image a.jpg, mask a_mask.png)."""

    _target_: str = "segact.data.folder.load_folder"
    name: str = "folder"
    images_dir: str = "images"
    masks_dir: str = "masks"
    mask_pattern: str = "{stem}"  # a mask's name without extension; {stem}: its image's name
    mask_threshold: float | None = None  # foreground = value > this (e.g. 127, soft edges)
    foreground_values: list[int] | None = None  # or: these values are foreground
    mask_channel: Any = None  # null: brightest colour channel | alpha | a channel number
    gray_to_rgb: bool = False  # repeat a gray channel 3 times (e.g. for normalize=imagenet)
    case_regex: str | None = None  # the case is the regex's group 'case' (or 1) in the name
    case_starts: list[int] | None = None  # with a number captured: first number of each case
    workers: int = 0  # decoding threads; 0: one per core (at most 8)


def read_input(path: Path, settings: Mapping[str, Any], size: tuple[int, int]) -> Sample:
    """An image for segact-predict, decoded and resized as the dataset stores it."""
    image = read_image(path)
    shape = image.shape[:2]
    return Sample(stored_pixels(image, size)[None], lambda p: resize_plane(p[0], shape))
