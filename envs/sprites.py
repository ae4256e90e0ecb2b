"""dSprites, rendered procedurally with the exact factor grid (no download needed).

The published dSprites set (Matthey et al. 2017) is 3 shapes x 6 scales x 40 rotations x
32 x 32 positions = 737,280 binary 64x64 images. It cannot be downloaded here, so this module
draws the same grid: the 720 (shape, scale, rotation) masks are rasterised once on a 32x32
patch, and an image is that patch pasted at one of 32 x 32 integer offsets (1-pixel steps).
Rendering is a single fancy-indexing write per batch, so metrics are bound by the encoder,
never by the data.

The shapes are our drawings (square, ellipse, heart), not bit-exact copies of the original
sprites; factor names, sizes and value ranges follow dSprites (and disentanglement_lib, which
drops the constant colour factor).
"""

from __future__ import annotations

import functools

import numpy as np

from darla.errors import ConfigError

FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES: tuple[int, ...] = (3, 6, 40, 32, 32)
SHAPES: tuple[str, ...] = ("square", "ellipse", "heart")
IMAGE_SIZE = 64
PATCH = 32
"""Side of the patch a sprite is drawn on; its centre sits on the patch's middle corner."""
UNIT = 12.0
"""Half-extent in pixels of a sprite at scale 1 (the largest sprite stays inside the patch)."""


def factor_values() -> dict[str, np.ndarray]:
    """The continuous value of each factor index, as in dSprites' `latents_values`."""
    return {
        "shape": np.arange(1, 4, dtype=np.float64),
        "scale": np.linspace(0.5, 1.0, 6),
        "orientation": np.linspace(0.0, 2 * np.pi, 40),
        "posX": np.linspace(0.0, 1.0, 32),
        "posY": np.linspace(0.0, 1.0, 32),
    }


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether local coordinates (in units of the sprite's half-extent, v pointing up) are inside."""
    if shape == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == "ellipse":
        return (u / 1.0) ** 2 + (v / 0.5) ** 2 <= 1.0
    # heart: the implicit curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, centred and scaled to ~[-1, 1]
    x = 1.2 * u
    y = 1.2 * v + 0.15
    return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0


@functools.cache
def sprite_masks() -> np.ndarray:
    """All 720 sprite patches, (3, 6, 40, PATCH, PATCH) uint8 in {0, 255}, computed once."""
    values = factor_values()
    centre = PATCH / 2.0
    # pixel centres of the patch relative to the sprite centre; rows grow downwards
    coords = np.arange(PATCH) + 0.5 - centre
    xx = coords[None, :]
    yy = -coords[:, None]
    angles = values["orientation"]
    cos = np.cos(angles)[:, None, None]
    sin = np.sin(angles)[:, None, None]
    # rotate the sampling grid by -angle, which rotates the sprite by +angle (counter-clockwise)
    u_rot = cos * xx + sin * yy
    v_rot = -sin * xx + cos * yy
    masks = np.zeros((len(SHAPES), 6, 40, PATCH, PATCH), dtype=np.uint8)
    for s, shape in enumerate(SHAPES):
        for k, scale in enumerate(values["scale"]):
            extent = UNIT * scale
            masks[s, k] = np.where(_inside(shape, u_rot / extent, v_rot / extent), 255, 0)
    masks.setflags(write=False)
    return masks


class Sprites:
    """dSprites as a ground-truth dataset (the `GroundTruth` protocol of `darla.envs`).

    Observations are (64, 64, 1) uint8 images with values 0 and 255. Rendering is
    deterministic: the same factors always give the same image (the rng is not used).
    """

    name = "sprites"
    factor_names: tuple[str, ...] = FACTOR_NAMES
    factor_sizes: tuple[int, ...] = FACTOR_SIZES
    image_shape: tuple[int, int, int] = (IMAGE_SIZE, IMAGE_SIZE, 1)

    def __init__(self) -> None:
        self._masks = sprite_masks()

    @property
    def num_combinations(self) -> int:
        return int(np.prod(self.factor_sizes))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` factor vectors drawn uniformly from the grid, (n, 5) int64."""
        if n < 0:
            raise ConfigError(f"number of samples must be >= 0, got {n}")
        cols = [rng.integers(0, size, size=n) for size in self.factor_sizes]
        return np.stack(cols, axis=1).astype(np.int64) if n else np.zeros((0, 5), dtype=np.int64)

    def check_factors(self, factors: np.ndarray) -> np.ndarray:
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != len(self.factor_sizes):
            raise ConfigError(
                f"sprites factors must have shape (n, {len(self.factor_sizes)}) "
                f"({', '.join(self.factor_names)}), got {factors.shape}"
            )
        if not np.issubdtype(factors.dtype, np.integer):
            raise ConfigError(f"sprites factors must be integer indices, got dtype {factors.dtype}")
        sizes = np.asarray(self.factor_sizes)
        bad = (factors < 0) | (factors >= sizes)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ConfigError(
                f"sprites factor {self.factor_names[col]!r} = {int(factors[row, col])} is out of range "
                f"[0, {sizes[col] - 1}]"
            )
        return factors.astype(np.int64, copy=False)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Render (n, 64, 64, 1) uint8 images; the rng is accepted for the protocol but unused."""
        factors = self.check_factors(factors)
        n = len(factors)
        images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        if n == 0:
            return images[..., None]
        patches = self._masks[factors[:, 0], factors[:, 1], factors[:, 2]]  # (n, P, P)
        offs = np.arange(PATCH)
        rows = factors[:, 4, None] + offs  # posY -> row offset of the patch
        cols = factors[:, 3, None] + offs  # posX -> column offset
        images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]] = patches
        return images[..., None]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        factors = self.sample_factors(n, rng)
        return factors, self.sample_observations_from_factors(factors, rng)

    def index_of(self, factors: np.ndarray) -> np.ndarray:
        """A unique integer per factor combination (row-major over the grid), (n,) int64."""
        factors = self.check_factors(factors)
        return np.ravel_multi_index(tuple(factors.T), self.factor_sizes).astype(np.int64)

    def factors_of(self, index: np.ndarray) -> np.ndarray:
        """Inverse of `index_of`: (n,) combination indices -> (n, 5) factors."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.num_combinations):
            raise ConfigError(f"sprites index out of range [0, {self.num_combinations - 1}]")
        return np.stack(np.unravel_index(index, self.factor_sizes), axis=1).astype(np.int64)

    def __repr__(self) -> str:
        return f"Sprites({' x '.join(map(str, self.factor_sizes))} = {self.num_combinations} images)"
