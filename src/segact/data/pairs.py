"""Find a dataset's files and pair images with masks by name, with clear errors for bad layouts."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from segact.errors import DatasetError

MAX_LISTED = 10


def resolve_root(root: str | None, default_root: str | None, key: str = "dataset.root") -> Path:
    """``root`` if given, else the preset's ``default_root`` (``${paths.datasets}/<name>``); a
    relative path is taken from the current folder. A missing or unreadable folder is a
    DatasetError that says how to pass the right one."""
    if root is None:
        if default_root is None:
            raise DatasetError(f"config key '{key}' is not set: pass {key}=/path/to/your/data")
        path = Path(default_root).expanduser().resolve()
        if not _is_dir(path):
            raise DatasetError(
                f"config key '{key}' is not set and the default data folder {path} does not "
                f"exist: pass {key}=/path/to/{path.name} (or paths.datasets=/path/to/datasets)"
            )
    else:
        path = Path(root).expanduser().resolve()
        if not _is_dir(path):
            raise DatasetError(
                f"config key '{key}' = {str(root)!r}: no such folder; pass {key}=/path/to/your/data"
            )
    _entries(path)  # readable?
    return path


def _unreadable(folder: Path, error: OSError) -> DatasetError:
    return DatasetError(
        f"{folder} cannot be read ({error.strerror or error}): give the user running segact "
        f"read access to it (e.g. chmod -R a+rX '{folder}')"
    )


def _is_dir(folder: Path) -> bool:
    try:
        return folder.is_dir()
    except OSError as error:  # e.g. a parent folder without search permission
        raise _unreadable(folder.parent, error) from error


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as error:
        raise _unreadable(folder, error) from error


def list_named(
    folder: Path, suffixes: Iterable[str], stem: Callable[[Path], str], what: str
) -> dict[str, Path]:
    """Files of ``folder`` whose name ends with one of ``suffixes`` (any case), keyed by stem;
    hidden files are skipped. A missing or empty folder, a broken link, or two files of one stem
    is an error."""
    if not _is_dir(folder):
        raise DatasetError(f"{folder} is missing: a dataset root needs {what}")
    suffixes = tuple(s.lower() for s in suffixes)
    files: dict[str, Path] = {}
    for path in _entries(folder):
        if path.name.startswith(".") or not path.name.lower().endswith(suffixes):
            continue
        if path.is_symlink() and not path.exists():
            raise DatasetError(
                f"{path} is a broken link (to {os.readlink(path)}, which does not exist): "
                "restore its target, or remove the link together with its image or mask"
            )
        name = stem(path)
        if name in files:
            raise DatasetError(
                f"{files[name]} and {path} have the same name '{name}': keep only one of them"
            )
        files[name] = path
    if not files:
        raise DatasetError(
            f"{folder} has no files ending in {', '.join(suffixes)}: put {what} there"
        )
    return files


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = f", ... ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    return f"{len(names)}: {shown}{more}"


def match_pairs(
    images: dict[str, Path], masks: dict[str, Path], root: Path
) -> list[tuple[str, Path, Path]]:
    """(name, image, mask) for every name; names found on one side only are an error."""
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    problems = []
    if no_mask:
        problems.append(f"images without a mask ({_listing(no_mask)})")
    if no_image:
        problems.append(f"masks without an image ({_listing(no_image)})")
    if problems:
        raise DatasetError(
            f"{root}: {'; '.join(problems)}. Images and masks pair by file name without "
            "extension: add the missing files or remove the unpaired ones"
        )
    return [(name, images[name], masks[name]) for name in sorted(images)]


def require_nonempty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DatasetError(
            f"{path} is empty (0 bytes): replace it with a valid file, or remove it together "
            "with its image or mask"
        )
