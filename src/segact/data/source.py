"""How the file loaders read a dataset's files: the bytes decoded are the bytes hashed, and an
image too large to decode is refused from its header.

The cache keys an entry by the data fingerprint (``hashing``) taken before decoding; a file
rewritten while it is decoded (and perhaps restored afterwards) would be stored under the old key
with the new content. So a loader decodes each file from the bytes ``Source.read`` returns, which
keeps their SHA-256, and the cache compares those with the fingerprint's before it stores
anything (``cache.cached``).

``max_pixels`` is checked from a file's header, before any pixel is decoded: decoding holds at
most ``dataset.workers`` images at once, so its memory is bounded by the workers times the
largest image accepted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from segact.data.hashing import hash_bytes, unreadable_file
from segact.data.pairs import require_nonempty
from segact.errors import DatasetError

MAX_PIXELS = 50_000_000  # 50 MP: an 8-bit RGB image of 150 MB, some 1.5 GB while it is decoded
MAX_PIXELS_KEY = "dataset.max_pixels"


@dataclass
class Source:
    """Reads source files for decoding: ``digests`` has the SHA-256 of the bytes each ``read``
    returned (by absolute path); ``max_pixels``: the largest image (or slice) accepted."""

    max_pixels: int = MAX_PIXELS
    digests: dict[str, str] = field(default_factory=dict)

    def read(self, path: Path) -> bytes:
        require_nonempty(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise unreadable_file(path, error) from error
        self.digests[os.path.abspath(path)] = hash_bytes(data)
        return data

    def check_size(self, path: Path, size: Sequence[int], what: str = "the image is") -> None:
        """Refuse an image (its width and height, from the header) above ``max_pixels``."""
        pixels = math.prod(int(side) for side in size)
        if pixels > self.max_pixels:
            dims = "x".join(str(int(side)) for side in size)
            raise DatasetError(
                f"{path}: {what} {dims} pixels ({pixels / 1e6:.1f} MP), more than "
                f"{MAX_PIXELS_KEY}={self.max_pixels}: shrink it, or raise {MAX_PIXELS_KEY} "
                "where the memory allows (each decoding worker holds one such image)"
            )
