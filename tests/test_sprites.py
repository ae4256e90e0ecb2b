"""The procedural dSprites: exact factor grid, deterministic rendering, factors visible in pixels."""

from __future__ import annotations

import numpy as np
import pytest

from darla.envs.sprites import Sprites, factor_values
from darla.errors import ConfigError


@pytest.fixture(scope="module")
def sprites() -> Sprites:
    return Sprites()


def test_exact_factor_grid(sprites: Sprites) -> None:
    assert sprites.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert sprites.factor_sizes == (3, 6, 40, 32, 32)
    assert sprites.image_shape == (64, 64, 1)
    assert sprites.num_combinations == 737_280
    values = factor_values()
    assert np.allclose(values["scale"][[0, -1]], [0.5, 1.0])
    assert np.allclose(values["orientation"][[0, -1]], [0.0, 2 * np.pi])
    # every combination has its own index and maps back to itself
    all_index = np.arange(sprites.num_combinations)
    factors = sprites.factors_of(all_index)
    assert len(np.unique(factors, axis=0)) == 737_280
    assert np.array_equal(sprites.index_of(factors), all_index)


def test_sampling_covers_the_grid_and_is_seeded(sprites: Sprites) -> None:
    a = sprites.sample_factors(20000, np.random.default_rng(3))
    b = sprites.sample_factors(20000, np.random.default_rng(3))
    assert a.dtype == np.int64 and a.shape == (20000, 5)
    assert np.array_equal(a, b)
    assert [len(np.unique(a[:, k])) for k in range(5)] == [3, 6, 40, 32, 32]


def test_same_factors_same_image(sprites: Sprites) -> None:
    factors = sprites.sample_factors(500, np.random.default_rng(0))
    one = sprites.sample_observations_from_factors(factors, np.random.default_rng(1))
    two = sprites.sample_observations_from_factors(factors[::-1].copy(), np.random.default_rng(2))[::-1]
    assert one.dtype == np.uint8 and one.shape == (500, 64, 64, 1)
    assert set(np.unique(one)) == {0, 255}
    assert np.array_equal(one, two)
    single = sprites.sample_observations_from_factors(factors[7:8], np.random.default_rng(9))
    assert np.array_equal(single[0], one[7])


def test_factors_change_the_pixels(sprites: Sprites) -> None:
    base = np.array([2, 3, 5, 10, 20])
    img = sprites.sample_observations_from_factors(base[None])[0, :, :, 0] > 0
    ys, xs = np.nonzero(img)
    # moving posX by one shifts every lit pixel one column right, posY one row down
    for col, (dy, dx) in ((3, (0, 1)), (4, (1, 0))):
        moved = base.copy()
        moved[col] += 1
        img2 = sprites.sample_observations_from_factors(moved[None])[0, :, :, 0] > 0
        assert np.array_equal(np.roll(img, (dy, dx), axis=(0, 1)), img2)
    # larger scale -> more pixels; different shapes and rotations -> different images
    areas = [sprites.sample_observations_from_factors(np.array([[2, s, 5, 10, 20]])).sum() for s in range(6)]
    assert np.all(np.diff(areas) > 0)
    shapes = sprites.sample_observations_from_factors(np.array([[s, 5, 3, 10, 10] for s in range(3)]))
    assert len({im.tobytes() for im in shapes}) == 3
    rotations = sprites.sample_observations_from_factors(np.array([[2, 5, r, 10, 10] for r in range(39)]))
    assert len({im.tobytes() for im in rotations}) == 39  # the heart has no rotational symmetry
    assert xs.min() > 0 and ys.min() > 0


def test_distinct_combinations_render_distinct_images(sprites: Sprites) -> None:
    rng = np.random.default_rng(5)
    index = rng.choice(sprites.num_combinations, size=3000, replace=False)
    factors = sprites.factors_of(index)
    factors[:, 2] = 3  # a fixed rotation: squares repeat every quarter turn, as in dSprites
    factors = np.unique(factors, axis=0)
    images = sprites.sample_observations_from_factors(factors)
    assert len({im.tobytes() for im in images}) == len(factors)


def test_bad_factors_are_clear_errors(sprites: Sprites) -> None:
    with pytest.raises(ConfigError, match="posX"):
        sprites.sample_observations_from_factors(np.array([[0, 0, 0, 32, 0]]))
    with pytest.raises(ConfigError, match=r"shape \(n, 5\)"):
        sprites.sample_observations_from_factors(np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ConfigError, match="integer"):
        sprites.sample_observations_from_factors(np.zeros((2, 5)))


def test_rendering_is_fast(sprites: Sprites) -> None:
    import time

    factors = sprites.sample_factors(20000, np.random.default_rng(0))
    start = time.perf_counter()
    sprites.sample_observations_from_factors(factors)
    assert time.perf_counter() - start < 2.0  # ~0.2 s here: >> any encoder's throughput
