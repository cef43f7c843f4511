"""The errors segact reports as one line and a non-zero exit, never as a traceback.

This module imports nothing of segact, so any module (data loaders included) can raise these
without pulling in the model, loss or metric code.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot run; the message names the config key and says what to do."""


class DatasetError(ConfigError):
    """Input data that cannot be used; the message names the file and the fix."""


class ReportError(Exception):
    """Input the report cannot use; the message says what is wrong."""


class ModelError(ConfigError):
    """A saved model that cannot be applied (no finished run, no saved models, a fold missing or
    damaged), or input it cannot be applied to; the message names the file and the fix."""
