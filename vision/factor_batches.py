"""Factor-controlled batches from a ground truth: rows in which only chosen factors vary.

DC-IGN's one-factor batches and IIN's shared-factor pairs both draw from here; appearance
factors stay inside the source domains' combinations, so a target domain is never shown.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from darla.errors import ConfigError

if TYPE_CHECKING:
    from darla.envs.ground_truth import GroundTruth


class OneFactorSampler:
    """Factor rows in which only some columns vary; appearance columns stay inside allowed combos."""

    def __init__(
        self,
        sizes: Sequence[int],
        allowed: np.ndarray | None = None,
        allowed_cols: Sequence[int] = (),
    ) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.allowed = None if allowed is None else np.unique(np.asarray(allowed, dtype=np.int64), axis=0)
        self.allowed_cols = np.asarray(allowed_cols, dtype=np.int64)

    def can_vary(self, columns: Sequence[int]) -> bool:
        """True if some batch can show >= 2 values of these columns."""
        free = [c for c in columns if c not in set(self.allowed_cols.tolist())]
        if any(self.sizes[c] > 1 for c in free):
            return True
        if self.allowed is None:
            return False
        inner = [i for i, c in enumerate(self.allowed_cols) if c in columns]
        fixed = [i for i in range(len(self.allowed_cols)) if i not in inner]
        groups: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
        for row in self.allowed:
            groups.setdefault(tuple(row[fixed]), set()).add(tuple(row[inner]))
        return any(len(v) > 1 for v in groups.values())

    def tied_groups(self) -> list[tuple[int, ...]]:
        """Minimal sets of allowed columns that change together between two allowed rows.

        E.g. source domains that differ either in the room (wall and floor together) or in the
        object colours give the groups (wall, floor) and (good_color, bad_color).
        """
        if self.allowed is None:
            return []
        diffs = set()
        for i in range(len(self.allowed)):
            for j in range(i + 1, len(self.allowed)):
                d = tuple(
                    int(self.allowed_cols[k]) for k in np.nonzero(self.allowed[i] != self.allowed[j])[0]
                )
                if d:
                    diffs.add(d)
        return sorted(d for d in diffs if not any(set(o) < set(d) for o in diffs))

    def sample(self, n: int, columns: Sequence[int], rng: np.random.Generator) -> np.ndarray:
        """(n, K) rows equal everywhere except in `columns`."""
        base = np.array([rng.integers(0, k) for k in self.sizes], dtype=np.int64)
        rows = np.repeat(base[None], n, axis=0)
        acols = set(self.allowed_cols.tolist())
        if self.allowed is not None:
            pick = self.allowed[rng.integers(len(self.allowed))]
            inner = [i for i, c in enumerate(self.allowed_cols) if c in columns]
            fixed = [i for i in range(len(self.allowed_cols)) if i not in inner]
            cands = self.allowed[(self.allowed[:, fixed] == pick[fixed]).all(1)]
            chosen = cands[rng.integers(len(cands), size=n)]
            rows[:, self.allowed_cols] = chosen
        for c in columns:
            if c not in acols:
                rows[:, c] = rng.integers(0, self.sizes[c], size=n)
        return rows


def ground_truth_for(env: str, size: int) -> Any:
    """The ground truth named `env`: 'sprites' (64x64x1) or an env family's, at `size` pixels."""
    if env.lower() == "sprites":
        from darla.envs.sprites import Sprites

        return Sprites()
    envs = importlib.import_module("darla.envs")  # heavy (MiniWorld): imported late
    return envs.get_family(env).ground_truth(size=size)


def allowed_appearance(gt: Any, env: str, domains: Sequence[str]) -> tuple[np.ndarray | None, list[int]]:
    """Appearance factor rows of `domains` (default: the source split) for a room ground truth."""
    appearance = getattr(gt, "appearance", None)
    family = getattr(gt, "family", None)
    if not appearance or family is None:
        return None, []
    names = tuple(domains) or tuple(family.splits["source"])
    rows = []
    for name in names:
        spec = family.domain(name)
        row = []
        for f in appearance:
            value = f.get(spec)
            if value not in f.values:
                raise ConfigError(
                    f"dc_ign: domain {name!r} has {f.name}={value!r}, unknown to the ground truth"
                )
            row.append(f.values.index(value))
        rows.append(row)
    return np.asarray(rows, dtype=np.int64), list(range(len(appearance)))


class FactorSource:
    """Mixin for models that draw their own batches from a ground truth (DC-IGN, IIN).

    Holds what the see stage tells them (`on_source`: env family and source domains) and the
    attached ground truth with its sampler; `_ground_truth_changed` drops derived state.
    Put it before the model base class so its `on_source` overrides the interface's no-op.
    """

    name: str
    image_shape: tuple[int, int, int]

    def _init_factor_source(self) -> None:
        self._gt: GroundTruth | None = None
        self._sampler: OneFactorSampler | None = None
        self._source_env = ""
        self._source_domains: tuple[str, ...] = ()

    def on_source(self, env: str, domains: Sequence[str]) -> None:
        """Told by the see stage which env family and source domains it trains on."""
        self._source_env, self._source_domains = env, tuple(domains)

    def set_ground_truth(
        self, gt: GroundTruth, allowed: np.ndarray | None = None, allowed_cols: Sequence[int] = ()
    ) -> None:
        """Draw from `gt`; appearance columns `allowed_cols` stay inside the rows `allowed`."""
        if tuple(gt.image_shape) != tuple(self.image_shape):
            raise ConfigError(
                f"{self.name}: the ground truth renders {tuple(gt.image_shape)} images, the model "
                f"expects {tuple(self.image_shape)}"
            )
        self._gt = gt
        self._sampler = OneFactorSampler(gt.factor_sizes, allowed, allowed_cols)
        self._ground_truth_changed()

    def _ground_truth_changed(self) -> None:
        """Recompute what depends on the ground truth (batch layouts, rendered pairs)."""
