"""What a hostile tester did to the data and its cache: a damaged or truncated cache file, masks
replaced under the same size and mtime, and NFC/NFD twins of one name. Every check compares the
arrays with a fresh decode of the source files, not only that the load succeeds."""

from __future__ import annotations

import logging
import os
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segact.data import hashing
from segact.data.fingerprint import dataset_fingerprint
from segact.data.folder import load_folder
from segact.errors import DatasetError
from segact.runs.runner import train
from tests.data_fixtures import count_decodes, overwrite_middle, truncate_half, write_folder
from tests.helpers import TINY, compose_config, numbers


def load(root: Path, cache: Path, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
    return load_folder(str(root), image_size=16, cache_dir=str(cache), **kwargs).tensors()


def fresh(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A decode of the source files, no cache."""
    return load_folder(str(root), image_size=16, cache=False).tensors()


def assert_same(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> None:
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def folder_cfg(root: Path, cache: Path, *options: str) -> dict[str, object]:
    cfg = compose_config(
        "dataset=folder", f"dataset.root={root}", f"dataset.cache_dir={cache}", *options, tiny=False
    )
    return cfg.dataset


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written a moment ago count as settled: their hashes go to the store at once."""
    monkeypatch.setattr(hashing, "RACY_NS", 0)


@pytest.mark.parametrize(
    ("part", "damage"),
    [("masks", overwrite_middle), ("images", overwrite_middle), ("masks", truncate_half)],
)
def test_damaged_cache_file_is_named_and_decoded_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch, part: str, damage: Callable
) -> None:
    root, cache = write_folder(tmp_path / "data", n=4), tmp_path / "cache"
    load(root, cache)
    [path] = cache.glob(f"data-*.{part}.npy")
    damage(path)
    decodes = count_decodes(monkeypatch)
    with caplog.at_level(logging.WARNING):
        again = load(root, cache)
    assert len(decodes) == 8  # decoded again from the source files
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and path.name in warnings[0].getMessage()
    assert_same(again, fresh(root))
    decodes.clear()
    caplog.clear()
    assert_same(load(root, cache), again)  # and the rebuilt entry is trusted again
    assert not decodes and not caplog.records


@pytest.mark.parametrize("damage", [overwrite_middle, truncate_half])
def test_damaged_entry_meta_is_decoded_again(tmp_path: Path, caplog, damage: Callable) -> None:
    root, cache = write_folder(tmp_path / "data", n=3), tmp_path / "cache"
    load(root, cache)
    [meta] = cache.glob("data-*.npz")  # names and statistics: zip's CRC finds a change
    damage(meta)
    with caplog.at_level(logging.WARNING):
        assert_same(load(root, cache), fresh(root))
    assert "decoding again" in caplog.text


def replace_mask_keeping_size_and_mtime(path: Path) -> None:
    """New mask bytes of the same length, in place (same inode), mtime restored (``touch -r``)."""
    before = path.stat()
    mask = np.asarray(Image.open(path))
    Image.fromarray(np.ascontiguousarray(255 - mask)).save(path)  # BMP: size follows the shape
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_same_size_same_mtime_replacement_is_noticed(tmp_path: Path, settled) -> None:
    root = write_folder(tmp_path / "data", n=4, image_suffix=".bmp", mask_suffix=".bmp")
    cache = tmp_path / "cache"
    cfg = folder_cfg(root, cache)
    before = dataset_fingerprint(cfg)
    old = load(root, cache)
    time.sleep(0.05)  # past the ctime's clock tick
    replace_mask_keeping_size_and_mtime(root / "masks" / "img01.bmp")
    after = dataset_fingerprint(cfg)
    assert after != before
    new = load(root, cache)
    assert_same(new, fresh(root))
    assert not torch.equal(new[1][1], old[1][1]) and torch.equal(new[1][0], old[1][0])
    assert len(list(cache.glob("data-*.npz"))) == 2  # a new entry, the old one left as it was


def test_fingerprint_reads_only_changed_files_unless_asked(
    tmp_path: Path, monkeypatch, settled
) -> None:
    root, cache = write_folder(tmp_path / "data", n=3), tmp_path / "cache"
    cfg = folder_cfg(root, cache)
    hashed: list[Path] = []
    original = hashing.hash_file
    monkeypatch.setattr(hashing, "hash_file", lambda p: hashed.append(p) or original(p))
    first = dataset_fingerprint(cfg)
    assert len(hashed) == 6 and len(first) == 32 and int(first, 16) >= 0
    assert list(cache.glob("hashes/data-*.json"))
    hashed.clear()
    assert dataset_fingerprint(cfg) == first and not hashed
    assert dataset_fingerprint(cfg, rehash=True) == first and len(hashed) == 6
    monkeypatch.setenv("SEGACT_REHASH", "1")
    assert dataset_fingerprint(cfg) == first and len(hashed) == 12


def test_fresh_files_are_not_trusted_by_their_stat(tmp_path: Path, monkeypatch) -> None:
    root, cache = write_folder(tmp_path / "data", n=2), tmp_path / "cache"
    cfg = folder_cfg(root, cache)
    hashed: list[Path] = []
    original = hashing.hash_file
    monkeypatch.setattr(hashing, "hash_file", lambda p: hashed.append(p) or original(p))
    dataset_fingerprint(cfg)
    dataset_fingerprint(cfg)
    assert len(hashed) == 8  # changed within RACY_NS: hashed each time, never stored


def test_fingerprint_follows_names_and_content_only(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", n=3)
    cfg = folder_cfg(root, tmp_path / "cache")
    first = dataset_fingerprint(cfg)
    copy = write_folder(tmp_path / "copy", n=3)  # same seed: the same bytes elsewhere
    assert dataset_fingerprint(folder_cfg(copy, tmp_path / "cache", "dataset.cache=false")) == first
    (root / "notes.txt").write_text("not read by the loader")
    assert dataset_fingerprint(cfg) == first
    for sub in ("images", "masks"):
        (root / sub / "img02.png").rename(root / sub / "img09.png")
    assert dataset_fingerprint(cfg) != first


def test_fingerprint_of_a_dataset_without_files_or_a_bad_folder(tmp_path: Path) -> None:
    assert dataset_fingerprint(compose_config().dataset) is None  # synthetic
    assert dataset_fingerprint({"_target_": "my.own.loader", "root": "x"}) is None
    with pytest.raises(DatasetError, match=r"dataset.root.*no such folder"):
        dataset_fingerprint(folder_cfg(tmp_path / "missing", tmp_path / "cache"))
    root = write_folder(tmp_path / "data", n=2)
    (root / "masks" / "img01.png").unlink()
    with pytest.raises(DatasetError, match=r"images without a mask \(1: img01\)"):
        dataset_fingerprint({"_target_": "segact.data.folder.load_folder", "root": str(root)})


def test_preset_fingerprint_uses_its_default_root(tmp_path: Path) -> None:
    write_folder(tmp_path / "kvasir_seg", n=2)
    cfg = compose_config(
        "dataset=kvasir_seg", f"paths.datasets={tmp_path}", "dataset.cache=false", tiny=False
    )
    plain = {"_target_": "segact.data.folder.load_folder", "root": str(tmp_path / "kvasir_seg")}
    assert dataset_fingerprint(cfg.dataset) == dataset_fingerprint(plain)


NAME = "pólipo 1"


def test_nfc_image_pairs_with_nfd_mask(tmp_path: Path, caplog) -> None:
    root = write_folder(tmp_path / "data", names=["a", unicodedata.normalize("NFC", NAME)])
    decomposed = unicodedata.normalize("NFD", NAME)
    (root / "masks" / f"{NAME}.png").rename(root / "masks" / f"{decomposed}.png")
    assert {p.stem for p in (root / "masks").iterdir()} == {"a", decomposed}  # as on disk
    with caplog.at_level(logging.INFO):
        data = load_folder(str(root), image_size=16, cache=False)
    assert data.names == ["a", NAME]
    [line] = [r.getMessage() for r in caplog.records if "Unicode" in r.getMessage()]
    assert ascii(decomposed) in line


def test_look_alike_names_are_shown_as_on_disk(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", names=["a", "b", "\ufb01le"])
    (root / "masks" / "\ufb01le.png").rename(root / "masks" / "file.png")  # ligature fi
    with pytest.raises(DatasetError) as error:
        load_folder(str(root), image_size=16, cache=False)
    message = str(error.value)
    assert r"images without a mask (1: '\ufb01le')" in message
    assert "masks without an image (1: 'file')" in message


def test_nfc_and_nfd_twins_in_one_folder_are_an_error(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", names=["a", NAME])
    decomposed = unicodedata.normalize("NFD", NAME)
    Image.open(root / "images" / f"{NAME}.png").save(root / "images" / f"{decomposed}.png")
    with pytest.raises(DatasetError, match=r"same name after Unicode normalisation"):
        load_folder(str(root), image_size=16, cache=False)


RUNS = ("fresh", "damaged")


@pytest.mark.slow
def test_training_after_cache_damage_equals_a_fresh_run(tmp_path: Path) -> None:
    root, cache = write_folder(tmp_path / "data", n=8), tmp_path / "cache"
    cfg = compose_config(
        *(option for option in TINY if not option.startswith("dataset.")),
        "dataset=folder",
        f"dataset.root={root}",
        "dataset.image_size=32",
        f"dataset.cache_dir={cache}",
        "trainer.max_epochs=1",
        tiny=False,
    )
    assert train(cfg, tmp_path / "fresh")["status"] == "ok"
    [masks] = cache.glob("data-*.masks.npy")
    overwrite_middle(masks, count=masks.stat().st_size // 4)
    assert train(cfg, tmp_path / "damaged")["status"] == "ok"
    fresh_folds, damaged_folds = (
        numbers(tmp_path / run / "folds.csv").drop(columns="run_dir") for run in RUNS
    )
    assert damaged_folds.equals(fresh_folds)
