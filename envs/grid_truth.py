"""What every family's ground truth shares: disentanglement_lib's `GroundTruthData` over a finite
grid of factors, rendered by one renderer (an env or a scene) made on first use.

A family's ground truth (rooms, CarRacing, Reaching, pixel shifts) says what its factors are, which
factor columns a named domain fixes, and how a row is drawn; sampling, checks and closing live here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import numpy as np

from darla.errors import ConfigError

if TYPE_CHECKING:
    from darla.envs.family import EnvFamily


class Closeable(Protocol):
    def close(self) -> None: ...


R = TypeVar("R", bound=Closeable)


class GridTruth(Generic[R]):
    """Factors on a finite grid, each row drawn by a renderer kept open between calls."""

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]

    def __init__(self, family: EnvFamily, size: int) -> None:
        self.family = family
        self.size = int(size)
        self.image_shape = (self.size, self.size, 3)
        self._renderer: R | None = None

    def __repr__(self) -> str:
        factors = ", ".join(f"{n}={k}" for n, k in zip(self.factor_names, self.factor_sizes))
        return f"{type(self).__name__}({self.family.name}, {factors})"

    @property
    def num_factors(self) -> int:
        return len(self.factor_names)

    # ------------------------------------------------------------------ what a family defines
    def make_renderer(self) -> R:
        """The env or scene that draws rows (made once, on the first frame asked for)."""
        raise NotImplementedError

    def domain_columns(self, domain: str) -> dict[int, int]:
        """Factor column -> value index that the named domain fixes (the rest vary freely)."""
        raise NotImplementedError

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ GroundTruthData API
    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, k, size=n) for k in self.factor_sizes], axis=1).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        factors = self.sample_factors(n, rng)
        return factors, self.sample_observations_from_factors(factors, rng)

    def sample_factors_in_domain(self, domain: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """Random rows in one named domain's look (so a probe can compare domains)."""
        factors = self.sample_factors(n, rng)
        for column, index in self.domain_columns(domain).items():
            factors[:, column] = index
        return factors

    def check_factors(self, factors: np.ndarray) -> np.ndarray:
        """The rows as an array, refused with the valid shape and sizes if they do not fit the grid."""
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ConfigError(f"factors must have shape (n, {self.num_factors}), got {factors.shape}")
        if (factors < 0).any() or (factors >= np.array(self.factor_sizes)).any():
            raise ConfigError(
                f"factor values out of range; sizes are {dict(zip(self.factor_names, self.factor_sizes))}"
            )
        return factors

    def renderer(self) -> R:
        if self._renderer is None:
            self._renderer = self.make_renderer()
        return self._renderer

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
