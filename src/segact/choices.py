"""The base of every closed config choice: each is an Enum defined next to what it names (heads
in ``nn/heads.py``, protocols in ``training/protocol.py``, ...) and imported by the schemas."""

from __future__ import annotations

from enum import Enum
from typing import Any


class Choice(str, Enum):
    """A closed choice; prints as its value (folder names, CSV cells)."""

    def __str__(self) -> str:
        return str(self.value)


def plain(value: Any) -> Any:
    """An Enum member's value; anything else unchanged."""
    return value.value if isinstance(value, Enum) else value
