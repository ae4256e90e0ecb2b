"""Statistics for reporting RL results across seeds, the way rliable does it.

Few seeds make point estimates misleading, so every aggregate comes with a seeded percentile
bootstrap confidence interval. Across several domains ("tasks") the bootstrap is *stratified*:
runs are resampled within each domain independently, then aggregated. With enough runs the
aggregate is the interquartile mean (IQM), robust to one lucky or broken seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from darla.errors import ConfigError

IQM_MIN_RUNS = 4
"""With at least this many runs the aggregate is the IQM, otherwise the plain mean (as rliable)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (NaN when it cannot be computed)."""

    point: float
    low: float
    high: float
    n: int
    """number of runs (per stratum, the smallest) the estimate rests on"""

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "point": _finite_or_none(self.point),
            "low": _finite_or_none(self.low),
            "high": _finite_or_none(self.high),
            "n": self.n,
        }

    def format(self, digits: int = 2) -> str:
        """`1.23 [0.90, 1.50]`, or `n/a` when undefined."""
        if not math.isfinite(self.point):
            return "n/a"

        def num(x: float) -> str:
            text = f"{x:.{digits}f}"
            return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"

        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return num(self.point)
        return f"{num(self.point)} [{num(self.low)}, {num(self.high)}]"


NAN_ESTIMATE = Estimate(math.nan, math.nan, math.nan, 0)


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (drops int(0.25 n) values at each end).

    Same cut as `scipy.stats.trim_mean(x, 0.25)`, which rliable uses.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = x.size
    if n == 0:
        return math.nan
    cut = int(0.25 * n)
    return float(x[cut : n - cut].mean())


def aggregate(values: Sequence[float] | np.ndarray, iqm_min_runs: int = IQM_MIN_RUNS) -> float:
    """The mean of few runs, the IQM of many (>= `iqm_min_runs`)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return math.nan
    return iqm(x) if x.size >= iqm_min_runs else float(x.mean())


def aggregate_name(n_runs: int, iqm_min_runs: int = IQM_MIN_RUNS) -> str:
    return "IQM" if n_runs >= iqm_min_runs else "mean"


def bootstrap_ci(
    strata: Sequence[np.ndarray] | np.ndarray,
    statistic: Callable[[list[np.ndarray]], float],
    *,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Stratified percentile bootstrap of `statistic`.

    `strata` is one array per stratum (e.g. per domain), whose first axis indexes runs (seeds);
    each stratum is resampled with replacement along that axis, independently of the others,
    `reps` times. Rows stay whole, so paired quantities (target and source return of the same
    seed) are resampled together. A bare array is one stratum. The RNG is seeded: the same
    inputs give the same interval.
    """
    if reps < 1:
        raise ConfigError(f"bootstrap reps must be >= 1, got {reps}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"confidence level must be in (0, 1), got {level}")
    if isinstance(strata, np.ndarray):
        strata = [strata]
    arrays = [np.asarray(s, dtype=np.float64) for s in strata]
    if not arrays or any(a.shape[0] == 0 for a in arrays):
        return NAN_ESTIMATE
    point = float(statistic(arrays))
    n = min(a.shape[0] for a in arrays)
    if n < 2:  # one run has no spread to resample: the interval is undefined, not zero-width
        return Estimate(point, math.nan, math.nan, n)
    rng = np.random.default_rng(seed)
    # Draw every resample's indices up front (one call per stratum) so the stream is fixed.
    indices = [rng.integers(0, a.shape[0], size=(reps, a.shape[0])) for a in arrays]
    stats = np.empty(reps, dtype=np.float64)
    for r in range(reps):
        stats[r] = statistic([a[idx[r]] for a, idx in zip(arrays, indices)])
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return Estimate(point, math.nan, math.nan, n)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Estimate(point, float(low), float(high), n)


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    iqm_min_runs: int = IQM_MIN_RUNS,
) -> Estimate:
    """CI of the aggregate (mean, or IQM with enough runs) of one sample, vectorised."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return NAN_ESTIMATE
    point = aggregate(x, iqm_min_runs)
    if x.size < 2:
        return Estimate(point, math.nan, math.nan, int(x.size))
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, size=(reps, x.size))]
    if x.size >= iqm_min_runs:
        samples = np.sort(samples, axis=1)
        cut = int(0.25 * x.size)
        stats = samples[:, cut : x.size - cut].mean(axis=1)
    else:
        stats = samples.mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Estimate(point, float(low), float(high), int(x.size))


def stratified_aggregate_ci(
    per_stratum: Sequence[Sequence[float] | np.ndarray],
    *,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    iqm_min_runs: int = IQM_MIN_RUNS,
) -> Estimate:
    """CI of the mean over strata (e.g. the target domains) of each stratum's aggregate over runs.

    Each stratum holds one score per run (seed); runs are resampled within each stratum
    independently, so an easy and a hard domain are never mixed into one pool.
    """
    arrays = [np.asarray(s, dtype=np.float64).ravel() for s in per_stratum]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        return NAN_ESTIMATE

    def stat(samples: list[np.ndarray]) -> float:
        return float(np.mean([aggregate(s, iqm_min_runs) for s in samples]))

    return bootstrap_ci(arrays, stat, reps=reps, level=level, seed=seed)


def ratio_ci(
    numerator: Sequence[float] | np.ndarray,
    denominator: Sequence[float] | np.ndarray,
    *,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """CI of mean(numerator) / mean(denominator), resampling runs as pairs.

    Undefined (NaN) when the denominator's mean is ~0: a ratio to nothing means nothing.
    """
    num = np.asarray(numerator, dtype=np.float64).ravel()
    den = np.asarray(denominator, dtype=np.float64).ravel()
    if num.shape != den.shape:
        raise ConfigError(f"ratio_ci needs paired samples, got {num.size} and {den.size} values")
    if num.size == 0:
        return NAN_ESTIMATE
    pairs = np.stack([num, den], axis=1)

    def stat(samples: list[np.ndarray]) -> float:
        s = samples[0]
        return safe_ratio(float(s[:, 0].mean()), float(s[:, 1].mean()))

    return bootstrap_ci(pairs, stat, reps=reps, level=level, seed=seed)


def safe_ratio(numerator: float, denominator: float, eps: float = 1e-8) -> float:
    """numerator / denominator, NaN when the denominator is (close to) zero or not finite."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or abs(denominator) < eps:
        return math.nan
    return numerator / denominator
