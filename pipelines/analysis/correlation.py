"""DARLA's headline claim, tested: does a more disentangled backbone transfer better?

One point per trial (a vision model x an agent seed): x = the vision model's disentanglement
score, y = the trial's transfer ratio or target return. Spearman's rank correlation (scipy's
`spearmanr`) with a seeded percentile bootstrap CI. Trials that share a vision model share its
score, so they are not independent points: the bootstrap resamples whole vision models (a
cluster bootstrap), not single points, and the interval does not pretend to more evidence than
there are models.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from darla.errors import ConfigError
from darla.pipelines.analysis.estimate import check_bootstrap, finite_or_none, format_number
from darla.pipelines.analysis.trials import TrialResult, trial_key
from darla.registry import check_choice

MIN_POINTS = 3
"""Fewer points (or independent vision models) than this leave a rank correlation undefined."""

DISENTANGLEMENT_METRICS: dict[str, str] = {
    "mig": "MIG",
    "dci.disentanglement": "DCI disentanglement",
    "factor_vae": "FactorVAE score",
    "sap": "SAP",
    "modularity": "modularity",
    "beta_vae": "beta-VAE score",
}
"""Headline keys of darla.vision.metrics (all scores in [0, 1]) and how plots name them."""


@dataclass(frozen=True)
class Outcome:
    label: str
    """axis label, with its unit"""
    value: Callable[[TrialResult], float]


OUTCOMES: dict[str, Outcome] = {
    "transfer_ratio": Outcome("transfer ratio (target / source return)", lambda t: t.transfer_ratio),
    "target_return": Outcome("target return (mean episode return)", lambda t: t.split_mean("target")),
}
"""What a trial's transfer is measured by."""


@dataclass(frozen=True)
class Correlation:
    """Spearman's rho with its bootstrap CI (NaN with a reason when undefined)."""

    rho: float
    low: float
    high: float
    n: int
    """points used"""
    clusters: int
    """independent units resampled (vision models)"""
    p_value: float
    """scipy's p-value (treats points as independent, so optimistic when models repeat)"""
    reason: str | None = None

    def format(self, digits: int = 2) -> str:
        """`rho 0.41 [-0.10, 0.80], n=12` or `rho n/a (why)`."""
        if not math.isfinite(self.rho):
            return f"rho n/a ({self.reason})" if self.reason else "rho n/a"
        text = f"rho {format_number(self.rho, digits)}"
        if math.isfinite(self.low) and math.isfinite(self.high):
            text += f" [{format_number(self.low, digits)}, {format_number(self.high, digits)}]"
        return f"{text}, n={self.n}"

    def short(self, width: int = 38) -> str:
        """For a plot title: the estimate, or 'rho n/a' and the last reason, wrapped to `width`."""
        if math.isfinite(self.rho) or not self.reason:
            return self.format()
        return textwrap.fill(f"rho n/a: {self.reason.split('; ')[-1]}", width)

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {
            "rho": finite_or_none(self.rho),
            "low": finite_or_none(self.low),
            "high": finite_or_none(self.high),
            "n": self.n,
            "clusters": self.clusters,
            "p_value": finite_or_none(self.p_value),
            "reason": self.reason,
        }


def _undefined(reason: str, n: int = 0, clusters: int = 0) -> Correlation:
    return Correlation(math.nan, math.nan, math.nan, n, clusters, math.nan, reason)


