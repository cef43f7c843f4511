"""Rows of an (N, ...) array, read by index: held in memory, or read from a .npy file on demand.

A file is read with ``os.preadv`` straight into the batch being assembled, not memory-mapped:
pages of a memory map that a pass over the data touched stay in the process's resident memory
(Kvasir-SEG at 256 px: +786 MB after one pass over a float32 map), whereas a read leaves them to
the page cache, so the resident memory of a run grows with the batch, not with the dataset.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

CHUNK_BYTES = 64 * 2**20  # what one step of a pass over a whole array reads at most


class Rows(Protocol):
    """What a dataset needs of its raw arrays."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def read_into(self, indices: np.ndarray, out: np.ndarray) -> None:
        """``out[i] = row indices[i]`` for every i."""
        ...

    def blocks(self) -> Iterator[np.ndarray]:
        """The whole array as consecutive blocks of rows (for statistics and copies)."""
        ...


class MemoryRows:
    """An array in memory (generated data, tests)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def read_into(self, indices: np.ndarray, out: np.ndarray) -> None:
        np.take(self.array, indices, axis=0, out=out)

    def blocks(self) -> Iterator[np.ndarray]:
        yield self.array  # in memory already: one block


class FileRows:
    """A C-order .npy file, read row by row; the file stays open (and readable after it is
    deleted, e.g. a cache entry replaced by a parallel run) until this object is gone."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(handle)
            self.offset = handle.tell()
        if fortran_order or dtype.hasobject:
            raise ValueError(f"{self.path}: not a C-order array of plain values")
        self._shape, self._dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self._shape[1:], dtype=np.int64)) * self._dtype.itemsize
        self.fd = os.open(self.path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)

    def __reduce__(self) -> tuple[type[FileRows], tuple[Path]]:
        return FileRows, (self.path,)  # another process opens the file itself

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def read_into(self, indices: np.ndarray, out: np.ndarray) -> None:
        """Rows in ascending file order, runs of consecutive rows in one read each."""
        if not out.flags.c_contiguous:
            raise ValueError("read_into needs a C-contiguous output array")
        if len(indices) == 0:
            return
        order = np.argsort(indices, kind="stable")
        rows = np.asarray(indices)[order]
        flat = out.reshape(len(out), -1).view(np.uint8)
        # A run: consecutive rows of the file that also go to consecutive places of ``out``.
        breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(order) != 1)) + 1
        for run_rows, run_places in zip(
            np.split(rows, breaks), np.split(order, breaks), strict=True
        ):
            first = int(run_places[0])
            target = flat[first : first + len(run_places)]
            self._read(
                memoryview(target).cast("B"), self.offset + int(run_rows[0]) * self.row_bytes
            )

    def blocks(self) -> Iterator[np.ndarray]:
        """At most ``CHUNK_BYTES`` (and at least one row) at a time."""
        n = self._shape[0]
        step = max(1, CHUNK_BYTES // max(1, self.row_bytes))
        for start in range(0, n, step):
            index = np.arange(start, min(n, start + step))
            block = np.empty((len(index), *self._shape[1:]), self._dtype)
            self.read_into(index, block)
            yield block

    def _read(self, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            count = os.preadv(self.fd, [view[done:]], offset + done)
            if count == 0:
                raise OSError(f"{self.path} ends early: delete it (a cache file) to rebuild it")
            done += count


def n_bytes(rows: Rows) -> int:
    return int(np.prod(rows.shape, dtype=np.int64)) * rows.dtype.itemsize
