"""Shared machinery of the disentanglement metrics: sampling, encoding, discretising, MI.

Every metric draws ground-truth factors with a seeded rng, renders them with the dataset,
and encodes the images in chunks. `Sampler` hides the chunking, checks what `encode`
returns (shape, NaNs), and caches the plain (codes, factors) samples that MIG, SAP, DCI and
modularity share, so asking for one metric or all of them gives the same numbers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from darla.config import from_dict
from darla.envs.ground_truth import GroundTruth
from darla.errors import ConfigError, TrainingError
from darla.registry import Registry
from darla.seeding import derive_seed, make_rng

logger = logging.getLogger(__name__)

Encode = Callable[[np.ndarray], Any]
"""uint8 observations (n, H, W, C) -> codes (n, D) (numpy array or torch tensor)."""


REQUIRED_ATTRS = ("factor_names", "factor_sizes", "sample_factors", "sample_observations_from_factors")


def check_ground_truth(dataset: object) -> GroundTruth:
    """Return `dataset` if it has ground-truth factors, else a ConfigError saying what is missing."""
    missing = [a for a in REQUIRED_ATTRS if not hasattr(dataset, a)]
    if missing:
        raise ConfigError(
            f"dataset {type(dataset).__name__} has no ground-truth factors (missing {', '.join(missing)}); "
            "disentanglement metrics need a GroundTruth dataset such as darla.envs.sprites.Sprites "
            "or darla.envs.get_family(name).ground_truth()"
        )
    names = tuple(dataset.factor_names)  # type: ignore[attr-defined]
    sizes = tuple(int(s) for s in dataset.factor_sizes)  # type: ignore[attr-defined]
    if not names or len(names) != len(sizes):
        raise ConfigError(
            f"dataset {type(dataset).__name__}: factor_names {names} do not match sizes {sizes}"
        )
    if not any(s > 1 for s in sizes):
        raise ConfigError(f"dataset {type(dataset).__name__}: every factor is constant (sizes {sizes})")
    return dataset


def to_numpy_codes(out: Any, n: int, expected_dim: int | None = None) -> np.ndarray:
    """Check one `encode` result: (n, D), finite; torch tensors are moved to numpy float64."""
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    codes = np.asarray(out)
    if codes.ndim != 2 or codes.shape[0] != n:
        raise ConfigError(
            f"encode returned an array of shape {codes.shape} for a batch of {n} observations; "
            f"expected ({n}, D)"
        )
    if expected_dim is not None and codes.shape[1] != expected_dim:
        raise ConfigError(
            f"encode returned {codes.shape[1]} dimensions, but {expected_dim} on an earlier batch"
        )
    if not np.issubdtype(codes.dtype, np.number) or np.issubdtype(codes.dtype, np.complexfloating):
        raise ConfigError(f"encode returned dtype {codes.dtype}; expected real numbers")
    codes = codes.astype(np.float64, copy=False)
    finite = np.isfinite(codes)
    if not finite.all():
        bad = int((~finite).sum())
        raise TrainingError(
            f"encode returned {bad} NaN/inf values out of {codes.size} (has the model diverged?)"
        )
    return codes


def adapt_observations(obs: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Make dataset images fit a model's input shape: grey -> RGB, integer-factor downsampling.

    Lets a 64x64x3 (or 32x32x3) model be scored on binary 64x64x1 sprites.
    """
    h, w, c = shape
    if obs.shape[1:] == (h, w, c):
        return obs
    n, oh, ow, oc = obs.shape
    if oc != c:
        if oc == 1:
            obs = np.repeat(obs, c, axis=3)
        elif c == 1:
            obs = obs.mean(axis=3, keepdims=True).round().astype(np.uint8)
        else:
            raise ConfigError(f"cannot adapt {oc}-channel observations to a {c}-channel model")
    if (oh, ow) != (h, w):
        if oh % h or ow % w or oh // h != ow // w:
            raise ConfigError(
                f"cannot adapt {oh}x{ow} observations to a {h}x{w} model (needs an integer downsampling factor)"
            )
        f = oh // h
        pooled = obs.reshape(n, h, f, w, f, c).astype(np.float32).mean(axis=(2, 4))
        obs = pooled.round().astype(np.uint8)
    return obs


