"""DCI (Eastwood & Williams 2018), as in disentanglement_lib's `dci.py`.

One gradient-boosted tree classifier (scikit-learn defaults: 100 trees of depth 3) per factor
predicts the factor from the whole code; its feature importances form the (D, K) importance
matrix. Disentanglement: 1 - entropy (base K) of each latent's importance over factors,
weighted by the latent's share of importance; completeness: the same per factor over latents
(base D); informativeness: the classifiers' test accuracy. Trees make every DCI score
invariant to rescaling a latent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

from darla.vision.metrics.base import (
    MetricParams,
    Sampler,
    informative_factors,
    register_metric,
    require_sklearn,
)


@dataclass(frozen=True)
class DCIParams(MetricParams):
    num_train: int = 10000
    """Training samples of the boosted trees."""
    num_test: int = 5000
    """Test samples (informativeness)."""


def importance_gbt(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, float, float]:
    """(importance matrix (D, K), mean train accuracy, mean test accuracy) over varying factors."""
    from sklearn.ensemble import GradientBoostingClassifier

    importance = np.zeros((x_train.shape[1], y_train.shape[1]))
    train_acc, test_acc = [], []
    for k in informative_factors(y_train):
        model = GradientBoostingClassifier(random_state=seed)
        model.fit(x_train, y_train[:, k])
        importance[:, k] = np.abs(model.feature_importances_)
        train_acc.append(np.mean(model.predict(x_train) == y_train[:, k]))
        test_acc.append(np.mean(model.predict(x_test) == y_test[:, k]))
    return importance, float(np.mean(train_acc)), float(np.mean(test_acc))


def disentanglement(importance: np.ndarray) -> float:
    """Importance-weighted mean over latents of 1 - H_K(P_d.)."""
    per_code = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    weight = importance.sum(axis=1) / importance.sum()
    return float(np.sum(per_code * weight))


def completeness(importance: np.ndarray) -> float:
    """Importance-weighted mean over factors of 1 - H_D(P_.k)."""
    per_factor = 1.0 - scipy.stats.entropy(importance + 1e-11, base=importance.shape[0])
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    weight = importance.sum(axis=0) / importance.sum()
    return float(np.sum(per_factor * weight))


@register_metric("dci", DCIParams, primary="dci.disentanglement")
def dci_metric(sampler: Sampler, params: DCIParams) -> dict[str, float]:
    require_sklearn("dci")
    x_train, y_train = sampler.factor_code(params.num_train, "train")
    x_test, y_test = sampler.factor_code(params.num_test, "test")
    importance, train_acc, test_acc = importance_gbt(
        x_train, y_train, x_test, y_test, sampler.seed_for("dci")
    )
    varying = informative_factors(y_train)
    importance = importance[:, varying]
    return {
        "dci.disentanglement": disentanglement(importance),
        "dci.completeness": completeness(importance),
        "dci.informativeness": test_acc,
        "dci.informativeness_train": train_acc,
    }
