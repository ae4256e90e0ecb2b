"""Shared test setup: tiny budgets, an isolated frame cache, headless rendering, few threads."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PYGLET_HEADLESS", "true")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Frame caches go to a temporary folder so tests never touch (or reuse) the user's cache."""
    os.environ["DARLA_CACHE"] = str(tmp_path_factory.mktemp("darla_cache"))
