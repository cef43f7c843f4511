"""The error every loader raises for bad input: one line naming the file and the fix."""

from __future__ import annotations

from segact.config import ConfigError


class DatasetError(ConfigError):
    """Input data that cannot be used; the CLI prints it as ``segact: error: ...`` (exit 2)."""
