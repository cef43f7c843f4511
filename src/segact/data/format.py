"""What a dataset format declares, together: its config schema (whose ``_target_`` is its
loader), the files its loader reads (for the data fingerprint), how ``segact-predict`` reads
one input file, and what of its settings a saved model's card keeps. Registered once per format
in ``segact.data.formats`` (docs/extending.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import MISSING

from segact.data.normalize import Normalize
from segact.data.source import MAX_PIXELS


@dataclass
class DatasetConfig:
    _target_: str = MISSING  # a loader returning segact.data.base.SegmentationData
    name: str = MISSING  # the label in the result files


@dataclass
class FileDatasetConfig(DatasetConfig):
    root: str | None = None  # required unless a preset sets default_root
    default_root: str | None = None  # presets: ${paths.datasets}/<name>
    image_size: Any = 256  # int (square) or [height, width]; images bilinear, masks nearest
    normalize: Normalize = Normalize.dataset
    cache: bool = True
    cache_dir: str | None = None  # null: $SEGACT_CACHE, else ~/.cache/segact
    max_pixels: int = MAX_PIXELS  # larger images (NIfTI: slices) are refused from their header


Lister = Callable[..., tuple[Path, list[tuple[str, Any, Path]]] | None]
"""Keyword arguments named like the dataset's settings (``root``, ``default_root``, its folders)
-> (root, [(case, key, file), ...]) of every file the loader reads; None: it reads no file."""


def no_files(**_: Any) -> None:
    """The lister of a format that reads no file (its settings are its identity already)."""
    return None


@dataclass
class Sample:
    """One input file as ``segact-predict`` feeds it to a model."""

    pixels: np.ndarray  # (n, C, h, w) at the model's input size, as the loader stores them
    restore: Callable[[np.ndarray], np.ndarray]  # (n, h, w) probabilities -> the input's shape
    like: Any = None  # an output written like the input (a NIfTI header); None: PNG outputs


Reader = Callable[[Path, Mapping[str, Any], tuple[int, int]], Sample]
"""(input file, the card's ``input`` settings, the model's (h, w)) -> a Sample."""


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset format, declared once: ``schema`` (a DatasetConfig subclass; its ``_target_``
    default is the loader, its ``name`` default the format's name), ``lister`` (what the data
    fingerprint hashes; ``no_files`` for none), ``reader`` and ``suffixes`` (segact-predict's
    inputs), ``kind`` (a model card's ``input.kind``: formats of one kind share their reader)
    and ``card_keys`` (the settings a card keeps, with the default where one is missing)."""

    schema: type[DatasetConfig]
    lister: Lister
    reader: Reader
    kind: str
    suffixes: tuple[str, ...]
    card_keys: Mapping[str, Any] = field(default_factory=dict)
    volumes: bool = False  # a file holds many slices: predicted one file at a time, NIfTI out
    what: str = "inputs"  # how segact-predict's messages name them ("2D images")

    @property
    def name(self) -> str:
        return str(self.schema.name)

    @property
    def loader(self) -> str:
        """The loader's ``_target_`` (the schema's default)."""
        return str(self.schema._target_)

    def problems(self) -> list[str]:
        """Why this declaration is incomplete (empty: it is complete)."""
        found = []
        if not (dataclasses.is_dataclass(self.schema) and issubclass(self.schema, DatasetConfig)):
            found.append("its schema is no dataclass subclass of DatasetConfig")
        elif MISSING in (self.schema._target_, self.schema.name):
            found.append("its schema sets no _target_ (the loader) or name")
        for what in ("lister", "reader"):
            if not callable(getattr(self, what)):
                found.append(f"it has no {what} (a format that reads no file: lister=no_files)")
        if not self.suffixes:
            found.append("it names no input file suffixes")
        return found

    def card_input(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """A model card's ``input``: the kind, and the settings the reader needs again."""
        return {"kind": self.kind, **{k: settings.get(k, d) for k, d in self.card_keys.items()}}
