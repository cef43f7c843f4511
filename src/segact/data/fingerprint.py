"""The data fingerprint of a dataset config: a hash of the content of every file its loader reads.

A run's identity has the dataset's settings; for a dataset read from files that is not enough
(the files can change under the same settings), so the runner adds this fingerprint as
``data.fingerprint``, and the cache keys its entries by it. Each dataset format declares what
its loader reads (``segact.data.formats``); formats that read no file (the synthetic one: its
parameters are its identity already) and loaders no format declares have none.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from segact.data import formats
from segact.data.cache import cache_folder
from segact.data.hashing import files_fingerprint
from segact.data.pairs import pair_files


def dataset_fingerprint(dataset_cfg: Mapping[str, Any], rehash: bool = False) -> str | None:
    """The data fingerprint (32 hex characters) of the files the dataset's loader reads, or None
    for a dataset that reads no file. Each file's hash is kept in the cache folder
    (``dataset.cache_dir``, else the default; not with ``dataset.cache=false``), keyed by its
    stat, so a repeated call reads only changed files; ``rehash`` (or ``SEGACT_REHASH=1``) reads
    every file. A folder the loader could not read raises the loader's DatasetError."""
    fmt = formats.by_loader(dataset_cfg.get("_target_"))
    if fmt is None:
        return None
    keys = inspect.signature(fmt.lister).parameters
    listed = fmt.lister(**{key: dataset_cfg.get(key) for key in keys if key in dataset_cfg})
    if listed is None:
        return None
    root, pairs = listed
    store = cache_folder(dataset_cfg.get("cache_dir")) if dataset_cfg.get("cache", True) else None
    return files_fingerprint(root, pair_files(pairs), store, rehash)
