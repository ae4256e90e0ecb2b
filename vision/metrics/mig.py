"""Mutual Information Gap (Chen et al. 2018), as in disentanglement_lib's `mig.py`.

Each latent is discretised into `num_bins` equal-width bins over `num_train` samples; for each
factor the gap between the largest and second-largest mutual information with a latent,
divided by the factor's entropy, is averaged over factors. Constant factors (entropy 0) are
left out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darla.vision.metrics.base import (
    MetricParams,
    Sampler,
    discretize,
    entropy,
    mutual_info_matrix,
    register_metric,
)


@dataclass(frozen=True)
class MIGParams(MetricParams):
    num_train: int = 10000
    """Samples used to estimate mutual information."""
    num_bins: int = 20
    """Equal-width histogram bins per latent."""


def mig_per_factor(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Normalised MI gap of each factor, (K,); NaN for a constant factor."""
    mi = mutual_info_matrix(discretize(codes, num_bins), factors)
    top = np.sort(mi, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    h = np.array([entropy(factors[:, k]) for k in range(factors.shape[1])])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(h > 0, (top[0] - second) / h, np.nan)


@register_metric("mig", MIGParams, primary="mig")
def mig_metric(sampler: Sampler, params: MIGParams) -> dict[str, float]:
    codes, factors = sampler.factor_code(params.num_train, "train")
    per_factor = mig_per_factor(codes, factors, params.num_bins)
    out = {"mig": float(np.nanmean(per_factor))}
    for name, value in zip(sampler.factor_names, per_factor):
        if np.isfinite(value):
            out[f"mig.{name}"] = float(value)
    return out
