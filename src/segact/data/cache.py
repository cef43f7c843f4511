"""Preprocessed-array cache: decode and resize once, then read the arrays batch by batch.

A loader hands its decoded images and masks, part by part, to a ``Writer``, which streams them to
disk, so decoding holds a few images in memory, not the dataset. A cache entry is three files:
``<name>-<key>.images.npy`` (uint8 for 8-bit sources, else float32), ``<name>-<key>.masks.npy``
(uint8 0/1) and ``<name>-<key>.npz`` (names, cases, and the ``DatasetStats`` of the arrays: channel
statistics and foreground count, so a cached load reads no pixel, and the SHA-256 of each .npy
file; written last: it marks a complete entry, and zip's CRC guards it).
The key covers the loader's preprocessing settings and the data fingerprint (``hashing``: the
content of every input file, with its name), so any changed, added or removed file (or setting)
gives a fresh decode, whatever the files' times say. The loader decodes the bytes its ``Source``
read and hashed; an entry is stored only when those are the bytes the key's fingerprint was
taken from, so a file rewritten while it is decoded (even if restored afterwards) is never
cached under the old key.
An entry is verified when it is opened, before training: a .npy file of the wrong size or whose
checksum differs (a damaged disk, a file changed by hand) is one warning, and the entry is decoded
again from the source files. Files are written atomically, so parallel runs of a sweep that build
the same entry at once never read a half-written file. With the cache off, the same files go to a
temporary folder that is deleted at once (the open files stay readable until the dataset is
gone).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any
from zipfile import BadZipFile

import numpy as np

from segact.data.base import DatasetStats, Meta, Stored
from segact.data.hashing import file_digests, fingerprint_of, hash_fd, new_hash
from segact.data.rows import FileRows, n_bytes
from segact.data.source import Source
from segact.errors import DatasetError
from segact.io import atomic_path

log = logging.getLogger(__name__)

VERSION = 3  # bump when the files or the arrays a loader produces change for the same settings
Layout = tuple[tuple[int, ...], np.dtype]
PARTS = ("images", "masks")
CHECKSUMS = "checksums"  # the meta key of the .npy files' SHA-256, in the order of PARTS


class DamagedCache(ValueError):
    """A cache file that is not what was written: the entry is decoded again."""


def default_cache_dir() -> Path:
    """``$SEGACT_CACHE``, else ``~/.cache/segact``."""
    return Path(os.environ.get("SEGACT_CACHE") or Path.home() / ".cache" / "segact")


def cache_folder(cache_dir: str | Path | None) -> Path:
    """``cache_dir`` (``dataset.cache_dir``), else the default one."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def cache_key(settings: dict[str, Any], fingerprint: str) -> str:
    """The entry of these preprocessing ``settings`` of the data of this ``fingerprint``."""
    text = json.dumps(
        {"version": VERSION, "settings": settings, "data": fingerprint}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class _Hashing:
    """A binary file that hashes what is written to it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.digest = out, new_hash()

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        return self.out.write(data)


class Spool:
    """Arrays appended in order to ``file`` (a temporary file), each in its own layout."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.parts: list[Layout] = []

    def append(self, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self.file.write(memoryview(array).cast("B"))
        self.parts.append((array.shape, array.dtype))

    def __iter__(self) -> Iterator[np.ndarray]:
        self.file.seek(0)
        for shape, dtype in self.parts:
            data = self.file.read(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
            yield np.frombuffer(data, dtype).reshape(shape)

    def save(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype) -> str:
        """One .npy file of every part, each made ``row_shape`` and ``dtype`` by ``conform``;
        returns its SHA-256 (hex)."""
        rows = sum(shape[0] for shape, _ in self.parts)
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": (rows, *row_shape),
        }
        with atomic_path(path) as tmp, open(tmp, "wb") as file:
            out = _Hashing(file)
            np.lib.format.write_array_header_2_0(out, header)
            for part in self:
                out.write(memoryview(np.ascontiguousarray(conform(part, row_shape[0], dtype))))
        return out.digest.hexdigest()


def conform(images: np.ndarray, channels: int, dtype: np.dtype) -> np.ndarray:
    """(k, c, h, w) images as ``channels`` channels (gray repeated) of ``dtype`` (uint8 -> float
    in [0, 1]); unchanged where they match already."""
    if images.shape[1] != channels:
        images = np.repeat(images, channels, axis=1)
    if images.dtype != dtype:
        images = images.astype(np.float32) / 255 if images.dtype == np.uint8 else images
        images = images.astype(dtype)
    return images


def common_layout(parts: list[Layout], gray_to_rgb: bool, source: Path) -> tuple[int, np.dtype]:
    """One channel count and type for every image: mixed gray and colour (or ``gray_to_rgb``)
    gives colour; mixed 8-bit and other images give float32."""
    channels = {shape[1] for shape, _ in parts}
    if gray_to_rgb or channels == {1, 3}:
        channels = {3 if c == 1 else c for c in channels}
    if len(channels) > 1:
        raise DatasetError(
            f"{source}: images have different channel counts {sorted(channels)}: "
            "convert them to one format"
        )
    dtypes = {dtype for _, dtype in parts}
    return channels.pop(), dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)


class Writer:
    """Where a loader puts its decoded data, in order: ``add(images (k, C, h, w), masks (k, h,
    w) bool)``; ``save`` settles the images' common layout and writes the .npy files."""

    def __init__(self, images: Spool, masks: Spool, gray_to_rgb: bool = False) -> None:
        self.images, self.masks, self.gray_to_rgb = images, masks, gray_to_rgb

    def add(self, images: np.ndarray, masks: np.ndarray) -> None:
        self.images.append(images)
        self.masks.append(masks.reshape(len(masks), 1, *masks.shape[-2:]).astype(np.uint8))

    def save(self, stem: Path, source: Path) -> np.ndarray:
        """Write the .npy files; returns their checksums (see ``CHECKSUMS``)."""
        if not self.images.parts:
            raise DatasetError(f"{source}: no images found: put the data there")
        channels, dtype = common_layout(self.images.parts, self.gray_to_rgb, source)
        size = self.images.parts[0][0][2:]
        images = self.images.save(_path(stem, "images"), (channels, *size), dtype)
        masks = self.masks.save(_path(stem, "masks"), (1, *size), np.dtype(np.uint8))
        return np.asarray([images, masks])


def _path(stem: Path, part: str) -> Path:
    return stem.parent / f"{stem.name}.{part}.npy"


def _meta_path(stem: Path) -> Path:
    return stem.parent / f"{stem.name}.npz"


def verify(rows: FileRows, checksum: str) -> None:
    """Raise DamagedCache unless the file of ``rows`` (the descriptor it reads from, so the
    file checked is the file read) has the size its header says and the SHA-256 ``checksum``."""
    size = os.fstat(rows.fd).st_size
    expected = rows.offset + n_bytes(rows)
    if size != expected:
        raise DamagedCache(f"{rows.path} has {size} bytes, its header says {expected}")
    if hash_fd(rows.fd, size) != checksum:
        raise DamagedCache(f"{rows.path} does not match its checksum (changed since written)")


def _open(stem: Path, check: bool = True) -> Stored:
    """The entry ``stem``; ``check``: its .npy files verified against their checksums."""
    with np.load(_meta_path(stem), allow_pickle=False) as stored:
        meta = {key: stored[key] for key in stored.files}
    checksums = meta.pop(CHECKSUMS, None)
    if checksums is None or checksums.shape != (len(PARTS),):
        raise DamagedCache(f"{_meta_path(stem)} has no checksums")
    images, masks = (FileRows(_path(stem, part)) for part in PARTS)
    if check:
        for rows, checksum in zip((images, masks), checksums, strict=True):
            verify(rows, str(checksum))
    return Stored(images, masks, meta)


def check_decoded(files: Sequence[Path], digests: Sequence[str], reader: Source) -> None:
    """Refuse data that changed while it was decoded: a file whose bytes ``reader`` read differ
    from the ones its fingerprint ``digests`` were taken from (files it did not read pass)."""
    for file, digest in zip(files, digests, strict=True):
        read = reader.digests.get(os.path.abspath(file))
        if read is not None and read != digest:
            raise DatasetError(
                f"{file} changed while segact decoded it (its content is not the content the "
                "dataset was fingerprinted from), so nothing was cached: run again once nothing "
                "writes to the dataset"
            )


def _build(
    stem: Path,
    build: Callable[[Writer], Meta],
    gray_to_rgb: bool,
    source: Path,
    check: Callable[[], None] | None = None,
) -> Stored:
    """Decode into the entry ``stem``; ``check`` runs after decoding, before anything is kept."""
    spool = functools.partial(tempfile.TemporaryFile, dir=stem.parent)
    with spool() as images, spool() as masks:
        writer = Writer(Spool(images), Spool(masks), gray_to_rgb)
        meta = build(writer)
        if check is not None:
            check()
        checksums = writer.save(stem, source)
    stats = DatasetStats.of(FileRows(_path(stem, "images")), FileRows(_path(stem, "masks")))
    with atomic_path(_meta_path(stem)) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **meta, **stats.to_meta(), **{CHECKSUMS: checksums})
    return _open(stem, check=False)  # just written from the source files


