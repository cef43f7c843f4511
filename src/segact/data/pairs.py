"""Find a dataset's files and pair images with masks by name, with clear errors for bad layouts.

Names pair after Unicode normalisation (NFC): a file named on Linux (NFC) and its mask copied from
a Mac (NFD, decomposed accents) look alike and are alike. Messages show names as they are on
disk, escaped (``ascii``) where two of them, or the characters of one, would look alike.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from segact.errors import DatasetError

log = logging.getLogger(__name__)

MAX_LISTED = 10
# Characters that do not show, or show as a plain space: a name with one is shown escaped.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Zl", "Zp", "Zs"})
T = TypeVar("T")
_REPORTED: set[tuple[object, ...]] = set()  # the NFC pairings logged already in this process


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
    normal: dict[str, str] = {}  # NFC form -> the name on disk
    for path in _entries(folder):
        if path.name.startswith(".") or not path.name.lower().endswith(suffixes):
            continue
        if path.is_symlink() and not path.exists():
            raise DatasetError(
                f"{path} is a broken link (to {os.readlink(path)}, which does not exist): "
                "restore its target, or remove the link together with its image or mask"
            )
        name = stem(path)
        if nfc(name) in normal:
            raise _same_name(files[normal[nfc(name)]], path, normal[nfc(name)], name)
        files[name], normal[nfc(name)] = path, name
    if not files:
        raise DatasetError(
            f"{folder} has no files ending in {', '.join(suffixes)}: put {what} there"
        )
    return files


def nfc(name: str) -> str:
    """The name files pair by: its Unicode NFC form (composed accents)."""
    return unicodedata.normalize("NFC", name)


def _look_alike(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def _shown(name: str, alike: Counter[str]) -> str:
    """``name`` as it is, or escaped where it would hide how it is spelled on disk."""
    hidden = any(ch != " " and unicodedata.category(ch) in HIDDEN_CATEGORIES for ch in name)
    plain = name == nfc(name) and name == name.strip() and not hidden
    return name if plain and alike[_look_alike(name)] == 1 else ascii(name)


def _same_name(first: Path, second: Path, first_name: str, name: str) -> DatasetError:
    same = f"the same name '{name}'"
    if first_name != name:  # spelled differently on disk, alike after normalisation
        same = f"the same name after Unicode normalisation ({first_name!a}, {name!a})"
    return DatasetError(f"{first} and {second} have {same}: keep only one of them")


def _listing(names: list[str], alike: Counter[str]) -> str:
    shown = ", ".join(_shown(name, alike) for name in names[:MAX_LISTED])
    more = f", ... ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    return f"{len(names)}: {shown}{more}"


def _unpaired(no_mask: list[str], no_image: list[str], root: Path) -> DatasetError:
    alike = Counter(_look_alike(name) for name in (*no_mask, *no_image))
    problems = []
    if no_mask:
        problems.append(f"images without a mask ({_listing(no_mask, alike)})")
    if no_image:
        problems.append(f"masks without an image ({_listing(no_image, alike)})")
    return DatasetError(
        f"{root}: {'; '.join(problems)}. Images and masks pair by file name without "
        "extension: add the missing files or remove the unpaired ones"
    )


def match_pairs(
    images: dict[str, T], masks: dict[str, Path], root: Path
) -> list[tuple[str, T, Path]]:
    """(name, image, mask) for every name (its NFC form), paired by NFC form; names found on one
    side only are an error."""
    image_names = {nfc(name): name for name in images}
    mask_names = {nfc(name): name for name in masks}
    no_mask = sorted(image_names[n] for n in set(image_names) - set(mask_names))
    no_image = sorted(mask_names[n] for n in set(mask_names) - set(image_names))
    if no_mask or no_image:
        raise _unpaired(no_mask, no_image, root)
    renamed = [n for n in sorted(image_names) if image_names[n] != mask_names[n]]
    if renamed and (root, *renamed) not in _REPORTED:  # once, not again when the loader lists
        _REPORTED.add((root, *renamed))
        log.info(
            "%s: %d image/mask name(s) pair only after Unicode normalisation (NFC), e.g. image "
            "%s and mask %s",
            root,
            len(renamed),
            ascii(image_names[renamed[0]]),
            ascii(mask_names[renamed[0]]),
        )
    return [(n, images[image_names[n]], masks[mask_names[n]]) for n in sorted(image_names)]


def pair_files(pairs: Sequence[tuple[str, Path | Sequence[Path], Path]]) -> list[Path]:
    """Every file of ``match_pairs``'s pairs (an image may be several files: its channels)."""
    files: list[Path] = []
    for _, image, mask in pairs:
        files.extend([image] if isinstance(image, Path) else image)
        files.append(mask)
    return files


def require_nonempty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DatasetError(
            f"{path} is empty (0 bytes): replace it with a valid file, or remove it together "
            "with its image or mask"
        )
