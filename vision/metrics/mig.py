"""Mutual Information Gap (Chen et al. 2018), as in disentanglement_lib's `mig.py`.

Each latent is discretised into `num_bins` equal-width bins over `num_train` samples; for each
factor the gap between the largest and second-largest mutual information with a latent,
divided by the factor's entropy, is averaged over factors. Constant factors (entropy 0) are
left out of the mean.

Beside the gap, `mig.top1.<factor>` is the largest normalised MI any single latent has with the
factor: a low gap with a high top-1 means the factor is encoded twice, a low gap with a low top-1
that no single latent holds much of it (it is absent, or spread over several latents, e.g. a
rotated pair). `mi_matrix` gives the whole (latents x factors) table, for figures.
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
    return np.where(h > 0, mi / np.where(h > 0, h, 1.0), np.nan)


def gap_and_top(mi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per factor of a normalised MI table: (top-1 minus top-2, top-1), each (K,)."""
    top = np.sort(mi, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    return top[0] - second, top[0]


def mig_per_factor(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Normalised MI gap of each factor, (K,); NaN for a constant factor."""
    return gap_and_top(normalised_mi(codes, factors, num_bins))[0]


def mi_matrix(sampler: Sampler, params: MIGParams | None = None) -> np.ndarray:
    """The normalised MI table (latents x factors) on the very samples MIG uses."""
    params = params or MIGParams()
    codes, factors = sampler.factor_code(params.num_train, "train")
    return normalised_mi(codes, factors, params.num_bins)


@register_metric("mig", MIGParams, primary="mig")
def mig_metric(sampler: Sampler, params: MIGParams) -> dict[str, float]:
    per_factor, top = gap_and_top(mi_matrix(sampler, params))
    out = {"mig": float(np.nanmean(per_factor))}
    for name, value, best in zip(sampler.factor_names, per_factor, top):
        if np.isfinite(value):
            out[f"mig.{name}"] = float(value)
            out[f"mig.top1.{name}"] = float(best)
    return out
