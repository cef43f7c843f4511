"""Find a dataset's files and pair images with masks by name, with clear errors for bad layouts.

Names pair after Unicode normalisation (NFC): a file named on Linux (NFC) and its mask copied from
a Mac (NFD, decomposed accents) look alike and are alike. Messages show names as they are on
disk, escaped (``ascii``) where two of them, or the characters of one, would look alike.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from segact.errors import DatasetError

log = logging.getLogger(__name__)

MAX_LISTED = 10
# Characters that do not show, or show as a plain space: a name with one is shown escaped.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Zl", "Zp", "Zs"})
T = TypeVar("T", bound="Path | Sequence[Path]")  # an image: one file, or one per channel
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
    folder: Path,
    suffixes: Iterable[str],
    stem: Callable[[Path], str],
    what: str,
    twins_fix: str = "keep only one of them",
) -> dict[str, Path]:
    """Files of ``folder`` whose name ends with one of ``suffixes`` (any case), keyed by stem;
    hidden files are skipped. A missing or empty folder, a broken link, or two files of one stem
    is an error (``twins_fix`` says what to do about those)."""
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
            raise _same_name(files[normal[nfc(name)]], path, normal[nfc(name)], name, twins_fix)
        files[name], normal[nfc(name)] = path, name
    if not files:
        raise DatasetError(
            f"{folder} has no files ending in {', '.join(suffixes)}: put {what} there"
        )
    return files


# --- a root without its images or masks folder ---------------------------------------------------

IMAGE_FOLDER_WORDS = frozenset({"original", "images", "image", "img", "imgs", "input"})
MASK_FOLDER_WORDS = frozenset(
    {"groundtruth", "gt", "masks", "mask", "labels", "label", "manual", "1stmanual"}
    | {"segmentation", "segmentations", "annotations"}
)
"""Words (lower case, without spaces, ``_`` or ``-``) of the folder names public datasets keep
their images and masks in: ``Original``, ``Ground Truth``, ``1st_manual``, ``..._GroundTruth``."""
MAX_SUBFOLDERS = 200  # folders looked at, two levels deep, for a layout hint


@dataclass(frozen=True)
class Wanted:
    """A folder a dataset root needs: its config key, its value, what it holds."""

    key: str  # e.g. dataset.images_dir
    folder: str
    what: str  # e.g. "the images"
    masks: bool = False  # it holds masks (else images)


def folder_role(name: str) -> bool | None:
    """Whether a folder of this name usually holds masks (True) or images (False), from its
    words (lower case, without spaces, ``_``, ``-``: ``Ground Truth``, ``1st_manual``,
    ``ISIC2018_Task1_Training_GroundTruth``); None if no word tells. A mask word wins."""
    lower = name.lower()
    words = {p for p in re.split(r"[\s_\-.]+", lower) if p} | {re.sub(r"[\s_\-.]+", "", lower)}
    if words & MASK_FOLDER_WORDS:
        return True
    return False if words & IMAGE_FOLDER_WORDS else None


def _subfolders(root: Path) -> list[str]:
    """The folders under ``root``, one and two levels deep (``training/images``), as relative
    POSIX paths, hidden ones skipped; at most ``MAX_SUBFOLDERS``."""
    found: list[str] = []
    for top in _entries(root):
        if top.name.startswith(".") or not top.is_dir():
            continue
        found.append(top.name)
        try:
            inner = sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            inner = []
        found.extend(f"{top.name}/{p.name}" for p in inner)
        if len(found) >= MAX_SUBFOLDERS:
            break
    return found[:MAX_SUBFOLDERS]


def _candidates(folders: list[str], wanted: Wanted) -> list[str]:
    """The folders whose last name says they hold what ``wanted`` holds, upper level first."""
    found = [f for f in folders if folder_role(f.rsplit("/", 1)[-1]) is wanted.masks]
    return sorted(found, key=lambda f: (f.count("/"), f.lower()))


def _named(names: list[str], shown: Callable[[str], str] = str) -> str:
    """The first ``MAX_LISTED`` names and how many more."""
    more = len(names) - MAX_LISTED
    return ", ".join(map(shown, names[:MAX_LISTED])) + (f", ... ({more} more)" if more > 0 else "")


def require_folders(root: Path, needed: Wanted, *others: Wanted) -> None:
    """A DatasetError when the ``needed`` folder is missing under ``root`` (and with it those of
    ``others`` missing too), naming the folders found there and the overrides that would read
    them (guessed from common names: ``Original`` holds images, ``Ground Truth`` masks), e.g.
    ``dataset.images_dir=Original "dataset.masks_dir=Ground Truth"``; "one of" where several
    names fit."""
    if not _is_dir(root / needed.folder):
        missing = [needed, *(w for w in others if not _is_dir(root / w.folder))]
        problem = f"{root / missing[0].folder} is missing: a dataset root needs {missing[0].what}"
        raise DatasetError(f"{problem}; {_layout_hint(root, missing)}")


def _layout_hint(root: Path, missing: list[Wanted]) -> str:
    """The folders under ``root`` and the overrides that would read them."""
    folders = _subfolders(root)
    first = missing[0]
    if not folders:
        return (
            f"{root} has no folders: put {first.what} in {root / first.folder}, or set "
            f"{first.key} to the folder (relative to dataset.root) that holds them"
        )
    found = f"{root} has the folders {_named([f for f in folders if '/' not in f])}"
    guesses = {w: _candidates(folders, w) for w in missing}
    if not all(guesses.values()):
        keys = " and ".join(w.key for w in missing)
        unnamed = [f for f in folders if folder_role(f.rsplit("/", 1)[-1]) is None]
        example = f" (e.g. {command_line_override(first.key, unnamed[0])})" if unnamed else ""
        return f"{found}: set {keys} to the folders that hold them{example}"
    overrides = " ".join(command_line_override(w.key, g[0]) for w, g in guesses.items())
    if all(len(g) == 1 for g in guesses.values()):
        return f"{found}: to read them, add {overrides}"
    where = " and ".join(f"{_noun(w)} in one of {_named(g)}" for w, g in guesses.items())
    return f"{found}: probably {where}: add e.g. {overrides}"


def _noun(wanted: Wanted) -> str:
    return "the masks" if wanted.masks else "the images"


HYDRA_PLAIN = re.compile(r"[\w./+@%:-]+( +[\w./+@%:-]+)*")
"""Values Hydra's override grammar reads as they are (a space inside is kept)."""
SHELL_PLAIN = re.compile(r"[\w./+@%:=,-]+")


