"""``dataset=nifti``: MSD layout, ``root/imagesTr/<case>.nii.gz`` + ``root/labelsTr/<case>.nii.gz``.

Each volume is normalised per channel (z-score by default), cut into 2D slices along ``axis``
and resized; 4D images (x, y, z, modality) give one input channel per modality, and so do
nnU-Net style files ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``. Labels become foreground by
``foreground_labels`` (e.g. MSD prostate [1, 2]). A case is one volume: folds never split it.
Needs nibabel (``pip install 'segact[nifti]'``).
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segact.choices import Choice
from segact.data import preprocess
from segact.data.base import Meta, SegmentationData, checked_dataset
from segact.data.cache import Writer, cached
from segact.data.format import FileDatasetConfig, Sample
from segact.data.normalize import Normalize, check_normalize
from segact.data.pairs import (
    list_named,
    match_pairs,
    nfc,
    pair_files,
    resolve_root,
    same_file,
)
from segact.data.source import MAX_PIXELS, MAX_PIXELS_KEY, Source
from segact.errors import DatasetError

SUFFIXES = (".nii.gz", ".nii")
_MODALITY = re.compile(r"(.+)_(\d{4})$")
GZIP_MAGIC = b"\x1f\x8b"
LABEL_RULES = "set dataset.foreground_labels (e.g. [1, 2]: labels 1 and 2 are foreground)"


class VolumeNorm(Choice):
    """``dataset.volume_norm``: how each volume is scaled, per channel, before slicing."""

    zscore = "zscore"
    percentile = "percentile"  # 0.5-99.5 percentile to [0, 1]
    none = "none"


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(next(s for s in SUFFIXES if name.lower().endswith(s)))]


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError as error:
        raise DatasetError("dataset=nifti needs nibabel: pip install 'segact[nifti]'") from error
    return nibabel


def _nifti(data: bytes, nibabel: Any) -> Any:
    """The NIfTI-1 or NIfTI-2 image of a file's bytes (gzipped or not), only its header read."""
    stream = gzip.GzipFile(fileobj=io.BytesIO(data)) if data[:2] == GZIP_MAGIC else io.BytesIO(data)
    head = stream.read(nibabel.Nifti2Header.sizeof_hdr)
    stream.seek(0)
    for image_class in (nibabel.Nifti1Image, nibabel.Nifti2Image):
        if image_class.header_class.may_contain_header(head):
            return image_class.from_stream(stream)
    raise ValueError("no NIfTI-1 or NIfTI-2 header")


def read_volume(path: Path, source: Source | None = None, axis: int = 2) -> np.ndarray:
    """The voxel array of one NIfTI file, decoded from the bytes ``source`` read (and hashed);
    slices along ``axis`` above its ``max_pixels`` are refused from the header. A DatasetError
    names an unreadable file."""
    nibabel = _nibabel()
    source = source or Source()
    data = source.read(path)
    try:
        image = _nifti(data, nibabel)
    except Exception as error:  # nibabel, gzip and zlib raise many types for a bad file
        raise _unreadable(path, error) from error
    shape = image.shape[:3]
    source.check_size(path, [n for i, n in enumerate(shape) if i != axis], "each slice is")
    try:
        return np.asanyarray(image.dataobj)
    except Exception as error:
        raise _unreadable(path, error) from error


def _unreadable(path: Path, error: Exception) -> DatasetError:
    return DatasetError(
        f"{path} cannot be read as NIfTI ({type(error).__name__}: {error}): replace it "
        "with a valid file, or remove it together with its image or label"
    )


def _normalize_volume(volume: np.ndarray, mode: str) -> np.ndarray:
    """Per channel of a (x, y, z, C) volume."""
    axes = (0, 1, 2)
    if mode == "zscore":
        mean = volume.mean(axis=axes, keepdims=True)
        return (volume - mean) / np.maximum(volume.std(axis=axes, keepdims=True), 1e-6)
    if mode == "percentile":
        low, high = np.percentile(volume, [0.5, 99.5], axis=axes, keepdims=True)
        return np.clip((volume - low) / np.maximum(high - low, 1e-6), 0.0, 1.0)
    return volume


