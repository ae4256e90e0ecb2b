"""beta-VAE metric (Higgins et al. 2017), as in disentanglement_lib's `beta_vae.py`.

A training point is a batch of `batch_size` pairs of images that share one randomly chosen
factor; its feature is the mean absolute difference of the pair codes. A linear classifier
predicts which factor was shared; the score is its accuracy on fresh points (chance = 1/K).
Deviation: the features are standardised before the (L2-regularised) logistic regression so
that rescaling a latent dimension does not change the score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darla.vision.metrics.base import MetricParams, Sampler, register_metric, require_sklearn, standardize


@dataclass(frozen=True)
class BetaVAEParams(MetricParams):
    batch_size: int = 64
    """Pairs averaged into one training point."""
    num_train: int = 10000
    """Training points for the classifier."""
    num_eval: int = 5000
    """Evaluation points."""


def pair_features(
    sampler: Sampler, num_points: int, batch_size: int, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """(features (num_points, D), index of the shared factor (num_points,))."""
    k = len(sampler.factor_sizes)
    rng = sampler.rng("beta_vae", split, "index")
    index = rng.choice(sampler.varying_factors, size=num_points)
    f1 = sampler.sample_factors(num_points * batch_size, "beta_vae", split, 1).reshape(
        num_points, batch_size, k
    )
    f2 = sampler.sample_factors(num_points * batch_size, "beta_vae", split, 2).reshape(
        num_points, batch_size, k
    )
    rows = np.arange(num_points)[:, None]
    cols = np.arange(batch_size)[None, :]
    f2[rows, cols, index[:, None]] = f1[rows, cols, index[:, None]]
    z1 = sampler.encode_factors(f1.reshape(-1, k), "beta_vae", split, 1)
    z2 = sampler.encode_factors(f2.reshape(-1, k), "beta_vae", split, 2)
    diff = np.abs(z1 - z2).reshape(num_points, batch_size, -1).mean(axis=1)
    return diff, index


@register_metric("beta_vae", BetaVAEParams, primary="beta_vae")
def beta_vae_metric(sampler: Sampler, params: BetaVAEParams) -> dict[str, float]:
    require_sklearn("beta_vae")
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = pair_features(sampler, params.num_train, params.batch_size, "train")
    x_eval, y_eval = pair_features(sampler, params.num_eval, params.batch_size, "eval")
    x_train, x_eval = standardize(x_train, x_eval)
    if len(np.unique(y_train)) < 2:  # too few points to see two factors: nothing to learn
        return {"beta_vae": float(np.mean(y_eval == y_train[0])), "beta_vae.train": 1.0}
    model = LogisticRegression(max_iter=1000, random_state=sampler.seed_for("beta_vae", "model"))
    model.fit(x_train, y_train)
    return {
        "beta_vae": float(model.score(x_eval, y_eval)),
        "beta_vae.train": float(model.score(x_train, y_train)),
    }
