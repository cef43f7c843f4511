"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from tests.helpers import compose_config


@pytest.fixture
def make_cfg() -> Iterator[Callable[..., DictConfig]]:
    yield compose_config
    GlobalHydra.instance().clear()
