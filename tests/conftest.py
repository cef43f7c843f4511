"""Shared fixtures."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest
from omegaconf import DictConfig

from tests.helpers import compose_config

gc.freeze()  # see pytest_collection_finish: here for what conftest imported (torch, Hydra, ...)


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    return compose_config


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what the imports built (torch, pandas, matplotlib...: millions of objects that live
    to the end) out of the garbage collector's way: otherwise every full collection during the
    tests, and those at exit, walk them all again (~10 s of a ~50 s fast run). Objects the tests
    create are collected as before."""
    gc.freeze()
