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


STEM = "{stem}"
SAMPLED_MASKS = 200  # masks looked at to guess the naming of mask files


def pattern_parts(pattern: str) -> tuple[str, str]:
    """``dataset.mask_pattern`` split around its one ``{stem}``: what a mask's name (without
    extension) has before and after its image's name."""
    prefix, found, suffix = pattern.partition(STEM)
    if not found or any(c in prefix + suffix for c in "{}/\\\0"):
        raise DatasetError(
            f"config key 'dataset.mask_pattern' = {pattern!r}: give a mask's name without "
            "extension with {stem} for its image's, e.g. '{stem}' or '{stem}_mask'"
        )
    return prefix, suffix


def _pairing(images: Iterable[str], masks: set[str], prefix: str, suffix: str) -> int:
    return sum(nfc(prefix + name + suffix) in masks for name in images)


def suggest_pattern(images: Iterable[str], masks: Iterable[str]) -> str | None:
    """The mask_pattern that pairs most images (more than half of them) with masks, guessed
    from where the image names occur inside the mask names ('{stem}_mask'); None if none."""
    image_set, mask_set = {nfc(n) for n in images}, {nfc(n) for n in masks}
    counts: Counter[tuple[str, str]] = Counter()
    for mask in sorted(mask_set)[:SAMPLED_MASKS]:
        counts.update(
            {
                (mask[:i], mask[j:])
                for i in range(len(mask))
                for j in range(i + 1, len(mask) + 1)
                if mask[i:j] in image_set
            }
        )
    plain = [parts for parts in counts if not any(c in "".join(parts) for c in "{}/\\")]
    candidates = sorted(plain, key=lambda parts: -counts[parts])[:5]
    scored = [(_pairing(image_set, mask_set, *parts), parts) for parts in candidates]
    paired, (prefix, suffix) = max(scored, default=(0, ("", "")))
    return f"{prefix}{STEM}{suffix}" if 2 * paired > len(image_set) else None


def _pattern_hint(images: Iterable[str], masks: Iterable[str], pattern: str) -> str:
    """A sentence naming the mask_pattern the names suggest, or '' if none beats ``pattern``."""
    suggested = suggest_pattern(images, masks)
    if suggested is None or suggested == pattern:
        return ""
    prefix, suffix = pattern_parts(suggested)
    return (
        f"; the masks look like '{prefix}<image name>{suffix}': set "
        f"\"dataset.mask_pattern='{suggested}'\""
    )


def _unpaired(
    no_mask: list[str], no_image: list[str], where: str, pattern: str, hint: str
) -> DatasetError:
    alike = Counter(_look_alike(name) for name in (*no_mask, *no_image))
    problems = []
    if no_mask:
        problems.append(f"images without a mask ({_listing(no_mask, alike)})")
    if no_image:
        problems.append(f"masks without an image ({_listing(no_image, alike)})")
    rule = "by file name without extension" if pattern == STEM else f"by {pattern!r}"
    fix = hint or ": add the missing files or remove the unpaired ones"
    return DatasetError(
        f"{where}: {'; '.join(problems)}. Images and masks pair {rule} (dataset.mask_pattern){fix}"
    )


def match_pairs(
    images: dict[str, T],
    masks: dict[str, Path],
    root: Path,
    mask_pattern: str = STEM,
    folders: tuple[Path, Path] | None = None,
) -> list[tuple[str, T, Path]]:
    """(name, image, mask) for every image name (its NFC form), paired with the mask named
    ``mask_pattern`` with ``{stem}`` = the image's name, by NFC form; names found on one side
    only are an error (it names the image and mask ``folders`` when nothing pairs)."""
    prefix, suffix = pattern_parts(mask_pattern)
    image_names = {nfc(prefix + name + suffix): name for name in images}  # by the mask's name
    mask_names = {nfc(name): name for name in masks}
    no_mask = sorted(image_names[n] for n in set(image_names) - set(mask_names))
    no_image = sorted(mask_names[n] for n in set(mask_names) - set(image_names))
    if no_mask or no_image:
        where = str(root)
        if folders is not None and len(no_mask) == len(image_names):
            where = f"no image of {folders[0]} pairs with a mask of {folders[1]}"
        hint = _pattern_hint(images, masks, mask_pattern)
        raise _unpaired(no_mask, no_image, where, mask_pattern, hint)
    renamed = [n for n in image_names if prefix + image_names[n] + suffix != mask_names[n]]
    if renamed and (root, *sorted(renamed)) not in _REPORTED:  # once, not again when listed
        _REPORTED.add((root, *sorted(renamed)))
        first = min(renamed, key=lambda n: nfc(image_names[n]))
        log.info(
            "%s: %d image/mask name(s) pair only after Unicode normalisation (NFC), e.g. image "
            "%s and mask %s",
            root,
            len(renamed),
            ascii(image_names[first]),
            ascii(mask_names[first]),
        )
    order = sorted(image_names, key=lambda n: nfc(image_names[n]))
    return [(nfc(image_names[n]), images[image_names[n]], masks[mask_names[n]]) for n in order]


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