def _group_modalities(images: dict[str, Path], labels: dict[str, Path]) -> dict[str, list[Path]]:
    """nnU-Net style ``<case>_0000`` files are channels of ``<case>`` when labels say ``<case>``."""
    matches = {stem: _MODALITY.match(stem) for stem in images}
    if {nfc(s) for s in images} & {nfc(s) for s in labels} or not all(matches.values()):
        return {stem: [path] for stem, path in images.items()}
    grouped: dict[str, list[Path]] = {}
    for stem in sorted(images):
        grouped.setdefault(nfc(matches[stem].group(1)), []).append(images[stem])
    return grouped


def _slices(
    images: list[Path],
    label: Path,
    axis: int,
    size: tuple[int, int],
    modalities: Sequence[int] | None,
    volume_norm: str,
    foreground_labels: Sequence[int] | None,
    source: Source,
) -> tuple[np.ndarray, np.ndarray]:
    """(slices, C, h, w) float32 and (slices, h, w) bool of one case."""
    volume = read_channels(images, source, axis)
    labels = read_volume(label, source, axis)
    if labels.ndim == 4 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if volume.ndim != 4 or volume.shape[:3] != labels.shape:
        raise DatasetError(
            f"{images[0]} has shape {volume.shape[:3]} (+ {volume.shape[3:]} channels) but its "
            f"label {label} has shape {labels.shape}: they must cover the same voxels"
        )
    foreground = preprocess.binarize_mask(labels, label, None, foreground_labels, LABEL_RULES)
    foreground = np.moveaxis(foreground, axis, 0)
    return (
        volume_slices(volume, images[0], axis, size, modalities, volume_norm),
        np.stack([preprocess.resize_mask(plane, size) for plane in foreground]),
    )


def read_channels(images: list[Path], source: Source | None = None, axis: int = 2) -> np.ndarray:
    """One case's (x, y, z, C) float32 volume: a 4D file's modalities, or one file per channel;
    NaN or infinite voxels are refused."""
    parts = []
    for path in images:
        part = read_volume(path, source, axis).astype(np.float32)
        preprocess.check_finite(part, path, 3, "voxels")
        parts.append(part[..., None] if part.ndim == 3 else part)
    return np.concatenate(parts, axis=-1)


def volume_slices(
    volume: np.ndarray,
    source: Path,
    axis: int,
    size: tuple[int, int],
    modalities: Sequence[int] | None,
    volume_norm: str,
) -> np.ndarray:
    """(slices, C, h, w) float32 of a (x, y, z, C) volume as the dataset stores them (segact-predict
    preprocesses with it too): modalities picked, normalised per volume, sliced and resized."""
    if modalities is not None:
        if max(modalities) >= volume.shape[-1]:
            raise DatasetError(
                f"config key 'dataset.modalities' = {list(modalities)}: {source} has "
                f"{volume.shape[-1]} modalities (0..{volume.shape[-1] - 1})"
            )
        volume = volume[..., list(modalities)]
    planes = np.moveaxis(_normalize_volume(volume, volume_norm), axis, 0)
    return np.stack([preprocess.resize_image(plane, size) for plane in planes])


def _check_options(axis: int, volume_norm: str, modalities: Sequence[int] | None) -> None:
    if volume_norm not in set(VolumeNorm):
        raise DatasetError(
            f"config key 'dataset.volume_norm' = {volume_norm!r}: choose one of "
            f"{', '.join(m.value for m in VolumeNorm)}"
        )
    if axis not in (0, 1, 2):
        raise DatasetError(f"config key 'dataset.axis' = {axis!r}: choose 0, 1 or 2")
    if modalities is not None and (not modalities or min(modalities) < 0):
        raise DatasetError(
            f"config key 'dataset.modalities' = {modalities!r}: list channel numbers from 0, "
            "or null for all"
        )


