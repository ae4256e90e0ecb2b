"""One generic name -> object registry, so every choice a user makes is checked in one place.

A registry can take plug-ins: with `group` set (e.g. "darla.models"), the first lookup also loads
every entry point of that group from the installed packages and registers it under the entry
point's name, through the same `register` (and its checks) as darla's own objects. So a user adds a
vision model, an env family, an algorithm or a metric from their own package without editing darla:

    [project.entry-points."darla.models"]
    tiny_ae = "my_package.models:TinyAE"
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from darla.errors import ConfigError, UnknownNameError

T = TypeVar("T")

logger = logging.getLogger(__name__)

PLUGIN_GROUPS = ("darla.envs", "darla.models", "darla.algos", "darla.metrics", "darla.shifts")
"""Entry-point groups darla reads (see `Registry(group=...)`)."""


def unknown_name_message(kind: str, name: object, valid: list[str]) -> str:
    """Build the message for an unknown name: the bad value, a close match, all valid choices."""
    msg = f"unknown {kind} {name!r}"
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    if close:
        msg += f"; did you mean {close[0]!r}?"
    return msg + f" Valid choices: {', '.join(valid) if valid else '(none registered)'}"


class Registry(Generic[T]):
    """Maps names to objects (classes, factories, specs); lookups fail with a helpful message.

    `check(name, obj)` raises ConfigError for an object that does not meet the interface the
    registry serves (checked at registration, not when a user first trips over it);
    `on_register(name, obj)` runs after a successful registration (e.g. gymnasium's registry);
    `group` names the entry-point group whose plug-ins join on first lookup."""

    def __init__(
        self,
        kind: str,
        *,
        group: str | None = None,
        check: Callable[[str, T], None] | None = None,
        on_register: Callable[[str, T], None] | None = None,
    ) -> None:
        if group is not None and group not in PLUGIN_GROUPS:
            raise ConfigError(f"unknown plug-in group {group!r}; darla reads {', '.join(PLUGIN_GROUPS)}")
        self.kind = kind
        self.group = group
        self._check = check
        self._on_register = on_register
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._plugins_loaded = group is None

    def register(self, name: str, obj: T | None = None, *, origin: str = "") -> Callable[[T], T] | T:
        """Register `obj` under `name`; without `obj`, return a decorator."""
        if obj is not None:
            self._add(name, obj, origin)
            return obj

        def decorator(item: T) -> T:
            self._add(name, item, origin)
            return item

        return decorator

    def _add(self, name: str, obj: T, origin: str) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        if name in self._items:
            if self._items[name] is obj:
                return
            where = f" (by {self._origin[name]})" if self._origin.get(name) else ""
            raise ConfigError(
                f"{self.kind} {name!r} is already registered{where}"
                + (f"; {origin} registers it again" if origin else "")
                + ": choose another name"
            )
        if self._check is not None:
            try:
                self._check(name, obj)
            except ConfigError as exc:
                if not origin:
                    raise
                raise ConfigError(f"{exc} ({origin})") from None  # a plug-in names itself
        self._items[name] = obj
        self._origin[name] = origin or getattr(obj, "__module__", "")
        if self._on_register is not None:
            self._on_register(name, obj)

    def load_plugins(self) -> None:
        """Register every entry point of this registry's group (once per process)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        assert self.group is not None
        for ep in entry_points(group=self.group):
            dist = getattr(getattr(ep, "dist", None), "name", "?")
            origin = f"plug-in {ep.name} = {ep.value} (package {dist})"
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plug-in names itself instead of a bare traceback
                raise ConfigError(f"cannot load {origin}: {type(exc).__name__}: {exc}") from exc
            self._add(ep.name, obj, origin)
            logger.debug("registered %s %r from %s", self.kind, ep.name, origin)

    def get(self, name: str) -> T:
        self.load_plugins()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self.load_plugins()
        return sorted(self._items.items())

    def origin(self, name: str) -> str:
        """Where `name` came from: darla's module, or the plug-in entry point that registered it."""
        self.get(name)
        return self._origin[name]

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._items)


def check_choice(kind: str, value: object, valid: list[str] | tuple[str, ...]) -> None:
    """Raise UnknownNameError unless `value` is one of `valid`."""
    if value not in valid:
        raise UnknownNameError(unknown_name_message(kind, value, list(valid)))