def hydra_override(key: str, value: str) -> str:
    """``key=value`` that Hydra's override grammar reads with ``value`` as it is: the value
    quoted (``'{stem}_mask'``) where the grammar needs it; a backslash stays as it is, unless
    before a quote or at the end."""
    if not HYDRA_PLAIN.fullmatch(value):
        escaped = re.sub(r"(\\+)(?='|$)", lambda m: m[1] * 2, value).replace("'", "\\'")
        value = f"'{escaped}'"
    return f"{key}={value}"


def shell_word(text: str) -> str:
    """``text`` as one word for a POSIX shell: as it is, or in double quotes."""
    if SHELL_PLAIN.fullmatch(text):
        return text
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def command_line_override(key: str, value: str) -> str:
    """``key=value`` as typed in a shell so that Hydra reads ``value`` as it is:
    ``dataset.images_dir=Original``, ``"dataset.masks_dir=Ground Truth"``,
    ``"dataset.mask_pattern='{stem}_mask'"``."""
    return shell_word(hydra_override(key, value))


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


def _same_name(first: Path, second: Path, first_name: str, name: str, fix: str) -> DatasetError:
    same = f"the same name '{name}'"
    if first_name != name:  # spelled differently on disk, alike after normalisation
        same = f"the same name after Unicode normalisation ({first_name!a}, {name!a})"
    return DatasetError(f"{first} and {second} have {same}: {fix}")


def _listing(names: list[str], alike: Counter[str]) -> str:
    return f"{len(names)}: {_named(names, lambda name: _shown(name, alike))}"


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


def _affixes(masks: set[str], images: set[str], proper: bool = False) -> list[tuple[str, str]]:
    """The commonest (prefix, suffix) around an image's name inside a mask's ('12_mask': ('',
    '_mask')), from the first ``SAMPLED_MASKS`` masks; ``proper``: never the whole mask name."""
    counts: Counter[tuple[str, str]] = Counter()
    for mask in sorted(masks)[:SAMPLED_MASKS]:
        counts.update(
            {
                (mask[:i], mask[j:])
                for i in range(len(mask))
                for j in range(i + 1, len(mask) + 1)
                if mask[i:j] in images and not (proper and j - i == len(mask))
            }
        )
    plain = [parts for parts in counts if not any(c in "".join(parts) for c in "{}/\\")]
    return sorted(plain, key=lambda parts: (-counts[parts], parts))[:5]


