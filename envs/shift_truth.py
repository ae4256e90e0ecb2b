"""Ground truth of a shifted family: the shift's own factors over random base states.

Factors are the suite parameters a single frame shows (colour: hue, saturation, ...; distractors:
count and radius; background: pattern, frequency, strength), each taking the values the family's
levels use, plus `base_domain` for a darla base with several source looks. Motion (distractor
speed, texture drift) is left out: one frame cannot show it. The base state is a nuisance drawn
from the generator (a seeded reset and a few random actions), so the same generator gives the
same frames. Frames of rows with the same shift are shifted as one batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from darla.envs.grid_truth import GridTruth
from darla.errors import ConfigError

if TYPE_CHECKING:
    from darla.envs.family import EnvFamily
    from darla.envs.shift import ShiftSpec
    from darla.envs.shift_env import ShiftEnv

BASE_STEPS = 20
"""At most this many random actions after the reset of a ground-truth base state."""


class ShiftGroundTruth(GridTruth["ShiftEnv"]):
    """disentanglement_lib's GroundTruthData shape over a shifted family."""

    def __init__(self, family: EnvFamily, size: int = 64) -> None:
        super().__init__(family, size)
        specs: list[ShiftSpec] = [family.domains[n] for n in family.domain_names()]
        self.template = specs[0]
        names = [*type(self.template).visible, "base_domain"]
        factors = [(n, tuple(dict.fromkeys(getattr(s, n) for s in specs))) for n in names]
        self._values = {n: v for n, v in factors if len(v) > 1}
        self.factor_names = tuple(self._values)
        self.factor_sizes = tuple(len(v) for v in self._values.values())

    def values(self, name: str) -> tuple[Any, ...]:
        if name not in self._values:
            raise ConfigError(f"unknown factor {name!r}; valid: {', '.join(self.factor_names)}")
        return self._values[name]

    def make_renderer(self) -> ShiftEnv:
        env: ShiftEnv = self.family.make(self.template.name, seed=0, size=self.size).unwrapped
        return env

    def domain_columns(self, domain: str) -> dict[int, int]:
        """Every column: a domain is its shift (the base state still varies per frame)."""
        spec = self.family.domain(domain)
        return {i: self._values[name].index(getattr(spec, name)) for i, name in enumerate(self.factor_names)}

    def spec_for(self, row: np.ndarray) -> ShiftSpec:
        """The spec a factor row describes (unlisted parameters as in the family's first domain)."""
        changes = {name: self._values[name][int(row[i])] for i, name in enumerate(self.factor_names)}
        spec: ShiftSpec = self.template.replace(name="ground_truth", **changes)
        return spec

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        factors = self.check_factors(factors)
        env = self.renderer()
        specs = [self.spec_for(row) for row in factors]
        frames = np.empty((len(factors), *self.image_shape), dtype=np.uint8)
        masks: list[np.ndarray | None] = []
        for i, spec in enumerate(specs):
            frames[i], mask = env.random_base_frame(rng, spec.base_domain, BASE_STEPS)
            masks.append(mask)
        groups: dict[ShiftSpec, list[int]] = {}
        for i, spec in enumerate(specs):
            groups.setdefault(spec, []).append(i)
        out = np.empty_like(frames)
        for spec, rows in groups.items():
            op = spec.make_op(self.size, env.keyer)
            op.reset(rng, len(rows))
            keyer: Any = env.keyer
            group_masks = [m for m in (masks[r] for r in rows) if m is not None]
            if group_masks and keyer is not None:
                keyer.mask = np.stack(group_masks)
            out[rows] = op.apply(frames[rows])
        return out

    # ------------------------------------------------------------------ labels for env frames
    def label(self, env: Any) -> np.ndarray:
        """Factor indices of the env's current domain (-1 for a value no family level has)."""
        row = np.full(self.num_factors, -1, dtype=np.int64)
        for i, name in enumerate(self.factor_names):
            value = getattr(env.domain, name)
            if value in self._values[name]:
                row[i] = self._values[name].index(value)
        return row


def shift_ground_truth(family: EnvFamily, size: int) -> ShiftGroundTruth:
    return ShiftGroundTruth(family, size)
