"""The dataset formats, each registered once (``register``): the config schema
``schema/dataset/<name>``, the data fingerprint and ``segact-predict`` look a format up here,
by its loader (a dataset config's ``_target_``) or by a model card's ``input.kind``. A plugin
module registers its own format the same way (docs/extending.md)."""

from __future__ import annotations

import importlib

from segact.choices import Registry
from segact.data import folder, nifti, synthetic
from segact.data.format import DatasetFormat, no_files
from segact.errors import DatasetError

FORMATS = Registry("dataset format")
"""name -> DatasetFormat, in the order registered."""


def register(fmt: DatasetFormat) -> DatasetFormat:
    """Register ``fmt``; an incomplete declaration (no lister, no reader, ...) or a second
    reader for a kind of input is an error here, not a silent skip later."""
    problems = fmt.problems()
    if problems:
        raise ValueError(f"dataset format {fmt.name!r} cannot be registered: {'; '.join(problems)}")
    same_kind = [f for f in FORMATS.values() if f.kind == fmt.kind and f.name != fmt.name]
    if any(f.reader is not fmt.reader for f in same_kind):
        raise ValueError(
            f"dataset format {fmt.name!r}: input kind {fmt.kind!r} has another reader already "
            f"({same_kind[0].name}); give the format a kind of its own"
        )
    return FORMATS.register(fmt.name, fmt)


def by_loader(target: str | None) -> DatasetFormat | None:
    """The format whose loader is ``target`` (a dataset config's ``_target_``); None for a
    loader no format declares (a user's own ``_target_``). A plugin's loader module is imported
    first, so that the format it registers is found."""
    found = next((f for f in FORMATS.values() if f.loader == str(target)), None)
    module = str(target).rpartition(".")[0]
    if found is not None or not module:
        return found
    try:
        importlib.import_module(module)
    except ImportError:  # the config check names the loader that cannot be imported
        return None
    return next((f for f in FORMATS.values() if f.loader == str(target)), None)


def by_kind(kind: str) -> DatasetFormat:
    """The (first) format of a model card's ``input.kind``: its reader reads the inputs."""
    found = next((f for f in FORMATS.values() if f.kind == kind), None)
    if found is None:
        raise DatasetError(
            f"the model takes inputs of kind {kind!r}, which no registered dataset format reads "
            f"(kinds: {', '.join(sorted({f.kind for f in FORMATS.values()}))}): import the "
            "plugin that registers it (docs/extending.md)"
        )
    return found


def kinds() -> list[DatasetFormat]:
    """One format per kind of input (the first registered of each)."""
    return [by_kind(kind) for kind in dict.fromkeys(f.kind for f in FORMATS.values())]


IMAGES = "images"
VOLUMES = "volumes"
IMAGE_CARD = {"gray_to_rgb": False}

register(
    DatasetFormat(
        synthetic.SyntheticDatasetConfig, no_files, folder.read_input, IMAGES,
        folder.IMAGE_SUFFIXES, IMAGE_CARD, what="2D images",
    )
)  # fmt: skip
register(
    DatasetFormat(
        folder.FolderDatasetConfig, folder.folder_pairs, folder.read_input, IMAGES,
        folder.IMAGE_SUFFIXES, IMAGE_CARD, what="2D images",
    )
)  # fmt: skip
register(
    DatasetFormat(
        nifti.NiftiDatasetConfig, nifti.nifti_cases, nifti.read_input, VOLUMES, nifti.SUFFIXES,
        dict.fromkeys(("axis", "modalities", "volume_norm")), volumes=True,
        what="NIfTI volumes",
    )
)  # fmt: skip
