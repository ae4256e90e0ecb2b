"""Spearman's rho of disentanglement against transfer: scipy's number, a seeded cluster-bootstrap CI."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_fixture import sweep_trials
from scipy.stats import spearmanr

from darla.errors import ConfigError, UnknownNameError
from darla.pipelines.analysis import DISENTANGLEMENT_METRICS, disentanglement_vs_transfer, spearman_ci
from darla.pipelines.analysis.correlation import weighted_spearman

REPS = 400


def _data(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    return x, x + rng.normal(0, 0.3, n)


def test_point_equals_scipy_and_ci_is_seeded() -> None:
    x, y = _data()
    est = spearman_ci(x, y, reps=REPS, seed=1)
    ref = spearmanr(x, y)
    assert est.rho == pytest.approx(float(ref.statistic), abs=1e-12)
    assert est.p_value == pytest.approx(float(ref.pvalue))
    assert est.low < est.rho < est.high and est.n == 12 and est.clusters == 12 and est.reason is None
    assert est == spearman_ci(x, y, reps=REPS, seed=1)
    other = spearman_ci(x, y, reps=REPS, seed=2)
    assert (est.low, est.high) != (other.low, other.high)


def test_weighted_rank_correlation_is_spearman_of_the_resample() -> None:
    """Each bootstrap resample, ranked by counting, has scipy's rho on the expanded sample."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=9).astype(float)  # ties, as in real scores and in resamples
    y = rng.integers(0, 5, size=9).astype(float)
    counts = rng.multinomial(9, np.full(9, 1 / 9), size=40)
    counts[0] = 0
    counts[0, [2, 5]] = 3  # a resample of two distinct points, each three times
    ours = weighted_spearman(x, y, counts)
    for row, c in enumerate(counts):
        xs, ys = np.repeat(x, c), np.repeat(y, c)
        ref = spearmanr(xs, ys).statistic if np.ptp(xs) > 0 and np.ptp(ys) > 0 else np.nan
        if np.isnan(ref):
            assert np.isnan(ours[row]), row
        else:
            assert ours[row] == pytest.approx(float(ref), abs=1e-12), row


def test_cluster_bootstrap_resamples_whole_models() -> None:
    """Each point entered twice under one model label: rho is unchanged and so is the interval
    (whole models are drawn, same as drawing the single points); treating the copies as
    independent points would narrow the interval falsely."""
    x, y = _data(10, seed=4)
    single = spearman_ci(x, y, reps=REPS, seed=5)
    labels = [f"m{i:02d}" for i in range(10)]
    doubled = spearman_ci(np.repeat(x, 2), np.repeat(y, 2), reps=REPS, seed=5, groups=np.repeat(labels, 2))
    naive = spearman_ci(np.repeat(x, 2), np.repeat(y, 2), reps=REPS, seed=5)
    assert doubled.rho == pytest.approx(single.rho)
    assert (doubled.low, doubled.high) == pytest.approx((single.low, single.high), abs=1e-9)
    assert doubled.n == 20 and doubled.clusters == 10
    assert naive.high - naive.low < doubled.high - doubled.low


def test_degenerate_inputs_give_nan_with_reason() -> None:
    x, y = _data(6)
    constant = spearman_ci(np.full(6, 0.5), y, reps=REPS)
    assert math.isnan(constant.rho) and "x is constant" in (constant.reason or "")
    assert constant.format().startswith("rho n/a (x is constant")
    assert constant.short() == "rho n/a: x is constant: ranks carry no\norder"
    few = spearman_ci(x[:2], y[:2], reps=REPS)
    assert math.isnan(few.rho) and "need at least 3" in (few.reason or "")
    holes = spearman_ci(np.r_[x, np.nan], np.r_[y, 1.0], reps=REPS)
    assert holes.n == 6 and "dropped 1 of 7" in (holes.reason or "")
    assert holes.rho == pytest.approx(float(spearmanr(x, y).statistic))
    two_models = spearman_ci(x, y, reps=REPS, groups=["a", "a", "a", "b", "b", "b"])
    assert math.isfinite(two_models.rho) and math.isnan(two_models.low)
    assert "2 independent group(s)" in (two_models.reason or "")
    assert two_models.as_dict()["low"] is None
    with pytest.raises(ConfigError, match="paired"):
        spearman_ci([1.0, 2.0], [1.0])


def test_disentanglement_vs_transfer_on_the_sweep() -> None:
    trials = sweep_trials()
    result = disentanglement_vs_transfer(trials, reps=REPS, seed=0)
    assert result.metrics == ("mig", "dci.disentanglement", "factor_vae", "sap", "modularity")
    assert result.outcomes == ("transfer_ratio", "target_return")
    frozen = [t for t in trials if t.mode == "frozen"]
    pts = result.points[("mig", "transfer_ratio")]
    assert pts.x.size == len(frozen) == 15  # the finetune and pixel trials stay out
    rho = result.correlations[("mig", "transfer_ratio")]
    ref = spearmanr(
        [t.disentanglement["mig"] for t in frozen if t.disentanglement], [t.transfer_ratio for t in frozen]
    )
    assert rho.rho == pytest.approx(float(ref.statistic))
    assert rho.rho > 0.5 and rho.clusters == 7  # seven vision models in the sweep
    assert "constant" in (result.correlations[("modularity", "transfer_ratio")].reason or "")
    with pytest.raises(UnknownNameError, match="mig"):
        disentanglement_vs_transfer(trials, metrics=["migg"], reps=REPS)
    unscored = disentanglement_vs_transfer(trials, metrics=["beta_vae"], reps=REPS)
    assert "no trial carries 'beta_vae'" in (
        unscored.correlations[("beta_vae", "target_return")].reason or ""
    )


def test_metric_names_are_darlas() -> None:
    from darla.vision.metrics import METRICS

    primary = {m.primary for _, m in METRICS.items()}
    assert set(DISENTANGLEMENT_METRICS) <= primary