def nifti_cases(
    root: str | None = None,
    default_root: str | None = None,
    images_dir: str = "imagesTr",
    labels_dir: str = "labelsTr",
) -> tuple[Path, list[tuple[str, list[Path], Path]]]:
    """The dataset folder and its (case, image volumes, label volume): the files ``load_nifti``
    reads."""
    path = resolve_root(root, default_root)
    if same_file(path / images_dir, path / labels_dir):
        raise DatasetError(
            f"dataset.images_dir={images_dir!r} and dataset.labels_dir={labels_dir!r} are one "
            f"folder ({path / images_dir}): a volume would be its own label; keep the labels in "
            "a folder of their own"
        )
    labels = list_named(path / labels_dir, SUFFIXES, _stem, "one label volume per image")
    images = _group_modalities(
        list_named(path / images_dir, SUFFIXES, _stem, "the image volumes"), labels
    )
    return path, match_pairs(images, labels, path)


def load_nifti(
    root: str | None = None,
    image_size: int | Sequence[int] = 256,
    images_dir: str = "imagesTr",
    labels_dir: str = "labelsTr",
    axis: int = 2,
    modalities: Sequence[int] | None = None,
    volume_norm: str = "zscore",
    foreground_labels: Sequence[int] | None = None,
    normalize: str = "none",
    cache: bool = True,
    cache_dir: str | None = None,
    default_root: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> SegmentationData:
    """Every slice of every volume under ``root`` (or the preset's ``default_root``); a volume
    whose slices have more than ``max_pixels`` pixels is refused before it is decoded."""
    mods = None if modalities is None else [int(v) for v in modalities]
    _check_options(axis, volume_norm, mods)
    check_normalize(normalize)
    size = preprocess.parse_size(image_size)
    source = Source(preprocess.check_int(MAX_PIXELS_KEY, max_pixels, minimum=1))
    path, cases = nifti_cases(root, default_root, images_dir, labels_dir)
    fg = None if foreground_labels is None else [int(v) for v in foreground_labels]

    def build(writer: Writer) -> Meta:
        names, owners = [], []
        for case, image, label in cases:
            slices, masks = _slices(image, label, axis, size, mods, volume_norm, fg, source)
            writer.add(slices, masks)
            names.extend(f"{case}_{i:03d}" for i in range(len(masks)))
            owners.extend([case] * len(masks))
        return {"names": np.asarray(names), "cases": np.asarray(owners)}

    settings = {
        "loader": "nifti",
        "size": size,
        "axis": axis,
        "modalities": mods,
        "volume_norm": volume_norm,
        "foreground_labels": fg,
    }
    stored = cached(path, settings, pair_files(cases), build, cache_dir, cache, source)
    fix = "check the label volumes, or dataset.foreground_labels"
    return checked_dataset(path.name, stored, stored.meta["cases"], normalize, path, fix)


@dataclass
class NiftiDatasetConfig(FileDatasetConfig):
    """MSD layout <root>/imagesTr + <root>/labelsTr, cut into 2D slices by volume (case)."""

    _target_: str = "segact.data.nifti.load_nifti"
    name: str = "nifti"
    images_dir: str = "imagesTr"
    labels_dir: str = "labelsTr"
    axis: int = 2  # the voxel axis the slices are cut along
    modalities: list[int] | None = None  # null: every modality as an input channel
    volume_norm: VolumeNorm = VolumeNorm.zscore  # per volume and channel
    foreground_labels: list[int] | None = None  # null: labels must be binary
    normalize: Normalize = Normalize.none  # after slicing


def read_input(path: Path, settings: Mapping[str, Any], size: tuple[int, int]) -> Sample:
    """A volume for segact-predict, sliced and normalised as the dataset stores it; its slices'
    probabilities go back in plane to the volume's shape."""
    axis = int(settings["axis"])
    volume = read_channels([path])
    header = _nibabel().load(path)
    slices = volume_slices(
        volume, path, axis, size, settings["modalities"], settings["volume_norm"]
    )
    plane = tuple(s for i, s in enumerate(volume.shape[:3]) if i != axis)

    def restore(probability: np.ndarray) -> np.ndarray:
        stacked = np.stack([preprocess.resize_plane(p, plane) for p in probability])
        return np.moveaxis(stacked, 0, axis)

    return Sample(slices, restore, header)
