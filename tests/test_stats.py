"""Statistics with known answers: IQM, bootstrap coverage, stratification, ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darla.errors import ConfigError
from darla.pipelines.analysis import stats


def test_iqm_known_values() -> None:
    # n=8: drop 2 at each end -> mean of 3,4,5,6
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(4.5)
    # n=4: drop 1 at each end; one outlier does not move it
    assert stats.iqm([0.0, 1.0, 2.0, 1e9]) == pytest.approx(1.5)
    # n=3: int(0.75) = 0 -> plain mean
    assert stats.iqm([1.0, 2.0, 6.0]) == pytest.approx(3.0)
    assert math.isnan(stats.iqm([]))


def test_iqm_matches_scipy_trim_mean() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (4, 5, 7, 10, 33):
        x = rng.normal(size=n)
        assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_aggregate_switches_to_iqm_with_enough_runs() -> None:
    assert stats.aggregate([0.0, 0.0, 30.0]) == pytest.approx(10.0)  # 3 runs: mean
    assert stats.aggregate([0.0, 0.0, 0.0, 40.0]) == pytest.approx(0.0)  # 4 runs: IQM
    assert stats.aggregate_name(3) == "mean" and stats.aggregate_name(4) == "IQM"


def test_bootstrap_ci_covers_true_mean_at_nominal_rate() -> None:
    rng = np.random.default_rng(123)
    trials, hits = 200, 0
    for t in range(trials):
        sample = rng.normal(loc=3.0, scale=2.0, size=60)
        est = stats.bootstrap_mean_ci(sample, reps=1000, seed=t, iqm_min_runs=10**9)
        assert est.low <= est.point <= est.high
        hits += est.low <= 3.0 <= est.high
    coverage = hits / trials
    assert 0.88 <= coverage <= 0.99, coverage


def test_bootstrap_ci_width_shrinks_with_more_data() -> None:
    rng = np.random.default_rng(1)
    small = stats.bootstrap_mean_ci(rng.normal(size=10), seed=0)
    large = stats.bootstrap_mean_ci(rng.normal(size=1000), seed=0)
    assert (large.high - large.low) < (small.high - small.low) / 4


def test_bootstrap_is_seeded() -> None:
    x = np.arange(10.0)
    a = stats.bootstrap_ci(x, lambda s: float(s[0].mean()), seed=5)
    b = stats.bootstrap_ci(x, lambda s: float(s[0].mean()), seed=5)
    c = stats.bootstrap_ci(x, lambda s: float(s[0].mean()), seed=6)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)


def test_generic_and_vectorised_bootstrap_agree() -> None:
    x = np.random.default_rng(2).normal(size=40)
    generic = stats.bootstrap_ci(x, lambda s: float(s[0].mean()), reps=4000, seed=0)
    fast = stats.bootstrap_mean_ci(x, reps=4000, seed=1, iqm_min_runs=10**9)
    assert generic.point == pytest.approx(fast.point)
    assert generic.low == pytest.approx(fast.low, abs=0.05)
    assert generic.high == pytest.approx(fast.high, abs=0.05)


def test_stratified_bootstrap_keeps_strata_apart() -> None:
    # Two domains with very different levels and no spread inside each: a stratified
    # bootstrap can never mix them, so the interval collapses to the point; pooling would not.
    easy = np.full(5, 10.0)
    hard = np.full(5, 0.0)
    est = stats.stratified_aggregate_ci([easy, hard], seed=0)
    assert est.point == pytest.approx(5.0)
    assert est.low == pytest.approx(5.0) and est.high == pytest.approx(5.0)
    pooled = stats.bootstrap_mean_ci(np.concatenate([easy, hard]), seed=0, iqm_min_runs=10**9)
    assert pooled.high - pooled.low > 1.0


def test_ratio_ci_resamples_pairs() -> None:
    # target = 0.5 * source exactly, per seed: every paired resample gives 0.5
    source = np.array([2.0, 4.0, 10.0, 6.0])
    est = stats.ratio_ci(0.5 * source, source, seed=0)
    assert est.point == pytest.approx(0.5)
    assert est.low == pytest.approx(0.5) and est.high == pytest.approx(0.5)


def test_ratio_undefined_for_zero_denominator() -> None:
    assert math.isnan(stats.safe_ratio(1.0, 0.0))
    est = stats.ratio_ci([1.0, 2.0], [0.0, 0.0])
    assert math.isnan(est.point)
    assert est.format() == "n/a"
    assert est.as_dict()["point"] is None


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="reps"):
        stats.bootstrap_ci(np.ones(3), lambda s: 1.0, reps=0)
    with pytest.raises(ConfigError, match="level"):
        stats.bootstrap_ci(np.ones(3), lambda s: 1.0, level=1.5)
    with pytest.raises(ConfigError, match="paired"):
        stats.ratio_ci([1.0, 2.0], [1.0])


def test_stratified_point_is_mean_of_per_stratum_aggregates() -> None:
    # per domain: IQM over 4 runs (outlier dropped), then the mean over domains
    a = [1.0, 1.0, 1.0, 100.0]
    b = [3.0, 3.0, 3.0, 3.0]
    assert stats.stratified_aggregate_ci([a, b], seed=0).point == pytest.approx(2.0)


def test_estimate_format() -> None:
    assert stats.Estimate(1.234, 0.5, 2.0, 3).format() == "1.23 [0.50, 2.00]"
    assert stats.Estimate(-0.001, -0.002, 0.0, 3).format() == "0.00 [0.00, 0.00]"
    assert stats.Estimate(1.0, math.nan, math.nan, 1).format() == "1.00"


def test_one_run_has_no_interval() -> None:
    est = stats.bootstrap_mean_ci([2.5])
    assert est.point == 2.5 and math.isnan(est.low) and math.isnan(est.high)
    assert est.format() == "2.50"
    assert math.isnan(stats.ratio_ci([1.0], [2.0]).low)