class Sampler:
    """Draws factors, renders and encodes them in chunks; all randomness derives from `seed`."""

    def __init__(self, encode: Encode, dataset: GroundTruth, seed: int = 0, batch_size: int = 256) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.encode_fn = encode
        self.dataset = check_ground_truth(dataset)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.code_dim: int | None = None
        self.encoded = 0
        self._cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def factor_names(self) -> tuple[str, ...]:
        return tuple(self.dataset.factor_names)

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.dataset.factor_sizes)

    @property
    def varying_factors(self) -> np.ndarray:
        """Indices of the factors that take more than one value (constant ones carry no signal)."""
        return np.flatnonzero(np.asarray(self.factor_sizes) > 1)

    def rng(self, *keys: object) -> np.random.Generator:
        return make_rng(self.seed, "metrics", *keys)

    def seed_for(self, *keys: object) -> int:
        return derive_seed(self.seed, "metrics", *keys)

    def sample_factors(self, n: int, *keys: object) -> np.ndarray:
        factors = np.asarray(self.dataset.sample_factors(int(n), self.rng("factors", *keys)), dtype=np.int64)
        if factors.shape != (n, len(self.factor_sizes)):
            raise ConfigError(
                f"dataset.sample_factors({n}) returned shape {factors.shape}; expected ({n}, {len(self.factor_sizes)})"
            )
        return factors

    def encode_factors(self, factors: np.ndarray, *keys: object) -> np.ndarray:
        """Codes (n, D) of the images of `factors`, rendered and encoded `batch_size` at a time."""
        rng = self.rng("observations", *keys)
        n = len(factors)
        out: np.ndarray | None = None
        for start in range(0, n, self.batch_size):
            chunk = factors[start : start + self.batch_size]
            obs = self.dataset.sample_observations_from_factors(chunk, rng)
            codes = to_numpy_codes(self.encode_fn(obs), len(chunk), self.code_dim)
            if out is None:
                self.code_dim = codes.shape[1]
                out = np.empty((n, codes.shape[1]), dtype=np.float64)
            out[start : start + len(chunk)] = codes
        self.encoded += n
        if out is None:
            raise ConfigError("cannot encode an empty set of factors (number of points must be >= 1)")
        return out

    def factor_code(self, n: int, split: str) -> tuple[np.ndarray, np.ndarray]:
        """`n` i.i.d. (codes (n, D), factors (n, K)); cached per (split, n) and shared by metrics."""
        key = (split, int(n))
        if key not in self._cache:
            factors = self.sample_factors(n, "factor_code", split, n)
            self._cache[key] = (self.encode_factors(factors, "factor_code", split, n), factors)
        return self._cache[key]


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class MetricParams:
    """Base of every metric's parameters; fields named `num_*` are point counts, except those in
    `not_counts` (a histogram's bins say how a code is read, not how many points are drawn)."""

    not_counts: ClassVar[frozenset[str]] = frozenset({"num_bins"})

    def point_counts(self) -> list[str]:
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.name.startswith("num_") and f.name not in self.not_counts
        ]

    def scaled(self, scale: float, keep: Collection[str] = ()) -> MetricParams:
        """The same parameters with every point count multiplied by `scale` (at least 2), except
        the fields named in `keep` (counts a user set explicitly). Bins are never scaled: MIG on
        20 bins and on 4 are different metrics (4 bins cap a latent's information at ln 4 nats)."""
        if scale == 1.0:
            return self
        changes = {
            name: max(2, round(getattr(self, name) * scale))
            for name in self.point_counts()
            if name not in keep
        }
        return dataclasses.replace(self, **changes)

    @classmethod
    def build(cls, values: Mapping[str, Any] | None, where: str) -> MetricParams:
        params = from_dict(cls, dict(values or {}), where=where)
        for f in dataclasses.fields(params):
            if (f.name.startswith("num_") or f.name == "batch_size") and getattr(params, f.name) < 1:
                raise ConfigError(f"{where}.{f.name} must be >= 1, got {getattr(params, f.name)}")
        return params


