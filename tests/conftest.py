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


def tiny_see(out: os.PathLike[str] | str, **overrides: object) -> os.PathLike[str]:
    """A real, finished see stage at test scale: a tiny beta_vae on 64 SeekAvoid source frames, 32x32."""
    from darla.config import from_dict, merge
    from darla.pipelines.stages.see import SeeConfig, run_see

    base = {
        "env": "SeekAvoid",
        "model": "beta_vae",
        "out": str(out),
        "size": 32,
        "frames": 64,
        "workers": 1,
        "threads": 1,
        "params": {"latent_dim": 4, "channels": [8, 8], "hidden": 16},
        "train": {"steps": 2, "batch_size": 16, "checkpoint_every": 1, "image_every": 0},
    }
    return run_see(from_dict(SeeConfig, merge(base, dict(overrides))))
