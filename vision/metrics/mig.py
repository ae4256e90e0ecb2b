"""Mutual Information Gap (Chen et al. 2018), as in disentanglement_lib's `mig.py`.

Each latent is discretised into `num_bins` equal-width bins over `num_train` samples; for each
factor the gap between the largest and second-largest mutual information with a latent,
divided by the factor's entropy, is averaged over factors. Constant factors (entropy 0) are
left out of the mean.

Beside the gap, `mig.top1.<factor>` is the largest normalised MI any single latent has with the
factor: a low gap with a high top-1 means the factor is encoded twice (or rotated across
latents), a low gap with a low top-1 means no latent holds much of it. `mi_matrix` gives the
whole (latents x factors) table, for figures.
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


def normalised_mi(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """MI of each binned latent with each factor over the factor's entropy, (D, K); NaN columns
    for constant factors."""
    mi = mutual_info_matrix(discretize(codes, num_bins), factors)
    h = np.array([entropy(factors[:, k]) for k in range(factors.shape[1])])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(h > 0, mi / np.where(h > 0, h, 1.0), np.nan)


def mig_per_factor(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Normalised MI gap of each factor, (K,); NaN for a constant factor."""
    top = np.sort(normalised_mi(codes, factors, num_bins), axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    return top[0] - second


def mi_matrix(sampler: Sampler, params: MIGParams | None = None) -> np.ndarray:
    """The normalised MI table (latents x factors) on the very samples MIG uses."""
    params = params or MIGParams()
    codes, factors = sampler.factor_code(params.num_train, "train")
    return normalised_mi(codes, factors, params.num_bins)


@register_metric("mig", MIGParams, primary="mig")
def mig_metric(sampler: Sampler, params: MIGParams) -> dict[str, float]:
    mi = mi_matrix(sampler, params)
    top = np.sort(mi, axis=0)[::-1]
    per_factor = top[0] - (top[1] if len(top) > 1 else 0.0)
    out = {"mig": float(np.nanmean(per_factor))}
    for name, value, best in zip(sampler.factor_names, per_factor, top[0]):
        if np.isfinite(value):
            out[f"mig.{name}"] = float(value)
            out[f"mig.top1.{name}"] = float(best)
    return out