def weighted_spearman(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Spearman's rho of each resample, given as how often each point was drawn.

    `counts` is (reps, n): row r stands for the sample holding point i `counts[r, i]` times.
    Its average ranks (ties share them, as in scipy) come from counting, not sorting, so every
    resample is ranked at once; rho is then the count-weighted Pearson correlation of the ranks,
    equal to `spearmanr` of the expanded sample. NaN where x or y is constant in a resample.
    """
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum(axis=1, keepdims=True)

    def centred_ranks(v: np.ndarray) -> np.ndarray:
        below = c @ (v[None, :] < v[:, None]).T.astype(np.float64)  # drawn points below each point
        tied = c @ (v[None, :] == v[:, None]).T.astype(np.float64)  # drawn points equal to it
        r = below + (tied + 1.0) / 2.0
        return r - (c * r).sum(axis=1, keepdims=True) / total

    rx, ry = centred_ranks(x), centred_ranks(y)
    var_x, var_y = (c * rx * rx).sum(axis=1), (c * ry * ry).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (c * rx * ry).sum(axis=1) / np.sqrt(var_x * var_y)
    rho[(var_x < 1e-9) | (var_y < 1e-9)] = np.nan  # rank variance is >= ~1 unless all ties
    return np.clip(rho, -1.0, 1.0)


def cluster_counts(clusters: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, n) draw counts of each point when whole clusters (ids 0..k-1) are drawn with replacement."""
    k = int(clusters.max()) + 1
    draws = rng.integers(0, k, size=(reps, k))
    flat = (draws + k * np.arange(reps)[:, None]).ravel()
    per_cluster = np.bincount(flat, minlength=reps * k).reshape(reps, k)
    return per_cluster[:, clusters]


def spearman_ci(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    groups: Sequence[str] | np.ndarray | None = None,
) -> Correlation:
    """Spearman's rank correlation of paired values, with a seeded percentile bootstrap CI.

    The point and p-value are `scipy.stats.spearmanr(x, y)`. Pairs with a NaN/inf are dropped.
    `groups` labels points that are not independent (one label per vision model): the bootstrap
    draws whole groups. Undefined (NaN, with a reason) below 3 points or when x or y is constant.
    """
    check_bootstrap(reps, level)
    xa = np.asarray(x, dtype=np.float64).ravel()
    ya = np.asarray(y, dtype=np.float64).ravel()
    if xa.shape != ya.shape:
        raise ConfigError(f"spearman_ci needs paired values, got {xa.size} x and {ya.size} y")
    ga = np.arange(xa.size).astype(str) if groups is None else np.asarray(groups).astype(str).ravel()
    if ga.shape != xa.shape:
        raise ConfigError(f"spearman_ci: {ga.size} group labels for {xa.size} points")
    notes: list[str] = []
    keep = np.isfinite(xa) & np.isfinite(ya)
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} of {xa.size} points with a NaN/inf value")
    xa, ya, ga = xa[keep], ya[keep], ga[keep]
    n, clusters = int(xa.size), int(np.unique(ga).size)
    if n < MIN_POINTS:
        return _undefined("; ".join([*notes, f"{n} point(s): need at least {MIN_POINTS}"]), n, clusters)
    for name, values in (("x", xa), ("y", ya)):
        if np.all(values == values[0]):
            return _undefined("; ".join([*notes, f"{name} is constant: ranks carry no order"]), n, clusters)
    from scipy.stats import spearmanr

    result = spearmanr(xa, ya)
    rho, p_value = float(result.statistic), float(result.pvalue)
    if clusters < MIN_POINTS:
        notes.append(f"{clusters} independent group(s): need at least {MIN_POINTS} for an interval")
        return Correlation(rho, math.nan, math.nan, n, clusters, p_value, "; ".join(notes))
    # cluster ids: each point its own unless grouped (np.unique numbers the labels in sorted order)
    ids = np.arange(n) if groups is None else np.unique(ga, return_inverse=True)[1].ravel()
    stats = weighted_spearman(xa, ya, cluster_counts(ids, reps, np.random.default_rng(seed)))
    finite = stats[np.isfinite(stats)]
    if finite.size < reps:
        notes.append(f"{reps - finite.size} of {reps} resamples were constant and left out")
    if finite.size < reps / 2:
        notes.append("too few usable resamples for an interval")
        return Correlation(rho, math.nan, math.nan, n, clusters, p_value, "; ".join(notes))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return Correlation(rho, float(low), float(high), n, clusters, p_value, "; ".join(notes) or None)


@dataclass(frozen=True)
class Points:
    """The scatter behind one correlation."""

    x: np.ndarray
    y: np.ndarray
    groups: tuple[str, ...]
    """vision model of each point (the bootstrap's clusters)"""
    backbones: tuple[str, ...]
    """vision backbone of each point (the plot's colours)"""


def correlation_points(
    trials: Sequence[TrialResult], metric: str, outcome: str, modes: Sequence[str] = ("frozen",)
) -> Points:
    """One point per trial of the given modes whose vision model has a score for `metric`."""
    check_choice("outcome", outcome, tuple(OUTCOMES))
    chosen = [
        t
        for t in sorted(trials, key=trial_key)
        if t.mode in modes and t.disentanglement is not None and metric in t.disentanglement
    ]
    return Points(
        x=np.array([float(t.disentanglement[metric]) for t in chosen if t.disentanglement], dtype=np.float64),
        y=np.array([OUTCOMES[outcome].value(t) for t in chosen], dtype=np.float64),
        groups=tuple(t.see_model for t in chosen),
        backbones=tuple(t.vision for t in chosen),
    )


@dataclass(frozen=True)
class DisentanglementTransfer:
    """Every (metric, outcome) correlation and its points."""

    metrics: tuple[str, ...]
    outcomes: tuple[str, ...]
    correlations: Mapping[tuple[str, str], Correlation]
    points: Mapping[tuple[str, str], Points]
    modes: tuple[str, ...]


def available_metrics(trials: Sequence[TrialResult]) -> tuple[str, ...]:
    """Headline disentanglement scores some trial carries, in DISENTANGLEMENT_METRICS order."""
    present = {k for t in trials for k in (t.disentanglement or {})}
    return tuple(m for m in DISENTANGLEMENT_METRICS if m in present)


def disentanglement_vs_transfer(
    trials: Sequence[TrialResult],
    *,
    metrics: Sequence[str] | None = None,
    outcomes: Sequence[str] = ("transfer_ratio", "target_return"),
    modes: Sequence[str] = ("frozen",),
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> DisentanglementTransfer:
    """Spearman's rho of every disentanglement score against every transfer outcome.

    `modes` defaults to frozen policies only: a fine-tuned encoder is no longer the model the
    scores describe, and pixel agents have no vision model.
    """
    present = {k for t in trials for k in (t.disentanglement or {})}
    chosen = available_metrics(trials) if metrics is None else tuple(metrics)
    for m in chosen:  # a known score no trial carries is reported as missing, a typo is an error
        check_choice("disentanglement metric", m, sorted(present | set(DISENTANGLEMENT_METRICS)))
    for o in outcomes:
        check_choice("outcome", o, tuple(OUTCOMES))
    correlations: dict[tuple[str, str], Correlation] = {}
    points: dict[tuple[str, str], Points] = {}
    for m in chosen:
        for o in outcomes:
            pts = correlation_points(trials, m, o, modes)
            points[(m, o)] = pts
            correlations[(m, o)] = (
                spearman_ci(pts.x, pts.y, reps=reps, level=level, seed=seed, groups=pts.groups)
                if m in present
                else _undefined(f"no trial carries {m!r}: score the vision models (darla evaluate)")
            )
    return DisentanglementTransfer(chosen, tuple(outcomes), correlations, points, tuple(modes))
