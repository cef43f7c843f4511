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


class Registry(dict[str, Any]):
    """An open choice: name -> what implements it, filled by ``register`` (one call per entry,
    in the module that implements it, or in a plugin module). A wrong name is a KeyError that
    lists the registered ones; registering a name twice is an error unless ``replace``."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__()
        self.what, self.hint = what, hint

    def register(self, name: str, item: Any, replace: bool = False) -> Any:
        if name in self and not replace and self[name] is not item:
            raise ValueError(f"{self.what} {name!r} is registered already")
        self[name] = item
        return item

    def names(self) -> list[str]:
        return sorted(self)

    def get_named(self, name: str) -> Any:
        if name not in self:
            raise KeyError(
                f"unknown {self.what} {name!r}; choose one of {', '.join(self.names())}{self.hint}"
            )
        return self[name]
