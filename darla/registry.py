"""One generic name -> object registry, so every choice a user makes is checked in one place."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from darla.errors import ConfigError, UnknownNameError

T = TypeVar("T")


def unknown_name_message(kind: str, name: object, valid: list[str]) -> str:
    """Build the message for an unknown name: the bad value, a close match, all valid choices."""
    msg = f"unknown {kind} {name!r}"
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    if close:
        msg += f"; did you mean {close[0]!r}?"
    return msg + f" Valid choices: {', '.join(valid) if valid else '(none registered)'}"


class Registry(Generic[T]):
    """Maps names to objects (classes, factories, specs); lookups fail with a helpful message."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register `obj` under `name`; without `obj`, return a decorator."""
        if obj is not None:
            self._add(name, obj)
            return obj

        def decorator(item: T) -> T:
            self._add(name, item)
            return item

        return decorator

    def _add(self, name: str, obj: T) -> None:
        if name in self._items and self._items[name] is not obj:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def check_choice(kind: str, value: object, valid: list[str] | tuple[str, ...]) -> None:
    """Raise UnknownNameError unless `value` is one of `valid`."""
    if value not in valid:
        raise UnknownNameError(unknown_name_message(kind, value, list(valid)))
