"""rliable wrappers: the same numbers as rliable called directly, seeded, and honest when degenerate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rliable import library, metrics

from darla.errors import ConfigError, UnknownNameError
from darla.pipelines.analysis import (
    aggregate_ci,
    numpy_global_seed,
    poi_matrix,
    probability_of_improvement,
    ratio_ci,
)
from darla.pipelines.analysis.rl_stats import iqm, poi

REPS = 300


@pytest.fixture(scope="module")
def scores() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "a": rng.normal(5.0, 1.0, size=(6, 3)),
        "b": rng.normal(4.0, 1.0, size=(5, 3)),
    }


def _rliable_iqm(x: np.ndarray, seed: int, reps: int = REPS) -> tuple[float, np.ndarray]:
    np.random.seed(seed)
    point, ci = library.get_interval_estimates(
        {"m": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps, confidence_interval_size=0.95
    )
    return float(point["m"][0]), np.asarray(ci["m"]).ravel()


def test_aggregate_equals_rliable(scores: dict[str, np.ndarray]) -> None:
    ours = aggregate_ci(scores, aggregate="iqm", reps=REPS, seed=3)
    for name, x in scores.items():
        point, (low, high) = _rliable_iqm(x, seed=3)
        assert ours[name].point == pytest.approx(point, abs=1e-12)
        assert (ours[name].low, ours[name].high) == pytest.approx((low, high), abs=1e-12)
        assert ours[name].n == x.shape[0] and ours[name].reason is None
        assert ours[name].low < ours[name].point < ours[name].high


def test_fast_statistics_are_rliables() -> None:
    """`iqm` and `poi` replace rliable's scipy-backed functions inside the bootstrap: same numbers."""
    rng = np.random.default_rng(0)
    for runs_x, runs_y, tasks in ((3, 3, 1), (4, 6, 2), (5, 5, 3), (10, 7, 4), (1, 2, 2)):
        x = rng.integers(0, 4, size=(runs_x, tasks)).astype(float)  # ties on purpose
        y = rng.integers(0, 4, size=(runs_y, tasks)).astype(float)
        assert iqm(x) == float(metrics.aggregate_iqm(x))
        assert poi(x, y) == pytest.approx(float(metrics.probability_of_improvement(x, y)), abs=1e-15)
        assert poi(x, x) == float(metrics.probability_of_improvement(x, x)) == 0.5
        z = rng.normal(size=(runs_x, tasks))
        assert iqm(z) == pytest.approx(float(metrics.aggregate_iqm(z)), abs=1e-12)


def test_mean_aggregate_is_rliables_mean(scores: dict[str, np.ndarray]) -> None:
    est = aggregate_ci({"a": scores["a"]}, aggregate="mean", reps=REPS, seed=0)["a"]
    assert est.point == pytest.approx(float(metrics.aggregate_mean(scores["a"])))


def test_interval_reproducible_independent_and_restores_global_rng(scores: dict[str, np.ndarray]) -> None:
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    first = aggregate_ci(scores, reps=REPS, seed=11)
    assert np.random.random() == expected_next, "the caller's global RNG stream must be untouched"
    again = aggregate_ci(scores, reps=REPS, seed=11)
    alone = aggregate_ci({"b": scores["b"]}, reps=REPS, seed=11)
    other = aggregate_ci(scores, reps=REPS, seed=12)
    assert first == again
    assert alone["b"] == first["b"], "a method's CI must not depend on the other methods in the sweep"
    assert (other["a"].low, other["a"].high) != (first["a"].low, first["a"].high)


def test_numpy_global_seed_restores_state() -> None:
    np.random.seed(5)
    state = np.random.get_state()[1].copy()
    with numpy_global_seed(99):
        inside = np.random.random()
    assert np.array_equal(np.random.get_state()[1], state)
    with numpy_global_seed(99):
        assert np.random.random() == inside


def test_degenerate_runs_give_nan_with_reason() -> None:
    one = aggregate_ci({"m": np.array([[1.0, 2.0]])}, reps=REPS)["m"]
    assert one.point == pytest.approx(1.5) and math.isnan(one.low) and math.isnan(one.high)
    assert "one run" in (one.reason or "")
    assert one.format() == "1.50"

    with_nan = np.array([[1.0, 2.0], [np.nan, 2.0], [3.0, 4.0], [2.0, 2.0]])
    est = aggregate_ci({"m": with_nan}, reps=REPS, seed=0)["m"]
    assert est.n == 3 and "dropped 1 of 4 runs" in (est.reason or "")
    assert est.point == pytest.approx(_rliable_iqm(with_nan[[0, 2, 3]], seed=0)[0])

    none = aggregate_ci({"m": np.full((3, 2), np.nan)}, reps=REPS)["m"]
    assert math.isnan(none.point) and none.n == 0 and "no run" in (none.reason or "")
    assert none.format() == "n/a" and none.as_dict()["point"] is None

    constant = aggregate_ci({"m": np.full((4, 2), 2.5)}, reps=REPS)["m"]
    assert (constant.point, constant.low, constant.high) == (2.5, 2.5, 2.5)


