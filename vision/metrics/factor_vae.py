"""FactorVAE metric (Kim & Mnih 2018), as in disentanglement_lib's `factor_vae.py`.

Each latent is normalised by its standard deviation over the data; in a batch where one factor
is fixed, the dimension with the smallest normalised variance votes for that factor. A
majority-vote classifier (latent -> factor) is fitted on training votes and scored on fresh
ones. Collapsed dimensions (std below `prune_std`, as Kim & Mnih prune dimensions that
collapsed to the prior) take no part; disentanglement_lib's default threshold is 0 (none pruned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darla.vision.metrics.base import MetricParams, Sampler, register_metric


@dataclass(frozen=True)
class FactorVAEParams(MetricParams):
    batch_size: int = 64
    """Samples per batch with one fixed factor."""
    num_train: int = 10000
    """Training votes."""
    num_eval: int = 5000
    """Evaluation votes."""
    num_variance_estimate: int = 10000
    """Samples used to estimate each latent's global variance."""
    prune_std: float = 0.05
    """Dimensions whose global std is below this are collapsed and ignored (units of the code)."""


def votes(
    sampler: Sampler,
    params: FactorVAEParams,
    num_points: int,
    split: str,
    scale: np.ndarray,
    active: np.ndarray,
) -> np.ndarray:
    """Vote counts (K factors, A active latents)."""
    k = len(sampler.factor_sizes)
    b = params.batch_size
    index = sampler.rng("factor_vae", split, "index").choice(sampler.varying_factors, size=num_points)
    factors = sampler.sample_factors(num_points * b, "factor_vae", split).reshape(num_points, b, k)
    rows = np.arange(num_points)
    factors[rows[:, None], np.arange(b)[None, :], index[:, None]] = factors[rows, 0, index][:, None]
    codes = sampler.encode_factors(factors.reshape(-1, k), "factor_vae", split).reshape(num_points, b, -1)
    local = codes[:, :, active].var(axis=1, ddof=1) / scale[active] ** 2
    argmin = np.argmin(local, axis=1)
    counts = np.zeros((k, int(active.sum())), dtype=np.int64)
    np.add.at(counts, (index, argmin), 1)
    return counts


@register_metric("factor_vae", FactorVAEParams, primary="factor_vae")
def factor_vae_metric(sampler: Sampler, params: FactorVAEParams) -> dict[str, float]:
    factors = sampler.sample_factors(params.num_variance_estimate, "factor_vae", "variance")
    codes = sampler.encode_factors(factors, "factor_vae", "variance")
    scale = codes.std(axis=0, ddof=1)
    active = scale > params.prune_std
    if not active.any():
        return {"factor_vae": 0.0, "factor_vae.train": 0.0, "factor_vae.active_dims": 0.0}
    train = votes(sampler, params, params.num_train, "train", scale, active)
    evals = votes(sampler, params, params.num_eval, "eval", scale, active)
    classifier = np.argmax(train, axis=0)  # latent -> factor it votes for most
    cols = np.arange(train.shape[1])
    return {
        "factor_vae": float(evals[classifier, cols].sum() / evals.sum()),
        "factor_vae.train": float(train[classifier, cols].sum() / train.sum()),
        "factor_vae.active_dims": float(active.sum()),
    }
