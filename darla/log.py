"""Logging and progress bars: one place decides where messages go."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

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


def progress(
    iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it"
) -> tqdm:
    """A tqdm bar on stderr; hidden automatically when stderr is not a terminal."""
    return tqdm(
        iterable, total=total, desc=desc, unit=unit, disable=None, dynamic_ncols=True, file=sys.stderr
    )


def iterate(iterable: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
    yield from progress(iterable, total=total, desc=desc)