def _from_cache(stem: Path, source: Path) -> Stored | None:
    """The verified entry ``stem``, or None (absent; damaged or incomplete: one warning)."""
    if not _meta_path(stem).exists():
        return None
    started = time.perf_counter()
    try:
        stored = _open(stem)
    except (OSError, ValueError, BadZipFile, EOFError) as error:  # damaged, or deleted by hand
        log.warning("%s: cache entry %s is unusable (%s): decoding again", source, stem, error)
        return None
    seconds = time.perf_counter() - started
    log.info("%s: opened and verified cache %s in %.3f s", source, stem, seconds)
    return stored


def cached(
    source: Path,
    settings: dict[str, Any],
    files: Iterable[Path],
    build: Callable[[Writer], Meta],
    cache_dir: str | Path | None = None,
    enabled: bool = True,
    reader: Source | None = None,
) -> Stored:
    """The arrays ``build(writer)`` writes for ``source``, from the cache when the settings and
    the files' contents are unchanged and the entry is intact; ``settings['gray_to_rgb']``
    makes gray images join colour ones. ``reader``: the ``Source`` the loader decodes the
    files from; a file it read with other bytes than the fingerprint's is a DatasetError."""
    gray_to_rgb = bool(settings.get("gray_to_rgb", False))
    if enabled:
        folder = cache_folder(cache_dir)
        paths = list(files)
        digests = file_digests(source, paths, folder)
        fingerprint = fingerprint_of(source, paths, digests)
        stem = folder / f"{source.name}-{cache_key(settings, fingerprint)}"
        stored = _from_cache(stem, source)
        if stored is not None:
            return stored
        check = None if reader is None else functools.partial(check_decoded, paths, digests, reader)
        started = time.perf_counter()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stored = _build(stem, build, gray_to_rgb, source, check)
        except OSError as error:  # a read-only cache folder slows later runs, it breaks nothing
            log.warning("%s: could not write the cache in %s (%s)", source, folder, error)
        else:
            log.info(
                "%s: decoded in %.1f s, cached to %s", source, time.perf_counter() - started, stem
            )
            return stored
    with tempfile.TemporaryDirectory(prefix="segact-") as scratch:
        return _build(Path(scratch) / source.name, build, gray_to_rgb, source)