def test_bad_inputs_raise() -> None:
    with pytest.raises(UnknownNameError, match="iqm"):
        aggregate_ci({"m": np.ones((2, 2))}, aggregate="trimmed")
    with pytest.raises(ConfigError, match="reps"):
        aggregate_ci({"m": np.ones((2, 2))}, reps=0)
    with pytest.raises(ConfigError, match="shape"):
        aggregate_ci({"m": np.ones((2, 2, 2))})
    with pytest.raises(ConfigError, match="same domains"):
        probability_of_improvement(np.ones((2, 2)), np.ones((2, 3)))


def test_probability_of_improvement_equals_rliable(scores: dict[str, np.ndarray]) -> None:
    x, y = scores["a"], scores["b"]
    ours = probability_of_improvement(x, y, reps=REPS, seed=4)
    np.random.seed(4)
    point, ci = library.get_interval_estimates(
        {"p": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]), reps=REPS
    )
    assert ours.point == pytest.approx(float(point["p"][0]))
    assert (ours.low, ours.high) == pytest.approx(tuple(np.asarray(ci["p"]).ravel()))
    assert ours.point > 0.5  # a's mean is higher by construction
    assert ours.n == 5


def test_poi_matrix_mirrors_pairs(scores: dict[str, np.ndarray]) -> None:
    matrix = poi_matrix(scores, reps=REPS, seed=1)
    ab, ba = matrix.get("a", "b"), matrix.get("b", "a")
    assert ab is not None and ba is not None and matrix.get("a", "a") is None
    assert ab == probability_of_improvement(scores["a"], scores["b"], reps=REPS, seed=1)
    assert ba.point == pytest.approx(1 - ab.point) and ba.low == pytest.approx(1 - ab.high)
    # the identity the mirror rests on: rliable's P(Y > X) is exactly 1 - P(X > Y)
    reverse = float(metrics.probability_of_improvement(scores["b"], scores["a"]))
    assert reverse == pytest.approx(1 - ab.point, abs=1e-12)


def test_probability_of_improvement_one_run_has_no_interval() -> None:
    est = probability_of_improvement(np.array([[2.0, 3.0]]), np.array([[1.0, 1.0], [0.0, 5.0]]), reps=REPS)
    assert est.point == pytest.approx(0.75) and not est.has_ci and "one run" in (est.reason or "")


def test_ratio_ci_keeps_seeds_paired() -> None:
    """Target = half of source on every seed: every paired resample gives exactly 0.5.
    An unpaired (stratified) resample would mix seeds and spread the interval."""
    source = np.array([2.0, 4.0, 8.0, 16.0, 3.0])
    est = ratio_ci(source / 2, source, reps=REPS, seed=0)
    assert est.point == pytest.approx(0.5)
    assert (est.low, est.high) == pytest.approx((0.5, 0.5))


def test_ratio_ci_reproducible_and_degenerate() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(5, 1, 6)
    tgt = rng.normal(3, 1, 6)
    a = ratio_ci(tgt, src, reps=REPS, seed=2)
    assert a == ratio_ci(tgt, src, reps=REPS, seed=2)
    assert a != ratio_ci(tgt, src, reps=REPS, seed=3)
    assert a.point == pytest.approx(tgt.mean() / src.mean())
    zero = ratio_ci([1.0, 2.0], [1.0, -1.0], reps=REPS)
    assert math.isnan(zero.point) and "denominator" in (zero.reason or "")
    single = ratio_ci([1.0, np.nan], [2.0, 2.0], reps=REPS)
    assert single.point == pytest.approx(0.5) and not single.has_ci
    assert "dropped 1 of 2" in (single.reason or "") and "one run" in (single.reason or "")
    with pytest.raises(ConfigError, match="paired"):
        ratio_ci([1.0], [1.0, 2.0])


def test_stratified_bootstrap_of_a_gap_between_independent_samples() -> None:
    """What rliable has no function for (validate's gap between two models' mean scores): each
    sample resampled on its own, seeded, degenerate inputs named."""
    from darla.pipelines.analysis.rl_stats import stratified_bootstrap

    a, b = np.array([0.5, 0.6, 0.7, 0.8]), np.array([0.1, 0.2, 0.15])
    gap = stratified_bootstrap([a, b], lambda s: float(s[0].mean() - s[1].mean()), reps=500, seed=3)
    assert gap.point == pytest.approx(a.mean() - b.mean()) and gap.low <= gap.point <= gap.high
    again = stratified_bootstrap([a, b], lambda s: float(s[0].mean() - s[1].mean()), reps=500, seed=3)
    assert (again.low, again.high) == (gap.low, gap.high)
    assert gap.low > 0  # the samples do not overlap: the gap's interval excludes 0
    one = stratified_bootstrap(np.array([1.0]), lambda s: float(s[0].mean()))
    assert one.point == 1.0 and not one.has_ci and one.reason
    assert np.isnan(stratified_bootstrap([np.array([])], lambda s: 0.0).point)
