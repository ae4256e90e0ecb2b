"""Logging and progress bars: one place decides where messages go."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


class _Progress(tqdm):
    """A tqdm bar that, when hidden (logs, CI, nohup), logs a line every 10% instead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._label = str(kwargs.get("desc") or "progress")
        self._unit = str(kwargs.get("unit") or "it")
        # a resumed job starts at `initial`: its rate counts only the work done in this process
        self._initial = self._count = int(kwargs.get("initial") or 0)
        self._tenths = 1 + (self._count * 10 // int(self.total) if self.total else 0)
        self._start = time.perf_counter()
        self._postfix_text = ""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        if self.disable:
            items = dict(ordered_dict or {}, **kwargs)
            self._postfix_text = ", ".join(f"{k}={v}" for k, v in items.items())
            return
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)

    def update(self, n: float | None = 1) -> bool | None:
        if not self.disable:
            return super().update(n)
        self._count += int(n or 0)
        total = self.total or 0
        if total and self._count * 10 >= self._tenths * total:
            rate = (self._count - self._initial) / max(time.perf_counter() - self._start, 1e-9)
            logging.getLogger("darla.progress").info(
                "%s: %d/%d (%.0f%%), %.1f %s/s%s",
                self._label,
                self._count,
                total,
                100 * self._count / total,
                rate,
                self._unit,
                f", {self._postfix_text}" if self._postfix_text else "",
            )
            while self._tenths * total <= self._count * 10:
                self._tenths += 1
        return None


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
) -> tqdm:
    """A tqdm bar on stderr; when stderr is not a terminal, log lines every 10% instead.

    `initial`: work already done (a resumed run), shown in the count but not in the rate."""
    return _Progress(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=None,
        dynamic_ncols=True,
        file=sys.stderr,
    )
