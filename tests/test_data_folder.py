"""dataset=folder on generated files: formats, mask rules, cases, every bad input, end to end."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segact.config import ConfigError, validate_against_data
from segact.data.errors import DatasetError
from segact.data.folder import load_folder
from segact.data.splits import case_folds
from segact.train import load_dataset, train
from tests.helpers import compose_config


def make_pair(
    rng: np.random.Generator, size: tuple[int, int] = (24, 20), gray: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit image (brighter inside the mask) and its {0, 255} mask."""
    height, width = size
    mask = np.zeros(size, dtype=np.uint8)
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    mask[top : top + height // 2, left : left + width // 2] = 255
    shape = size if gray else (*size, 3)
    noise = rng.integers(0, 80, shape, dtype=np.uint8)
    image = noise + (mask if gray else mask[..., None]) // 2
    return image.astype(np.uint8), mask


def write_folder(
    root: Path,
    n: int = 6,
    image_suffix: str = ".png",
    mask_suffix: str = ".png",
    names: list[str] | None = None,
    gray: bool = False,
    seed: int = 0,
) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for name in names or [f"img{i:02d}" for i in range(n)]:
        image, mask = make_pair(rng, gray=gray)
        Image.fromarray(image).save(root / "images" / f"{name}{image_suffix}")
        Image.fromarray(mask).save(root / "masks" / f"{name}{mask_suffix}")
    return root


def load(root: Path, **kwargs) -> object:
    return load_folder(str(root), image_size=16, cache=False, **kwargs)


@pytest.mark.parametrize(
    ("image_suffix", "mask_suffix"),
    [(".png", ".png"), (".jpg", ".png"), (".tif", ".tif"), (".bmp", ".bmp")],
)
def test_loads_each_format_resized_with_binary_masks(tmp_path, image_suffix, mask_suffix):
    root = write_folder(tmp_path / "data", image_suffix=image_suffix, mask_suffix=mask_suffix)
    data = load(root, normalize="none")
    assert data.images.shape == (6, 3, 16, 16) and data.masks.shape == (6, 1, 16, 16)
    assert set(data.masks.unique().tolist()) == {0.0, 1.0}
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert data.names == [f"img{i:02d}" for i in range(6)]
    assert list(data.cases) == data.names  # every file its own case
    inside = data.images.mean(1, keepdim=True)[data.masks == 1].mean()
    assert inside > data.images.mean(1, keepdim=True)[data.masks == 0].mean() + 0.2


def test_mask_is_resized_by_nearest_and_image_by_size_hw(tmp_path):
    root = write_folder(tmp_path / "data", n=2)
    data = load_folder(str(root), image_size=[24, 20], cache=False, normalize="none")
    original = np.asarray(Image.open(root / "masks" / "img00.png")) > 0
    assert np.array_equal(data.masks[0, 0].numpy().astype(bool), original)
    assert load_folder(str(root), image_size=[12, 8], cache=False).images.shape[2:] == (12, 8)


def test_gray_images_give_one_channel_or_three_on_request(tmp_path):
    root = write_folder(tmp_path / "data", gray=True)
    assert load(root).in_channels == 1
    data = load(root, gray_to_rgb=True, normalize="imagenet")
    assert data.in_channels == 3
    assert load(root, normalize="dataset").images.mean().abs() < 1e-4
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
    assert both.masks[0, 0, :10].all() and not both.masks[0, 0, 10:].any()
    above_one = load_folder(str(root), image_size=[24, 20], mask_threshold=1, cache=False)
    assert above_one.masks[0, 0, 5:10].all() and not above_one.masks[0, 0, :5].any()


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
    with pytest.raises(ConfigError, match=r"only 2 cases; use at most 2 folds"):
        validate_against_data(cfg, data.n_cases)


def test_bad_input_through_load_dataset_is_a_config_error(tmp_path):
    cfg = compose_config("dataset=folder", f"dataset.root={tmp_path / 'missing'}", tiny=False)
    with pytest.raises(ConfigError, match="no such folder"):
        load_dataset(cfg)


def test_trains_end_to_end_on_a_folder_with_augmentation(tmp_path):
    root = write_folder(tmp_path / "data", n=8)
    cfg = compose_config(
        "dataset=folder",
        f"dataset.root={root}",
        "dataset.image_size=32",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "augment=light",
        "model=tiny",
        "trainer.folds=2",
        "trainer.max_epochs=1",
        "trainer.batch_size=4",
        "trainer.progress=false",
        "trainer.threads=1",
        "eval.thresholds=[0.25,0.5,0.75]",
        tiny=False,
    )
    summary = train(cfg, tmp_path / "run")
    assert summary["status"] == "ok" and summary["folds"] == 2 and summary["dataset"] == "folder"
    assert list((tmp_path / "cache").glob("data-*.npz"))
