"""The two calls segact needs from Hydra's private API (``hydra._internal``), where Hydra has no
public one; everything else segact asks of Hydra goes through its public API.
``tests/test_hydra_private.py`` checks that each still exists with the signature and behaviour
used here, so a Hydra release that changes one fails there, not in a user's command.

- ``args_parser``: Hydra's own command-line parser, so that ``segact-train`` reads its argv as
  Hydra will (which flags there are, which words are overrides) before Hydra runs.
- ``apply_overrides``: how Hydra applies value overrides (``key=v``, ``+key=v``, ``++key=v``,
  ``~key``) to a composed config, with Hydra's errors: the typo check applies them one at a
  time to find the one that names no key, and the tests apply them to a cached composition.

Imports nothing from segact (part of the base, ``tests/test_layout.py``).
"""

from __future__ import annotations

import argparse

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig


def args_parser() -> argparse.ArgumentParser:
    """Hydra's parser of a Hydra app's command line (``--help``, ``--cfg``, ``-m``, ...,
    ``overrides``), as ``@hydra.main`` builds it."""
    return get_args_parser()


def apply_overrides(overrides: list[Override], cfg: DictConfig) -> None:
    """Apply value overrides to ``cfg`` in place, in order, as Hydra's compose does after the
    config groups; a key that does not exist raises ``ConfigCompositionException``."""
    ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)
