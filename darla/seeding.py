"""Seeds: one user seed derives every other seed (frames, models, policies, evaluations)."""

from __future__ import annotations

import hashlib
import random
import sys

import numpy as np


def derive_seed(seed: int, *keys: object) -> int:
    """A stable 31-bit seed from a base seed and any keys (stage names, domain names, indices).

    Uses a hash, not Python's `hash()`, so it is the same across processes and runs.
    """
    text = "/".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def make_rng(seed: int, *keys: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *keys))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if imported) torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