# ----------------------------------------------------------------------------- information
def discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Per-dimension equal-width histogram bins 0..num_bins-1 (disentanglement_lib's
    `histogram_discretize`); invariant to shifting and positively rescaling a dimension."""
    lo = codes.min(axis=0)
    span = codes.max(axis=0) - lo
    safe = np.where(span > 0, span, 1.0)
    # the small epsilon puts values lying exactly on a bin edge into the upper bin regardless
    # of floating-point rounding, so rescaled codes fall into the same bins
    t = (codes - lo) / safe * num_bins + 1e-9
    bins = np.clip(np.floor(t), 0, num_bins - 1).astype(np.int64)
    bins[:, span <= 0] = 0
    return bins


def compact_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel one column of values to 0..m-1; returns the labels and m."""
    uniq, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(-1).astype(np.int64), len(uniq)


def entropy(labels: np.ndarray) -> float:
    """Entropy in nats of a discrete variable."""
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_info_matrix(binned: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Mutual information in nats between each binned code (n, D) and factor (n, K): (D, K)."""
    n, d = binned.shape
    out = np.zeros((d, factors.shape[1]))
    for k in range(factors.shape[1]):
        y, m = compact_labels(factors[:, k])
        xs = binned.max(axis=0) + 1  # (D,)
        width = int(xs.max())
        # one bincount for all D dims: joint index (dim, bin, label)
        joint_index = (np.arange(d)[None, :] * width + binned) * m + y[:, None]
        joint = np.bincount(joint_index.ravel(), minlength=d * width * m).reshape(d, width, m) / n
        px = joint.sum(axis=2, keepdims=True)
        py = joint.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = joint * (np.log(joint) - np.log(px) - np.log(py))
        out[:, k] = np.nansum(np.where(joint > 0, terms, 0.0), axis=(1, 2))
    return np.maximum(out, 0.0)


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Z-score with the train statistics (constant dims keep std 1), so linear classifiers with
    regularisation do not depend on the units of each latent."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(x - mean) / std for x in (train, *others)]


def informative_factors(factors: np.ndarray) -> list[int]:
    """Factors that take at least two values in this sample (classifiers need two classes)."""
    return [k for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1]


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Metric:
    """A registered metric: its parameters (with disentanglement_lib's defaults) and function."""

    name: str
    params: type[MetricParams]
    compute: Callable[[Sampler, Any], dict[str, float]]
    primary: str
    """The headline key of the result (e.g. 'mig', 'dci.disentanglement')."""


def check_metric(name: str, metric: Any) -> None:
    """A registered metric is a Metric under its own name with MetricParams (also for plug-ins)."""
    if not isinstance(metric, Metric):
        raise ConfigError(
            f"metric {name!r} must be a darla.vision.metrics.Metric, got {type(metric).__name__}"
        )
    if metric.name != name or not (
        isinstance(metric.params, type) and issubclass(metric.params, MetricParams)
    ):
        raise ConfigError(f"metric {name!r}: its name must match and its params must subclass MetricParams")


METRICS: Registry[Metric] = Registry("metric", group="darla.metrics", check=check_metric)
"""darla's disentanglement metrics and plug-ins from the `darla.metrics` entry points."""


def register_metric(
    name: str, params: type[MetricParams], primary: str
) -> Callable[[Callable[[Sampler, Any], dict[str, float]]], Callable[[Sampler, Any], dict[str, float]]]:
    """Decorator: register a `compute(sampler, params) -> {key: value}` function as a metric."""

    def decorator(
        fn: Callable[[Sampler, Any], dict[str, float]],
    ) -> Callable[[Sampler, Any], dict[str, float]]:
        METRICS.register(name, Metric(name, params, fn, primary))
        return fn

    return decorator


def require_sklearn(metric: str) -> None:
    """A clear error instead of an ImportError deep inside a metric."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"metric {metric!r} needs scikit-learn (pip install scikit-learn); "
            "mig and factor_vae work without it"
        ) from None
