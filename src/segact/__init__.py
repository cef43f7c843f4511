"""segact: which output activation, head and loss should a binary segmentation network use?

The public API is importable from here, whichever module implements it, and is imported on
first use, so that ``import segact`` stays light: ``get_activation``, ``threshold_sweep``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC: dict[str, str] = {
    "get_activation": "segact.nn.activations:get",
    "threshold_sweep": "segact.evaluation.sweep:threshold_sweep",
}
"""Name -> ``module:attribute``: a move of a module changes only this table."""
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'segact' has no attribute {name!r}")
    module, attribute = _PUBLIC[name].split(":")
    return getattr(importlib.import_module(module), attribute)
