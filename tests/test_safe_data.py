"""Issue 30, items 1, 3, 4 and 13 on tiny generated files: a mixed folder pairs by the mask
pattern (never a file with itself), values that would give wrong numbers are refused (NaN, labels
that are not binary, never rounded), data changed while it is decoded is never cached under the
old key, and an image above ``dataset.max_pixels`` is refused from its header. Every accepted
load compares the arrays (or foreground counts) with the source files."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from segact.data import folder
from segact.data.folder import load_folder
from segact.data.nifti import load_nifti
from segact.errors import ConfigError, DatasetError
from segact.runs.identity import identity
from segact.runs.runner import load_dataset
from tests.data_fixtures import write_folder
from tests.helpers import compose_config

SIZE = (24, 20)  # the height and width of write_folder's files: 480 pixels


def load(root: Path, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    options = {"image_size": list(SIZE), "cache": False, "normalize": "none", **kwargs}
    return load_folder(str(root), **options).tensors()


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- 1. pairing ----------------------------------------------------------------------------------

NAMES = ["1", "12", "120", "2", "21"]  # names inside other names: '1' in '12', '12' in '120'


def mixed_folder(tmp_path: Path, suffix: str) -> tuple[Path, Path]:
    """The same pairs as a folder with images/ and masks/ and as one folder of both (mask
    ``<name><suffix>.png``)."""
    apart = write_folder(tmp_path / "apart", names=NAMES)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in NAMES:
        shutil.copy(apart / "images" / f"{name}.png", mixed / f"{name}.png")
        shutil.copy(apart / "masks" / f"{name}.png", mixed / f"{name}{suffix}.png")
    return apart, mixed


@pytest.mark.parametrize("suffix", ["_mask", "_seg", "_segmentation", "_manual1"])
def test_mixed_folder_is_refused_with_the_pattern_that_pairs_it(tmp_path, suffix):
    apart, mixed = mixed_folder(tmp_path, suffix)
    one = {"images_dir": ".", "masks_dir": "."}
    for threshold in (None, 127):  # the old advice (mask_threshold) made it train on garbage
        with pytest.raises(DatasetError) as error:
            load(mixed, mask_threshold=threshold, **one)
        message = one_line(error)
        assert "pairs each file with itself" in message
        assert f"1.png, 1{suffix}.png, 12.png" in message  # three example names
        assert f"\"dataset.mask_pattern='{{stem}}{suffix}'\"" in message
        assert "mask_threshold" not in message
    images, masks = load(mixed, mask_pattern=f"{{stem}}{suffix}", **one)
    want_images, want_masks = load(apart)
    assert images.shape == want_images.shape == (5, 3, *SIZE)
    assert torch.equal(images, want_images) and torch.equal(masks, want_masks)
    files = [np.asarray(Image.open(mixed / f"{n}{suffix}.png")) > 0 for n in NAMES]
    assert masks.sum(dim=(1, 2, 3)).tolist() == [int(f.sum()) for f in files]


def test_a_mask_named_file_is_never_an_image(tmp_path):
    """With the right pattern, a mask whose image is missing is an orphan mask, not an image."""
    _, mixed = mixed_folder(tmp_path, "_mask")
    (mixed / "21.png").unlink()
    with pytest.raises(DatasetError) as error:
        load(mixed, images_dir=".", masks_dir=".", mask_pattern="{stem}_mask")
    message = one_line(error)
    assert "masks without an image (1: 21_mask)" in message
    assert "images without a mask" not in message  # 21_mask is not taken for an image


def test_an_image_is_never_its_own_mask(tmp_path):
    root = write_folder(tmp_path / "data", n=3)
    (root / "masks" / "img01.png").unlink()
    os.link(root / "images" / "img01.png", root / "masks" / "img01.png")  # one file, two names
    for threshold in (None, 127):
        with pytest.raises(DatasetError) as error:
            load(root, mask_threshold=threshold)
        assert "img01.png would be its own mask" in one_line(error)
    linked = write_folder(tmp_path / "linked", n=3)
    shutil.rmtree(linked / "masks")
    (linked / "masks").symlink_to(linked / "images")  # the masks folder is the images folder
    with pytest.raises(DatasetError, match=r"pairs each file with itself"):
        load(linked, mask_threshold=127)


def test_the_threshold_hint_comes_only_for_sound_pairs_with_soft_masks(tmp_path):
    _, mixed = mixed_folder(tmp_path, "_mask")
    soft = np.asarray(Image.open(mixed / "12_mask.png")).copy()
    soft[0, :4] = 128  # an antialiased edge
    Image.fromarray(soft).save(mixed / "12_mask.png")
    with pytest.raises(DatasetError) as error:
        load(mixed, images_dir=".", masks_dir=".", mask_pattern="{stem}_mask")
    message = one_line(error)
    assert "12_mask.png: the mask has 3 values (0, 128, 255)" in message
    assert "dataset.mask_threshold" in message


# --- 3. values -----------------------------------------------------------------------------------

VOLUME = (12, 10, 4)  # 480 voxels, slices of 12 x 10 along axis 2


def save_nifti(array: np.ndarray, path: Path) -> None:
    nibabel = pytest.importorskip("nibabel")  # skips the NIfTI tests only
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), path)


def write_volumes(root: Path, n: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """MSD layout with {0, 1} labels (float32, as many tools write them); returns the images
    and the labels."""
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    images, labels = [], []
    for case in range(n):
        label = np.zeros(VOLUME, np.float32)
        label[2 + case : 8, 2:7, 1:3] = 1
        image = rng.normal(100, 10, VOLUME).astype(np.float32) + 50 * label
        save_nifti(image, root / "imagesTr" / f"case{case}.nii.gz")
        save_nifti(label, root / "labelsTr" / f"case{case}.nii.gz")
        images.append(image)
        labels.append(label)
    return images, labels


def load_volumes(root: Path, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return load_nifti(str(root), image_size=list(VOLUME[:2]), cache=False, **kwargs).tensors()


def test_nifti_non_finite_voxels_are_refused_naming_the_file_and_count(tmp_path):
    root = tmp_path / "task"
    image = write_volumes(root)[0][1]
    path = root / "imagesTr" / "case1.nii.gz"
    image[0, 0, :3], image[5, 5, 0], image[6, 6, 0] = np.nan, np.inf, -np.inf
    save_nifti(image, path)
    with pytest.raises(DatasetError) as error:
        load_volumes(root)
    assert one_line(error).startswith(f"{path}: 5 of 480 voxels are NaN or infinite")


def test_nifti_labels_are_never_rounded(tmp_path):
    root = tmp_path / "task"
    _, labels = write_volumes(root)
    _, masks = load_volumes(root)  # {0, 1}: accepted, every foreground voxel kept
    assert masks.sum().item() == sum(int(label.sum()) for label in labels)
    assert masks[4:8].sum().item() == int(labels[1].sum())
    path = root / "labelsTr" / "case1.nii.gz"
    save_nifti(labels[1] * 0.5, path)  # {0, 0.5}: was rounded to an empty label
    with pytest.raises(DatasetError) as error:
        load_volumes(root)
    message = one_line(error)
    assert message.startswith(f"{path}: the mask has 2 values (0, 0.5)")
    assert "dataset.foreground_labels" in message
    half = labels[1].copy()
    half[2:4] = 0.5  # {0, 0.5, 1}: not whole numbers, whatever foreground_labels says
    save_nifti(half, path)
    with pytest.raises(DatasetError, match=r"case1\.nii\.gz: .* not whole numbers \(0\.5\)"):
        load_volumes(root, foreground_labels=[1])
    save_nifti(labels[1] * 2, path)  # {0, 2}: a label map, no rule
    with pytest.raises(DatasetError, match=r"case1\.nii\.gz: the mask has 2 values \(0, 2\)"):
        load_volumes(root)
    _, masks = load_volumes(root, foreground_labels=[2])  # the rule decides: counts kept
    assert masks[4:8].sum().item() == int(labels[1].sum()) and masks[:4].sum().item() == 0


def test_non_finite_pixels_of_a_float_tiff_are_refused(tmp_path):
    root = write_folder(tmp_path / "data", n=3)
    pixels = np.full(SIZE, 0.5, np.float32)
    pixels[3, :2] = np.nan
    Image.fromarray(pixels, mode="F").save(root / "images" / "img01.tif")
    (root / "images" / "img01.png").unlink()
    with pytest.raises(DatasetError) as error:
        load(root)
    assert one_line(error).startswith(f"{root / 'images' / 'img01.tif'}: 2 of 480 pixels are NaN")


@pytest.mark.parametrize("top", [1, 255])
def test_binary_masks_are_0_and_1_or_0_and_255_and_nothing_else(tmp_path, top):
    root = write_folder(tmp_path / "data", n=3)
    files = [np.asarray(Image.open(root / "masks" / f"img{i:02d}.png")) > 0 for i in range(3)]
    for i, mask in enumerate(files):
        Image.fromarray((mask * top).astype(np.uint8)).save(root / "masks" / f"img{i:02d}.png")
    _, masks = load(root)
    assert masks[:, 0].numpy().astype(bool).tolist() == [f.tolist() for f in files]
    Image.fromarray((files[2] * 37).astype(np.uint8)).save(root / "masks" / "img02.png")
    with pytest.raises(DatasetError) as error:
        load(root)
    assert one_line(error).startswith(
        f"{root / 'masks' / 'img02.png'}: the mask has 2 values (0, 37)"
    )
    _, masks = load(root, foreground_values=[top, 37])  # declared: taken as it says
    assert masks[2, 0].numpy().astype(bool).tolist() == files[2].tolist()


# --- 4. the cache and a file changed while it is decoded ----------------------------------------


def test_a_file_changed_during_decoding_is_never_cached_under_the_old_key(tmp_path, monkeypatch):
    root, cache = write_folder(tmp_path / "data", n=4), tmp_path / "cache"
    want = load(root)
    mask_path = root / "masks" / "img01.png"
    original, before = mask_path.read_bytes(), mask_path.stat()
    read_pixels = folder.read_pixels

    def edit_while_decoding(path: Path, *args: Any, **kwargs: Any) -> Any:
        """The first read of the mask sees an edited file, restored (with its mtime) at once."""
        if path == mask_path and mask_path.read_bytes() == original and not edited:
            edited.append(path)
            Image.fromarray(np.full(SIZE, 255, np.uint8)).save(mask_path)
            try:
                return read_pixels(path, *args, **kwargs)
            finally:
                mask_path.write_bytes(original)
                os.utime(mask_path, ns=(before.st_atime_ns, before.st_mtime_ns))
        return read_pixels(path, *args, **kwargs)

    edited: list[Path] = []
    monkeypatch.setattr(folder, "read_pixels", edit_while_decoding)
    with pytest.raises(DatasetError) as error:
        load(root, cache_dir=str(cache), cache=True)
    assert one_line(error).startswith(f"{mask_path} changed while segact decoded it")
    assert edited and not list(cache.glob("*.npz")) and not list(cache.glob("*.npy"))
    monkeypatch.setattr(folder, "read_pixels", read_pixels)
    images, masks = load(root, cache_dir=str(cache), cache=True)  # decoded again, then cached
    again = load(root, cache_dir=str(cache), cache=True)  # from the cache
    for got in ((images, masks), again):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert masks[1].sum().item() == int((np.asarray(Image.open(mask_path)) > 0).sum()) < 480
    assert len(list(cache.glob("*.npz"))) == 1


# --- 13. images above dataset.max_pixels ---------------------------------------------------------


def test_an_image_above_max_pixels_is_refused_from_its_header(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data", n=3)
    decoded: list[str] = []
    load_pixels = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda image: decoded.append(image) or load_pixels(image)
    )
    with pytest.raises(DatasetError) as error:
        load(root, max_pixels=479, workers=1)
    message = one_line(error)
    assert message.startswith(f"{root / 'images' / 'img00.png'}: the image is 20x24 pixels")
    assert "more than dataset.max_pixels=479" in message
    assert not decoded  # refused from the header
    images, _ = load(root, max_pixels=480)
    assert images.shape == (3, 3, *SIZE)


def test_pil_limits_give_way_to_max_pixels(tmp_path, monkeypatch):
    """PIL's own limit warns at MAX_IMAGE_PIXELS and refuses at twice that, naming no file:
    segact's limit decides instead, and PIL's is left as it was."""
    root = write_folder(tmp_path / "data", n=3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # PIL would refuse these 480 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        images, _ = load(root)
    assert images.shape == (3, 3, *SIZE) and Image.MAX_IMAGE_PIXELS == 200
    with pytest.raises(DatasetError, match=r"img00\.png: the image is 20x24 pixels"):
        load(root, max_pixels=300, workers=1)


def test_nifti_slices_above_max_pixels_are_refused_from_the_header(tmp_path):
    root = tmp_path / "task"
    write_volumes(root)
    with pytest.raises(DatasetError) as error:
        load_volumes(root, max_pixels=100)
    message = one_line(error)
    assert message.startswith(f"{root / 'imagesTr' / 'case0.nii.gz'}: each slice is 12x10 pixels")
    along_x = load_nifti(str(root), image_size=[10, 4], axis=0, max_pixels=100, cache=False)
    assert along_x.tensors()[0].shape == (3 * 12, 1, 10, 4)  # slices of 10 x 4 pass


def test_max_pixels_is_a_dataset_key_that_changes_no_identity(tmp_path):
    root = write_folder(tmp_path / "data", n=3)
    options = ("dataset=folder", f"dataset.root={root}", "dataset.cache=false")
    with pytest.raises(ConfigError, match=r"img00\.png: .*dataset.max_pixels=400"):
        load_dataset(compose_config(*options, "dataset.max_pixels=400", tiny=False))
    base = identity(compose_config(*options, tiny=False), "cpu", 1)
    assert (
        identity(compose_config(*options, "dataset.max_pixels=400", tiny=False), "cpu", 1) == base
    )
    assert "dataset.max_pixels" not in base
