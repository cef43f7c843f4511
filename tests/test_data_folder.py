"""dataset=folder on generated files: formats, mask rules, cases, every bad input, end to end."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from segact.config import ConfigError, validate_against_data
from segact.data.base import SegmentationData
from segact.data.folder import load_folder
from segact.data.normalize import IMAGENET_MEAN, IMAGENET_STD, uint8_channel_stats
from segact.data.rows import MemoryRows
from segact.data.splits import case_folds
from segact.errors import DatasetError
from segact.runs.identity import folder_suffix, identity
from segact.runs.runner import load_dataset, train
from tests.data_fixtures import write_folder
from tests.helpers import TINY, compose_config

IMAGENET = (
    torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
    torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
)


def load(root: Path, **kwargs: Any) -> SegmentationData:
    return load_folder(str(root), image_size=16, cache=False, **kwargs)


def tensors(root: Path, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return load(root, **kwargs).tensors()


@pytest.mark.parametrize(
    ("image_suffix", "mask_suffix"),
    [(".png", ".png"), (".jpg", ".png"), (".tif", ".tif"), (".bmp", ".bmp")],
)
def test_loads_each_format_resized_with_binary_masks(tmp_path, image_suffix, mask_suffix):
    root = write_folder(tmp_path / "data", image_suffix=image_suffix, mask_suffix=mask_suffix)
    data = load(root, normalize="none")
    assert data.images.shape == (6, 3, 16, 16) and data.masks.shape == (6, 1, 16, 16)
    assert data.images.dtype == np.uint8 and data.masks.dtype == np.uint8  # compact raw rows
    images, masks = data.tensors()
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert data.names == [f"img{i:02d}" for i in range(6)]
    assert list(data.cases) == data.names  # every file its own case
    inside = images.mean(1, keepdim=True)[masks == 1].mean()
    assert inside > images.mean(1, keepdim=True)[masks == 0].mean() + 0.2


def test_mask_is_resized_by_nearest_and_image_by_size_hw(tmp_path):
    root = write_folder(tmp_path / "data", n=2)
    data = load_folder(str(root), image_size=[24, 20], cache=False, normalize="none")
    original = np.asarray(Image.open(root / "masks" / "img00.png")) > 0
    assert np.array_equal(data.tensors()[1][0, 0].numpy().astype(bool), original)
    assert load_folder(str(root), image_size=[12, 8], cache=False).images.shape[2:] == (12, 8)


def test_gray_images_give_one_channel_or_three_on_request(tmp_path):
    root = write_folder(tmp_path / "data", gray=True)
    assert load(root).in_channels == 1
    data = load(root, gray_to_rgb=True, normalize="imagenet")
    assert data.in_channels == 3
    assert tensors(root, normalize="dataset")[0].mean().abs() < 1e-4
    with pytest.raises(DatasetError, match="gray_to_rgb"):
        load(root, normalize="imagenet")


def test_label_map_needs_a_rule_and_the_rule_decides(tmp_path):
    root = write_folder(tmp_path / "data", n=3)
    labels = np.zeros((24, 20), dtype=np.uint8)
    labels[:5], labels[5:10] = 1, 2
    for i in range(3):
        Image.fromarray(labels).save(root / "masks" / f"img{i:02d}.png")
    with pytest.raises(ConfigError, match=r"img00\.png.*3 values.*foreground_values"):
        load(root)
    both = load_folder(str(root), image_size=[24, 20], foreground_values=[1, 2], cache=False)
    masks = both.tensors()[1]
    assert masks[0, 0, :10].all() and not masks[0, 0, 10:].any()
    above_one = load_folder(str(root), image_size=[24, 20], mask_threshold=1, cache=False)
    masks = above_one.tensors()[1]
    assert masks[0, 0, 5:10].all() and not masks[0, 0, :5].any()


def test_case_regex_groups_frames_and_folds_never_split_a_case(tmp_path):
    names = [f"video{v}_frame{f:03d}" for v in range(5) for f in range(3)]
    root = write_folder(tmp_path / "data", names=names)
    data = load(root, case_regex=r"^(video\d+)_")
    assert data.n_cases == 5 and data.cases[0] == "video0"
    for fold in case_folds(data.cases, 3, seed=0):
        assert not set(data.cases[fold.train]) & set(data.cases[fold.val])
    numbered = write_folder(tmp_path / "numbered", names=[f"{i:03d}" for i in range(1, 8)])
    ranges = load(numbered, case_regex=r"^(\d+)$", case_starts=[1, 3, 6])
    assert ranges.cases.tolist() == ["case001"] * 2 + ["case002"] * 3 + ["case003"] * 2
    with pytest.raises(DatasetError, match=r"'001' does not match"):
        load(numbered, case_regex=r"video")


def test_root_missing_or_preset_default_missing(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.root.*no such folder"):
        load(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"pass dataset.root=/path/to/kvasir_seg"):
        load_folder(None, default_root="../no/such/kvasir_seg", cache=False)
    with pytest.raises(ConfigError, match=r"dataset.root.*not set"):
        load_folder(None, cache=False)


def test_images_or_masks_folder_missing_or_empty(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"images has no files"):
        load(root)
    write_folder(root)
    (root / "masks" / "img00.png").rename(root / "img00.png")
    for mask in (root / "masks").iterdir():
        mask.unlink()
    (root / "masks" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"masks has no files ending in \.png"):
        load(root)
    (root / "masks" / "notes.txt").unlink()
    (root / "masks").rmdir()
    with pytest.raises(DatasetError, match=r"masks is missing"):
        load(root)


def test_unpaired_files_are_listed_with_their_count(tmp_path):
    root = write_folder(tmp_path / "data", n=2)
    write_folder(tmp_path / "extra", names=[f"lonely{i:02d}" for i in range(12)])
    for path in (tmp_path / "extra" / "images").iterdir():
        path.rename(root / "images" / path.name)
    (root / "masks" / "img01.png").rename(root / "masks" / "orphan.png")
    with pytest.raises(DatasetError) as error:
        load(root)
    message = str(error.value)
    assert "images without a mask (13: img01, lonely00" in message
    assert "lonely08, ... (3 more)" in message
    assert "masks without an image (1: orphan)" in message


def _rename_masks(root: Path, pattern: str) -> None:
    """masks/<name>.png -> masks/<pattern with {stem} = name>.png"""
    for path in (root / "masks").iterdir():
        path.rename(path.with_name(pattern.format(stem=path.stem) + path.suffix))


@pytest.mark.parametrize("pattern", ["{stem}_mask", "{stem}_segmentation", "mask_{stem}"])
def test_mask_pattern_pairs_images_with_masks_named_otherwise(tmp_path, pattern):
    root = write_folder(tmp_path / "data", n=3, image_suffix=".jpg")
    plain = load(root)
    _rename_masks(root, pattern)
    with pytest.raises(DatasetError) as error:
        load(root)
    message = str(error.value)
    assert message.startswith(
        f"no image of {root / 'images'} pairs with a mask of {root / 'masks'}"
    )
    prefix, suffix = pattern.split("{stem}")
    assert f"masks look like '{prefix}<image name>{suffix}'" in message
    assert message.endswith(f"set \"dataset.mask_pattern='{pattern}'\"")
    paired = load(root, mask_pattern=pattern)
    assert list(paired.names) == ["img00", "img01", "img02"]
    assert torch.equal(paired.tensors()[1], plain.tensors()[1])


def test_mask_pattern_is_checked_and_a_partial_pairing_keeps_its_fix(tmp_path):
    root = write_folder(tmp_path / "data", n=4)
    with pytest.raises(ConfigError, match=r"dataset.mask_pattern' = '_mask'.*\{stem\}"):
        load(root, mask_pattern="_mask")
    _rename_masks(root, "{stem}_mask")
    (root / "masks" / "img03_mask.png").unlink()
    with pytest.raises(DatasetError) as error:
        load(root, mask_pattern="{stem}_mask")
    message = str(error.value)  # the pattern is right: no suggestion, the usual fix
    assert message.startswith(f"{root}: images without a mask (1: img03)")
    assert "pair by '{stem}_mask'" in message and "add the missing files" in message


def test_mask_pattern_keeps_the_run_identity_and_folder_name():
    """Which files pair is in the data fingerprint (their names and content) already."""
    overrides = ("dataset=folder", "dataset.root=/data/ph2")
    pattern = "dataset.mask_pattern='{stem}_m'"
    base = identity(compose_config(*overrides, tiny=False), "cpu", 1)
    assert identity(compose_config(*overrides, pattern, tiny=False), "cpu", 1) == base
    assert "dataset.mask_pattern" not in base
    assert folder_suffix([*overrides, pattern]) == folder_suffix(overrides)


def test_size_mismatch_names_both_files(tmp_path):
    root = write_folder(tmp_path / "data", n=2)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "img01.png")
    with pytest.raises(
        DatasetError, match=r"img01\.png is 20x24 but its mask .*img01\.png is 10x10"
    ):
        load(root)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n garbage"])
def test_empty_or_corrupt_file_is_named(tmp_path, content):
    root = write_folder(tmp_path / "data", n=2)
    (root / "images" / "img01.png").write_bytes(content)
    with pytest.raises(DatasetError, match=r"img01\.png (is empty \(0 bytes\)|cannot be read)"):
        load(root)


def test_all_masks_empty_is_an_error_and_unbalanced_a_warning(tmp_path, caplog):
    root = write_folder(tmp_path / "data", n=2)
    big = np.zeros((24, 20), np.uint8)
    for name in ("img00", "img01"):
        Image.fromarray(big).save(root / "masks" / f"{name}.png")
    with pytest.raises(DatasetError, match=r"all 2 masks are empty"):
        load(root)
    big[0, 0] = 255
    Image.fromarray(big).save(root / "masks" / "img00.png")
    with caplog.at_level(logging.WARNING):
        load(root)
    assert "very unbalanced foreground" in caplog.text


def test_uint8_batches_equal_the_old_whole_array_standardisation_bitwise(tmp_path):
    root = write_folder(tmp_path / "data", n=8)
    data = load_folder(str(root), image_size=16, cache_dir=str(tmp_path / "cache"))
    raw = np.empty(data.images.shape, np.uint8)
    data.images.read_into(np.arange(8), raw)
    mean, std = uint8_channel_stats(MemoryRows(raw))
    exact = raw.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(mean.flatten(), exact.mean(1), rtol=1e-6)
    np.testing.assert_allclose(std.flatten(), exact.std(1, ddof=1), rtol=1e-6)
    old = torch.from_numpy(raw).float().sub_(mean).div_(std)  # the old whole-array path
    index = np.array([6, 0, 3, 3, 7])
    assert torch.equal(data.batch(index, torch.device("cpu"))[0], old[index])
    imagenet = load_folder(str(root), image_size=16, cache=False, normalize="imagenet")
    old = (torch.from_numpy(raw).float().div_(255.0) - IMAGENET[0]).div_(IMAGENET[1])
    assert torch.equal(imagenet.tensors()[0], old)


def test_broken_link_is_named(tmp_path):
    root = write_folder(tmp_path / "data", n=3)
    (root / "images" / "img03.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(DatasetError, match=r"img03\.png is a broken link \(to .*gone\.png.*remove"):
        load(root)


def test_unreadable_folder_is_named(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data", n=2)
    iterdir = Path.iterdir

    def refuse(self: Path) -> Any:  # what a folder of mode 000 does to a user other than root
        if self == root:
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(DatasetError, match=r"data cannot be read \(Permission denied\).*chmod"):
        load(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder whatever its mode")
def test_chmod_000_root_is_named(tmp_path):
    root = write_folder(tmp_path / "data", n=2)
    root.chmod(0)
    try:
        with pytest.raises(DatasetError, match=r"data cannot be read \(Permission denied\)"):
            load(root)
    finally:
        root.chmod(0o755)


def alpha_masks(root: Path, names: list[str], mode: str = "RGBA") -> None:
    """Rewrite masks so that their foreground lives in alpha only (colour all black)."""
    for name in names:
        path = root / "masks" / f"{name}.png"
        alpha = np.asarray(Image.open(path))
        colour = np.zeros((*alpha.shape, len(mode) - 1), np.uint8)
        Image.fromarray(np.dstack([colour, alpha]).squeeze(), mode).save(path)


@pytest.mark.parametrize(("mode", "names"), [("RGBA", ["img01"]), ("LA", ["img00", "img01"])])
def test_foreground_only_in_alpha_is_named_with_the_option(tmp_path, mode, names):
    root = write_folder(tmp_path / "data", n=3)
    alpha_masks(root, names, mode)
    with pytest.raises(DatasetError, match=rf"{names[0]}\.png: .*dataset.mask_channel=alpha"):
        load(root)


def test_mask_channel_alpha_or_index_picks_the_channel(tmp_path):
    root = write_folder(tmp_path / "data", n=3)
    plain = load(root).tensors()[1]
    alpha_masks(root, ["img00", "img01", "img02"])
    assert torch.equal(load(root, mask_channel="alpha").tensors()[1], plain)
    assert torch.equal(load(root, mask_channel=3).tensors()[1], plain)
    with pytest.raises(DatasetError, match=r"all 3 masks are empty.*mask_channel"):
        load(root, mask_channel=0)
    with pytest.raises(DatasetError, match=r"'dataset.mask_channel' = 4: .*only 4 channel"):
        load(root, mask_channel=4)
    with pytest.raises(DatasetError, match=r"'dataset.mask_channel' = 'red'"):
        load(root, mask_channel="red")
    gray = write_folder(tmp_path / "gray", n=2)
    with pytest.raises(DatasetError, match=r"img00\.png has no alpha channel \(bands L\)"):
        load(gray, mask_channel="alpha")


def test_one_case_is_refused_before_training(tmp_path):
    root = write_folder(tmp_path / "data", n=1)
    message = r"k-fold cross-validation needs at least 2 cases; found 1 in .*data"
    with pytest.raises(DatasetError, match=message):
        load(root)
    frames = write_folder(tmp_path / "video", names=["v0_f0", "v0_f1"])
    with pytest.raises(DatasetError, match=message.replace("data", "video")):
        load(frames, case_regex=r"^(v\d)_")


@pytest.mark.parametrize(
    ("option", "key"),
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": [16, -1]}, "image_size"),
        ({"workers": -1}, "workers"),
    ],
)
def test_bad_folder_settings_name_their_key(tmp_path, option, key):
    root = write_folder(tmp_path / "data", n=2)
    with pytest.raises(DatasetError, match=rf"^config key 'dataset.{key}'"):
        load_folder(str(root), cache=False, **option)


def test_presets_find_their_folder_under_paths_datasets(tmp_path, monkeypatch):
    write_folder(tmp_path / "kvasir_seg", n=3)
    options = ("dataset=kvasir_seg", "dataset.image_size=16", f"dataset.cache_dir={tmp_path / 'c'}")
    data = load_dataset(compose_config(*options, f"paths.datasets={tmp_path}", tiny=False))
    assert len(data) == 3 and data.name == "kvasir_seg"
    monkeypatch.chdir(tmp_path)  # a relative folder is taken from the current one
    assert len(load_dataset(compose_config(*options, "paths.datasets=.", tiny=False))) == 3
    cfg = compose_config(*options, f"paths.datasets={tmp_path / 'elsewhere'}", tiny=False)
    with pytest.raises(
        DatasetError,
        match=r"not set and the default .*kvasir_seg does not exist: pass dataset.root=",
    ):
        load_dataset(cfg)


def test_fewer_cases_than_folds_fails_before_training(tmp_path):
    root = write_folder(tmp_path / "data", names=[f"v{v}_{f}" for v in range(2) for f in range(3)])
    cfg = compose_config(
        "dataset=folder",
        f"dataset.root={root}",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "dataset.case_regex='^(v\\d)_'",
        "trainer.folds=3",
        tiny=False,
    )
    data = load_dataset(cfg)
    with pytest.raises(ConfigError, match=r"trainer.folds.*2 cases"):
        validate_against_data(cfg, data.n_cases)


def test_bad_input_through_load_dataset_is_a_config_error(tmp_path):
    cfg = compose_config("dataset=folder", f"dataset.root={tmp_path / 'missing'}", tiny=False)
    with pytest.raises(ConfigError, match="no such folder"):
        load_dataset(cfg)


@pytest.mark.slow
def test_trains_end_to_end_on_a_folder_with_augmentation(tmp_path):
    root = write_folder(tmp_path / "data", n=8)
    cfg = compose_config(
        *(option for option in TINY if not option.startswith("dataset.")),
        "dataset=folder",
        f"dataset.root={root}",
        "dataset.image_size=32",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "augment=light",
        "trainer.max_epochs=1",
        "eval.thresholds=[0.25,0.5,0.75]",
        tiny=False,
    )
    summary = train(cfg, tmp_path / "run")
    assert summary["status"] == "ok" and summary["folds"] == 2 and summary["dataset"] == "folder"
    assert list((tmp_path / "cache").glob("data-*.images.npy"))
