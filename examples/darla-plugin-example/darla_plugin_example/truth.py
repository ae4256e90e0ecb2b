"""The Dots ground truth, in disentanglement_lib's `GroundTruthData` shape (darla's contract).

Factors: the appearance factors that vary across the family's domains (background, goal colour,
bad colour), then the grid cells of the agent, the goal dot and the bad dot. A factor row fixes
every pixel (no nuisance), and frames are drawn by the env's own painter, so a probe or a
disentanglement metric reads exactly what the env shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from darla.envs.family import EnvFamily
from darla.errors import ConfigError, UnknownNameError
from darla.registry import unknown_name_message
from darla_plugin_example.env import DEFAULT_GRID, DotsDomain, DotsEnv, Painter

POSITION_FACTORS = ("agent_x", "agent_y", "goal_x", "goal_y", "bad_x", "bad_y")
APPEARANCE = ("background", "goal_color", "bad_color")


class DotsGroundTruth:
    """Factors and renderer of the Dots family at one frame size."""

    def __init__(self, family: EnvFamily, size: int = 64) -> None:
        self.family = family
        self.size = int(size)
        self.grid = int(family.env_defaults.get("grid", DEFAULT_GRID))
        domains = [family.domains[n] for n in family.domain_names()]
        self.base: DotsDomain = domains[0]
        appearance = {name: tuple(dict.fromkeys(d.factors()[name] for d in domains)) for name in APPEARANCE}
        self.appearance = {name: values for name, values in appearance.items() if len(values) > 1}
        self.factor_names = (*self.appearance, *POSITION_FACTORS)
        self.factor_sizes = (
            *(len(v) for v in self.appearance.values()),
            *[self.grid] * len(POSITION_FACTORS),
        )
        self.image_shape = (self.size, self.size, 3)
        self.painter = Painter(self.size, self.grid)

    def __repr__(self) -> str:
        factors = ", ".join(f"{n}={k}" for n, k in zip(self.factor_names, self.factor_sizes))
        return f"DotsGroundTruth({factors})"

    @property
    def num_factors(self) -> int:
        return len(self.factor_names)

    def values(self, name: str) -> tuple[Any, ...]:
        """The values behind the indices of factor `name` (colours, or grid cells)."""
        if name in self.appearance:
            return self.appearance[name]
        if name in POSITION_FACTORS:
            return tuple(range(self.grid))
        raise UnknownNameError(unknown_name_message("Dots factor", name, list(self.factor_names)))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, k, size=n) for k in self.factor_sizes], axis=1).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        factors = self.sample_factors(n, rng)
        return factors, self.sample_observations_from_factors(factors, rng)

    def sample_factors_in_domain(self, domain: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """Random positions in one named domain's appearance (a probe compares domains this way)."""
        spec = self.family.domain(domain)
        factors = self.sample_factors(n, rng)
        for i, (name, values) in enumerate(self.appearance.items()):
            factors[:, i] = values.index(spec.factors()[name])
        return factors

    def spec_for(self, row: np.ndarray) -> DotsDomain:
        """The domain spec that the appearance part of a factor row describes."""
        changes = {name: values[int(row[i])] for i, (name, values) in enumerate(self.appearance.items())}
        return self.base.replace(name="ground_truth", **changes)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One frame per factor row (`rng` is unused: the factors fix every pixel). Rows may put two
        objects on one cell, as independent factors do; then the agent covers the dots."""
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ConfigError(f"factors must have shape (n, {self.num_factors}), got {factors.shape}")
        if (factors < 0).any() or (factors >= np.array(self.factor_sizes)).any():
            raise ConfigError(
                f"factor values out of range; sizes are {dict(zip(self.factor_names, self.factor_sizes))}"
            )
        na = len(self.appearance)
        out = np.empty((len(factors), *self.image_shape), dtype=np.uint8)
        for i, row in enumerate(factors):
            agent, goal, bad = row[na : na + 2], row[na + 2 : na + 4], row[na + 4 : na + 6]
            out[i] = self.painter.draw(self.spec_for(row), agent, goal, bad)
        return out

    def label(self, env: DotsEnv) -> np.ndarray:
        """Factor indices of the env's current frame (-1 where a value is not one of the factor's,
        e.g. a custom colour, or positions on a grid of another size)."""
        row = np.full(self.num_factors, -1, dtype=np.int64)
        for i, (name, values) in enumerate(self.appearance.items()):
            value = env.domain.factors()[name]
            if value in values:
                row[i] = values.index(value)
        if env.grid == self.grid:
            na = len(self.appearance)
            row[na:] = np.concatenate([env.agent, env.goal, env.bad])
        return row

    def close(self) -> None:
        """Nothing to release: frames are drawn in numpy."""
