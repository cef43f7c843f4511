"""Content hashes of files: the data fingerprint of a dataset's files, and the cache's checksums.

Hashing every file of a dataset on every run would read the whole dataset; so each file's hash is
kept in a small JSON store per dataset root (``<cache folder>/hashes/``), keyed by the file's
absolute path, size, mtime_ns, ctime_ns and inode. The store is a shortcut only: a file whose
stat changed is hashed again. ctime is part of the key because ``touch -r`` restores an mtime but
never a ctime, and an in-place rewrite keeps the inode. A file changed less than ``RACY_NS``
before it was hashed is not stored (a second change within one clock tick could keep its
ctime). ``rehash=True`` or ``SEGACT_REHASH=1`` ignores the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from segact.errors import DatasetError
from segact.io import atomic_path

log = logging.getLogger(__name__)

CHUNK_BYTES = 8 * 2**20  # what one read of a hash pass reads at most
FINGERPRINT_CHARS = 32
RACY_NS = 2 * 10**9
STORE_VERSION = 1
HASH_THREADS = 4  # reads overlap with hashing (hashlib releases the GIL)
Entry = list[Any]  # [size, mtime_ns, ctime_ns, inode, hex digest]


def new_hash() -> hashlib._Hash:
    """SHA-256: with the CPU's SHA instructions about twice as fast as BLAKE2b here."""
    return hashlib.sha256()


def hash_fd(fd: int, size: int) -> str:
    """Hex digest of the first ``size`` bytes of the open file ``fd``, read in chunks into one
    buffer (memory stays at one chunk whatever the file's size); a short file raises OSError."""
    digest = new_hash()
    buffer = bytearray(min(CHUNK_BYTES, max(size, 1)))
    view = memoryview(buffer)
    done = 0
    while done < size:
        count = os.preadv(fd, [view[: min(len(view), size - done)]], done)
        if count == 0:
            raise OSError(f"ends after {done} of {size} bytes")
        digest.update(view[:count])
        done += count
    return digest.hexdigest()


def hash_bytes(data: bytes) -> str:
    """Hex digest of ``data``: what ``hash_file`` gives for a file of these bytes."""
    digest = new_hash()
    digest.update(data)
    return digest.hexdigest()


def unreadable_file(path: Path, error: OSError) -> DatasetError:
    return DatasetError(
        f"{path} cannot be read ({error.strerror or error}): give the user running segact "
        "read access to it, or remove it together with its image or mask"
    )


def hash_file(path: Path) -> str:
    """Hex digest of a whole file; an unreadable one is a DatasetError naming it."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            return hash_fd(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError as error:
        raise unreadable_file(path, error) from error


def rehash_requested(rehash: bool = False) -> bool:
    """``rehash``, or the environment's ``SEGACT_REHASH`` set (1, true, yes; not 0, false, no)."""
    flag = os.environ.get("SEGACT_REHASH", "").strip().lower()
    return rehash or flag not in ("", "0", "false", "no", "off")


def _stat_key(path: Path) -> list[int]:
    try:
        stat = os.stat(path)
    except OSError as error:
        raise DatasetError(f"{path} cannot be read ({error.strerror or error})") from error
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


class HashStore:
    """The stored hashes of one dataset root's files (``path``: None keeps nothing)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries = self._read() if path else {}

    def _read(self) -> dict[str, Entry]:
        try:
            with open(self.path, encoding="utf-8") as handle:  # type: ignore[arg-type]
                stored = json.load(handle)
        except (OSError, ValueError):  # absent or damaged: a shortcut lost, nothing more
            return {}
        if not isinstance(stored, dict) or stored.get("version") != STORE_VERSION:
            return {}
        files = stored.get("files")
        return files if isinstance(files, dict) else {}

    def digests(self, files: Sequence[Path], rehash: bool) -> list[str]:
        """The content hash of each file: from the store where its stat is unchanged."""
        names = [os.path.abspath(file) for file in files]
        keys = [_stat_key(file) for file in files]
        found: list[str | None] = [
            None if rehash else _stored_digest(self.entries.get(name), key)
            for name, key in zip(names, keys, strict=True)
        ]
        todo = [i for i, digest in enumerate(found) if digest is None]
        if todo:
            with ThreadPoolExecutor(min(HASH_THREADS, len(todo))) as pool:
                hashed = list(pool.map(hash_file, [files[i] for i in todo]))
            self._keep([(names[i], keys[i], d) for i, d in zip(todo, hashed, strict=True)])
            for i, digest in zip(todo, hashed, strict=True):
                found[i] = digest
        return [str(digest) for digest in found]

    def _keep(self, hashed: list[tuple[str, list[int], str]]) -> None:
        settled = time.time_ns() - RACY_NS
        fresh = {name: [*key, digest] for name, key, digest in hashed if max(key[1:3]) < settled}
        if not fresh or self.path is None:
            return
        self.entries = {
            name: entry for name, entry in self.entries.items() if os.path.lexists(name)
        }
        self.entries.update(fresh)
        try:
            with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"version": STORE_VERSION, "files": self.entries}, handle)
        except OSError as error:  # a read-only cache folder: hash again next time
            log.debug("could not store file hashes in %s (%s)", self.path, error)


def _stored_digest(entry: object, key: list[int]) -> str | None:
    valid = isinstance(entry, list) and len(entry) == 5 and isinstance(entry[4], str)
    return entry[4] if valid and entry[:4] == key else None  # type: ignore[index]


def store_path(store_dir: Path, root: Path) -> Path:
    """The hash store of the dataset under ``root``, in the cache folder ``store_dir``."""
    tag = hashlib.sha256(os.fsencode(root)).hexdigest()[:12]
    return store_dir / "hashes" / f"{root.name}-{tag}.json"


def file_digests(
    root: Path, files: Sequence[Path], store_dir: Path | None = None, rehash: bool = False
) -> list[str]:
    """The content hash of each of ``files``; ``store_dir``: the cache folder that keeps each
    file's hash (None: hash every file now)."""
    store = HashStore(store_path(store_dir, root) if store_dir is not None else None)
    return store.digests(files, rehash_requested(rehash))


def fingerprint_of(root: Path, files: Sequence[Path], digests: Sequence[str]) -> str:
    """A hash of the sorted (name relative to ``root``, content hash) of ``files``."""
    named = sorted(
        (os.fsencode(os.path.relpath(file, root)), digest)
        for file, digest in zip(files, digests, strict=True)
    )
    total = new_hash()
    for name, digest in named:
        total.update(name + b"\0" + digest.encode() + b"\n")
    return total.hexdigest()[:FINGERPRINT_CHARS]


def files_fingerprint(
    root: Path, files: Sequence[Path], store_dir: Path | None = None, rehash: bool = False
) -> str:
    """The data fingerprint of ``files``: it changes when any file's bytes change, or a file is
    added, removed or renamed (``file_digests``, ``fingerprint_of``)."""
    return fingerprint_of(root, files, file_digests(root, files, store_dir, rehash))
