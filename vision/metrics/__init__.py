"""Disentanglement metrics with disentanglement_lib's definitions and defaults.

    from darla.vision.metrics import evaluate
    scores = evaluate(model.encode, Sprites(), metrics=["mig", "factor_vae"], seed=0)

`encode` maps a uint8 batch (n, H, W, C) to an (n, D) array (numpy or torch). Every metric is
deterministic for a seed, and the same seed gives the same number whether one metric or all
are computed. Point counts default to disentanglement_lib's; `point_scale` shrinks the default
counts (for smoke runs and tests); `params={"mig": {"num_bins": 10}}` overrides single
parameters, and explicit counts there are used as given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from darla.errors import ConfigError
from darla.vision.metrics import beta_vae, dci, factor_vae, mig, modularity, sap  # noqa: F401 (register)
from darla.vision.metrics.base import (
    METRICS,
    Encode,
    GroundTruth,
    Metric,
    MetricParams,
    Sampler,
    adapt_observations,
    check_ground_truth,
)

__all__ = [
    "METRICS",
    "Encode",
    "GroundTruth",
    "Metric",
    "MetricParams",
    "Sampler",
    "adapt_observations",
    "check_ground_truth",
    "evaluate",
    "metric_names",
    "primary_scores",
]

logger = logging.getLogger(__name__)


def metric_names() -> list[str]:
    return METRICS.names()


def resolve_params(
    metrics: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None, point_scale: float
) -> dict[str, MetricParams]:
    """Validated parameters per metric: defaults scaled by `point_scale`, then `params` overrides
    (explicit counts are taken as given, not scaled)."""
    if point_scale <= 0:
        raise ConfigError(f"point_scale must be > 0, got {point_scale}")
    params = dict(params or {})
    for name, values in params.items():
        if not isinstance(values, Mapping):
            METRICS.get(name)
            raise ConfigError(
                f"parameters of metric {name!r} must be a mapping like {{num_train: 1000}}, got {values!r}"
            )
    # every given override is checked (unknown metric or key -> error), even for metrics not
    # computed now, so one params mapping can serve several runs
    built = {
        name: METRICS.get(name).params.build(params.get(name), f"metric {name}")
        for name in {*params, *metrics}
    }
    return {name: built[name].scaled(point_scale, keep=params.get(name, {}).keys()) for name in metrics}


def evaluate(
    encode: Encode,
    dataset: GroundTruth,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    point_scale: float = 1.0,
    batch_size: int = 256,
) -> dict[str, float]:
    """Score a representation on a ground-truth dataset: {key: value} of the chosen metrics.

    metrics: names from `metric_names()` (default: all). Keys are the metric name for its
    headline value ('beta_vae', 'factor_vae', 'mig', 'sap', 'modularity', 'explicitness',
    'dci.disentanglement', 'dci.completeness', 'dci.informativeness') plus details
    ('mig.<factor>', '<metric>.train', 'factor_vae.active_dims').
    """
    names = list(metrics) if metrics else metric_names()
    if not names:
        raise ConfigError(f"no metric selected. Valid choices: {', '.join(metric_names())}")
    for name in names:
        METRICS.get(name)
    if len(set(names)) != len(names):
        raise ConfigError(f"metric names repeated: {names}")
    resolved = resolve_params(names, params, point_scale)
    sampler = Sampler(encode, check_ground_truth(dataset), seed=seed, batch_size=batch_size)
    scores: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        before = sampler.encoded
        result = METRICS.get(name).compute(sampler, resolved[name])
        logger.info(
            "%s: %s (%.1fs, %d images encoded)",
            name,
            ", ".join(f"{k}={v:.3f}" for k, v in result.items() if "." not in k or k.startswith("dci")),
            time.perf_counter() - start,
            sampler.encoded - before,
        )
        scores.update(result)
    return scores


def primary_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """Only the headline numbers (what a results table shows)."""
    keys = {m.primary for _, m in METRICS.items()} | {
        "explicitness",
        "dci.completeness",
        "dci.informativeness",
    }
    return {k: v for k, v in scores.items() if k in keys}