def suggest_pattern(images: Iterable[str], masks: Iterable[str]) -> str | None:
    """The mask_pattern that pairs most images (more than half of them) with masks, guessed
    from where the image names occur inside the mask names ('{stem}_mask'); None if none."""
    image_set, mask_set = {nfc(n) for n in images}, {nfc(n) for n in masks}
    candidates = _affixes(mask_set, image_set)
    scored = [(_pairing(image_set, mask_set, *parts), parts) for parts in candidates]
    paired, (prefix, suffix) = max(scored, default=(0, ("", "")))
    return f"{prefix}{STEM}{suffix}" if 2 * paired > len(image_set) else None


# --- images and masks in one folder ------------------------------------------------------------


def _mask_named(name: str, prefix: str, suffix: str) -> bool:
    """Whether ``name`` has the form of a mask's name: ``prefix`` + a name + ``suffix``."""
    return (
        len(name) > len(prefix) + len(suffix) and name.startswith(prefix) and name.endswith(suffix)
    )


def _split(names: Iterable[str], prefix: str, suffix: str) -> tuple[list[str], list[str]]:
    """The images of one folder (sorted) and those of them paired with a mask of the folder: a
    file named like a mask is a mask, never an image."""
    images, masks = [], set()
    for name in sorted(names, key=nfc):
        if _mask_named(nfc(name), prefix, suffix):
            masks.add(nfc(name))
        else:
            images.append(name)
    return images, [name for name in images if nfc(prefix + name + suffix) in masks]


def suggest_mixed(names: Iterable[str]) -> str | None:
    """The mask_pattern that pairs more than half the images of a folder of images and masks,
    guessed from names inside other names ('12' in '12_mask'); None if none does."""
    names = list(names)
    every = {nfc(name) for name in names}
    best, pattern = 0, None
    for prefix, suffix in _affixes(every, every, proper=True):
        images, paired = _split(names, prefix, suffix)
        if 2 * len(paired) > len(images) and len(paired) > best:
            best, pattern = len(paired), f"{prefix}{STEM}{suffix}"
    return pattern


def _file_names(files: dict[str, Path], stems: Iterable[str]) -> str:
    return ", ".join(files[stem].name for stem in stems)


def split_mixed(
    files: dict[str, Path], mask_pattern: str, folder: Path
) -> tuple[dict[str, Path], dict[str, Path]]:
    """The images and the masks of a folder that holds both (``dataset.images_dir`` and
    ``dataset.masks_dir`` one folder): a file named like a mask is a mask, never an image. A
    pattern that pairs no image (``'{stem}'`` would pair each file with itself) is one error that
    shows example files and the pattern that would pair them."""
    prefix, suffix = pattern_parts(mask_pattern)
    images, paired = _split(files, prefix, suffix)
    if paired:
        image_files = {name: files[name] for name in images}
        return image_files, {n: path for n, path in files.items() if n not in image_files}
    problem = "pairs each file with itself" if not prefix + suffix else "pairs no image"
    where = (
        f"{folder} holds images and masks in one folder (dataset.images_dir = "
        f"dataset.masks_dir) and dataset.mask_pattern={mask_pattern!r} {problem}"
    )
    suggested = suggest_mixed(files)
    if suggested is None:
        shown = _file_names(files, sorted(files, key=nfc)[:3])
        raise DatasetError(
            f"{where} (files {shown}): set dataset.mask_pattern to a mask's name with {STEM} for "
            f"its image's (e.g. '{STEM}_mask'), or keep the masks in a folder of their own "
            "(dataset.masks_dir)"
        )
    prefix, suffix = pattern_parts(suggested)
    first, *others = _split(files, prefix, suffix)[1]
    mask = next(name for name in files if nfc(name) == nfc(prefix + first + suffix))
    shown = _file_names(files, [first, mask, *others[:1]])
    raise DatasetError(
        f"{where}: files such as {shown} pair by \"dataset.mask_pattern='{suggested}'\": set it"
    )


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
    pairs = [(nfc(image_names[n]), images[image_names[n]], masks[mask_names[n]]) for n in order]
    for _, image, mask in pairs:
        _refuse_own_mask(image, mask)
    return pairs


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths are one folder or file (``images/..`` and ``.``, a link)."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one is missing: the listing names it
        return False


def _refuse_own_mask(image: Path | Sequence[Path], mask: Path) -> None:
    """An image is never its own mask (a hard or symbolic link, a folder named twice)."""
    for path in [image] if isinstance(image, Path) else image:
        if same_file(path, mask):
            raise DatasetError(
                f"{path} would be its own mask ({mask} is the same file): keep the masks in a "
                f"folder of their own, or name them otherwise (e.g. '{STEM}_mask')"
            )


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
