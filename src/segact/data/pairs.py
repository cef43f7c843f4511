"""Find a dataset's files and pair images with masks by name, with clear errors for bad layouts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from segact.data.errors import DatasetError

MAX_LISTED = 10


def resolve_root(root: str | None, default_root: str | None, key: str = "dataset.root") -> Path:
    """``root`` if given, else ``default_root`` relative to the repository (the parent of
    configs/); a missing folder is a DatasetError that says how to pass the right one."""
    if root is None:
        if default_root is None:
            raise DatasetError(f"config key '{key}' is not set: pass {key}=/path/to/your/data")
        from segact.train import config_dir  # late: segact.train imports the data modules

        path = (config_dir().parent / default_root).resolve()
        if not path.is_dir():
            raise DatasetError(
                f"config key '{key}' is not set and the default data folder {path} does not "
                f"exist: pass {key}=/path/to/{Path(default_root).name}"
            )
        return path
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DatasetError(
            f"config key '{key}' = {str(root)!r}: no such folder; pass {key}=/path/to/your/data"
        )
    return path


def list_named(
    folder: Path, suffixes: Iterable[str], stem: Callable[[Path], str], what: str
) -> dict[str, Path]:
    """Files of ``folder`` whose name ends with one of ``suffixes`` (any case), keyed by stem;
    hidden files are skipped. A missing or empty folder, or two files of one stem, is an error."""
    if not folder.is_dir():
        raise DatasetError(f"{folder} is missing: a dataset root needs {what}")
    suffixes = tuple(s.lower() for s in suffixes)
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.name.lower().endswith(suffixes):
            continue
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
