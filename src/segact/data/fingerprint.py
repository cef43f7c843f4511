"""The data fingerprint of a dataset config: a hash of the content of every file its loader reads.

A run's identity has the dataset's settings; for a dataset read from files that is not enough
(the files can change under the same settings), so the runner adds this fingerprint as
``data.fingerprint``, and the cache keys its entries by it. Datasets that read no file (the
synthetic one: its parameters are its identity already) and loaders unknown here have none.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from segact.data.cache import cache_folder
from segact.data.folder import folder_pairs
from segact.data.hashing import files_fingerprint
from segact.data.nifti import nifti_cases
from segact.data.pairs import pair_files

Lister = Callable[..., tuple[Path, list[tuple[str, Any, Path]]]]
LISTERS: dict[str, Lister] = {
    "segact.data.folder.load_folder": folder_pairs,
    "segact.data.nifti.load_nifti": nifti_cases,
}
"""The file-based loaders (``_target_``), and what lists the files each reads from the keys of
its config (``root``, ``default_root``, its folders)."""


def dataset_fingerprint(dataset_cfg: Mapping[str, Any], rehash: bool = False) -> str | None:
    """The data fingerprint (32 hex characters) of the files the dataset's loader reads, or None
    for a dataset that reads no file. Each file's hash is kept in the cache folder
    (``dataset.cache_dir``, else the default; not with ``dataset.cache=false``), keyed by its
    stat, so a repeated call reads only changed files; ``rehash`` (or ``SEGACT_REHASH=1``) reads
    every file. A folder the loader could not read raises the loader's DatasetError."""
    lister = LISTERS.get(str(dataset_cfg.get("_target_")))
    if lister is None:
        return None
    keys = inspect.signature(lister).parameters
    root, pairs = lister(**{key: dataset_cfg.get(key) for key in keys if key in dataset_cfg})
    store = cache_folder(dataset_cfg.get("cache_dir")) if dataset_cfg.get("cache", True) else None
    return files_fingerprint(root, pair_files(pairs), store, rehash)
