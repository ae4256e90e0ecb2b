"""Aggregates over seeds and domains with rliable (Agarwal et al., NeurIPS 2021), seeded.

- `aggregate_ci`: interquartile mean (or mean, median) over runs x domains with rliable's
  stratified bootstrap CI (runs resampled within each domain).
- `probability_of_improvement` / `poi_matrix`: P(backbone X scores above backbone Y on a random
  domain), rliable's Mann-Whitney estimate, with its CI.
- `ratio_ci`: our own paired bootstrap for the transfer ratio. rliable has no ratio, and its
  stratified bootstrap draws a run index per (run, domain) cell independently, which would pair
  one seed's target return with another seed's source return.

Reproducibility: rliable 1.2.0 draws bootstrap indices with `np.random.choice`, numpy's *global*
RNG; the `random_state` it hands to arch never reaches them. Every call here therefore runs under
`numpy_global_seed(seed)` (seeded, then the caller's state restored), one call per method, so a
method's interval does not change when another method joins the sweep. rliable is imported on
first use (with its dependency arch it takes ~2-3 s to import).

Speed: rliable's bootstrap calls the statistic once per resample, and its IQM and probability of
improvement go through scipy's per-call wrappers (~0.26 ms and ~1.5 ms here), so a sweep's report
took minutes at 2,000 resamples. `iqm` and `poi` compute the same numbers with plain numpy
inside rliable's own bootstrap; the tests compare them with rliable's functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from darla.errors import ConfigError
from darla.pipelines.analysis.estimate import Interval, check_bootstrap, missing, point_only
from darla.pipelines.analysis.trials import RATIO_EPS, ScoreMatrix
from darla.registry import Registry

Scores: TypeAlias = np.ndarray | ScoreMatrix
"""(runs, domains) scores of one method; a 1-D array is one domain."""

ONE_RUN = "one run: no spread to resample, interval undefined"


@contextlib.contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for the block (where rliable draws), then restore the caller's state."""
    state = np.random.get_state()
    np.random.seed(int(seed) % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


def iqm(scores: np.ndarray) -> float:
    """rliable's IQM (`metrics.aggregate_iqm`: scipy's `trim_mean(x, 0.25, axis=None)`), the same
    steps (partition, keep the middle, mean) without scipy's per-call wrapper: ~10 us instead of
    ~260 us here, which matters at one call per bootstrap resample. A test checks they agree."""
    a = np.asarray(scores, dtype=np.float64).ravel()
    lowercut = int(0.25 * a.size)
    uppercut = a.size - lowercut
    part = np.partition(a, (lowercut, uppercut - 1))
    return float(np.mean(part[lowercut:uppercut]))


def _mean(scores: np.ndarray) -> float:
    from rliable import metrics

    return float(metrics.aggregate_mean(scores))


def _median(scores: np.ndarray) -> float:
    from rliable import metrics

    return float(metrics.aggregate_median(scores))


AGGREGATES: Registry[Callable[[np.ndarray], float]] = Registry("aggregate")
"""rliable's aggregates over a (runs, domains) matrix: 'iqm' (25% trimmed mean of all cells),
'mean' (mean of per-domain means), 'median' (median of per-domain means)."""
AGGREGATES.register("iqm", iqm)
AGGREGATES.register("mean", _mean)
AGGREGATES.register("median", _median)


def finite_runs(scores: Scores, name: str = "scores") -> tuple[np.ndarray, list[str]]:
    """The (runs, domains) float matrix without runs holding a NaN/inf, and notes on what was dropped."""
    notes: list[str] = []
    if isinstance(scores, ScoreMatrix):
        notes += list(scores.dropped)
        scores = scores.values
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2:
        raise ConfigError(f"{name}: scores must be a (runs, domains) matrix, got shape {x.shape}")
    keep = np.isfinite(x).all(axis=1)
    if not keep.all():
        notes.append(f"{name}: dropped {int((~keep).sum())} of {x.shape[0]} runs with a NaN/inf score")
    return x[keep], notes


def _reason(notes: list[str]) -> str | None:
    return "; ".join(notes) if notes else None


def aggregate_ci(
    scores: Mapping[str, Scores],
    *,
    aggregate: str = "iqm",
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Per method: the aggregate over its runs x domains with rliable's stratified bootstrap CI.

    Equal to `rliable.library.get_interval_estimates({name: x}, fn, reps=reps,
    confidence_interval_size=level)` run after `np.random.seed(seed)`, for each method alone.
    """
    check_bootstrap(reps, level)
    fn = AGGREGATES.get(aggregate)
    out: dict[str, Interval] = {}
    for name, raw in scores.items():
        x, notes = finite_runs(raw, name)
        if x.shape[1] == 0:
            out[name] = missing(_reason([*notes, f"{name}: no domains"]))
            continue
        if x.shape[0] == 0:
            out[name] = missing(_reason([*notes, f"{name}: no run with finite scores"]))
            continue
        if x.shape[0] == 1:
            out[name] = point_only(fn(x), 1, _reason([*notes, ONE_RUN]) or ONE_RUN)
            continue
        from rliable import library

        with numpy_global_seed(seed):
            points, cis = library.get_interval_estimates(
                {name: x}, lambda s: np.array([fn(s)]), reps=reps, confidence_interval_size=level
            )
        low, high = np.asarray(cis[name], dtype=np.float64).reshape(2)
        out[name] = Interval(
            float(np.asarray(points[name]).reshape(-1)[0]),
            float(low),
            float(high),
            x.shape[0],
            _reason(notes),
        )
    return out


def poi(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's `metrics.probability_of_improvement`: per domain U / (n_x n_y), U = Mann-Whitney's
    statistic = #(x > y) + #(x = y) / 2 over all run pairs, 0.5 for identical columns; mean over
    domains. Counted directly instead of through scipy's `mannwhitneyu` (~1.5 ms per call here,
    once per bootstrap resample); a test checks they agree."""
    probs = []
    for task in range(scores_x.shape[1]):
        a, b = scores_x[:, task], scores_y[:, task]
        if np.array_equal(a, b):
            probs.append(0.5)
            continue
        greater = int((a[:, None] > b[None, :]).sum())
        ties = int((a[:, None] == b[None, :]).sum())
        probs.append((greater + 0.5 * ties) / (a.size * b.size))
    return float(np.mean(probs))


def probability_of_improvement(
    scores_x: Scores,
    scores_y: Scores,
    *,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """P(X > Y): the chance a run of X beats a run of Y on a domain, averaged over domains.

    rliable's estimate (Mann-Whitney U / (n_x n_y) per domain; ties count one half) with its
    CI from resampling X's and Y's runs independently within each domain. `n` is the smaller
    run count.
    """
    check_bootstrap(reps, level)
    x, notes_x = finite_runs(scores_x, "X")
    y, notes_y = finite_runs(scores_y, "Y")
    notes = notes_x + notes_y
    if x.shape[1] != y.shape[1]:
        raise ConfigError(
            f"probability of improvement compares the same domains: X has {x.shape[1]}, Y {y.shape[1]}"
        )
    n = min(x.shape[0], y.shape[0])
    if n == 0 or x.shape[1] == 0:
        return missing(_reason([*notes, "no runs or no domains to compare"]))
    point = poi(x, y)
    if n == 1:
        return point_only(point, 1, _reason([*notes, ONE_RUN]) or ONE_RUN)
    from rliable import library

    with numpy_global_seed(seed):
        _, cis = library.get_interval_estimates(
            {"x>y": [x, y]}, lambda a, b: np.array([poi(a, b)]), reps=reps, confidence_interval_size=level
        )
    low, high = np.asarray(cis["x>y"], dtype=np.float64).reshape(2)
    return Interval(point, float(low), float(high), n, _reason(notes))


@dataclass(frozen=True)
class PoiMatrix:
    """P(row > column) for every ordered pair of methods."""

    names: tuple[str, ...]
    cells: Mapping[tuple[str, str], Interval]

    def get(self, x: str, y: str) -> Interval | None:
        """P(x > y); None on the diagonal."""
        return self.cells.get((x, y))


def mirrored(est: Interval) -> Interval:
    """P(Y > X) from P(X > Y): rliable's estimate gives P(X>Y) + P(Y>X) = 1 on every resample (ties
    count one half each way), so the interval of the complement is the complement of the interval."""
    return Interval(1.0 - est.point, 1.0 - est.high, 1.0 - est.low, est.n, est.reason)


def poi_matrix(
    scores: Mapping[str, Scores],
    *,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PoiMatrix:
    """Probability of improvement between every pair of methods (each pair bootstrapped once)."""
    names = tuple(scores)
    cells: dict[tuple[str, str], Interval] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            est = probability_of_improvement(scores[a], scores[b], reps=reps, level=level, seed=seed)
            cells[(a, b)] = est
            cells[(b, a)] = mirrored(est)
    return PoiMatrix(names, cells)


def ratio_ci(
    numerator: np.ndarray | list[float],
    denominator: np.ndarray | list[float],
    *,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """mean(numerator) / mean(denominator) with a paired percentile bootstrap over runs.

    Runs (e.g. one seed's target and source return) are resampled as pairs. Undefined when
    the denominator's mean is ~0; resamples whose denominator mean is ~0 are left out.
    """
    check_bootstrap(reps, level)
    num = np.asarray(numerator, dtype=np.float64).ravel()
    den = np.asarray(denominator, dtype=np.float64).ravel()
    if num.shape != den.shape:
        raise ConfigError(f"ratio_ci needs paired samples, got {num.size} and {den.size} values")
    notes: list[str] = []
    keep = np.isfinite(num) & np.isfinite(den)
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} of {num.size} runs with a NaN/inf value")
    num, den = num[keep], den[keep]
    n = int(num.size)
    if n == 0:
        return missing(_reason([*notes, "no run with finite values"]))
    if abs(den.mean()) < RATIO_EPS:
        return missing(_reason([*notes, "denominator mean is ~0: ratio undefined"]), n)
    point = float(num.mean() / den.mean())
    if n == 1:
        return point_only(point, 1, _reason([*notes, ONE_RUN]) or ONE_RUN)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(reps, n))
    den_means = den[idx].mean(axis=1)
    ok = np.abs(den_means) >= RATIO_EPS
    stats = num[idx].mean(axis=1)[ok] / den_means[ok]
    if stats.size < reps:
        notes.append(f"{reps - stats.size} of {reps} resamples had a ~0 denominator and were left out")
    if stats.size == 0:
        return point_only(point, n, _reason(notes) or "no usable resample")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(point, float(low), float(high), n, _reason(notes))


def stratified_bootstrap(
    strata: Sequence[np.ndarray] | np.ndarray,
    statistic: Callable[[list[np.ndarray]], float],
    *,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """A percentile bootstrap of any `statistic` of independent samples (e.g. the gap between two
    models' mean scores), each resampled along its first axis on its own: what rliable has no
    function for. A bare array is one sample; seeded, so the same inputs give the same interval."""
    check_bootstrap(reps, level)
    if isinstance(strata, np.ndarray):
        strata = [strata]
    arrays = [np.asarray(s, dtype=np.float64) for s in strata]
    if not arrays or any(a.shape[0] == 0 for a in arrays):
        return missing("an empty sample")
    point = float(statistic(arrays))
    n = min(a.shape[0] for a in arrays)
    if n < 2:
        return point_only(point, n, ONE_RUN)
    rng = np.random.default_rng(seed)
    indices = [rng.integers(0, a.shape[0], size=(reps, a.shape[0])) for a in arrays]
    stats = np.array([statistic([a[idx[r]] for a, idx in zip(arrays, indices)]) for r in range(reps)])
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return point_only(point, n, "no finite resample")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(point, float(low), float(high), n)
