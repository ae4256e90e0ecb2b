"""Separated Attribute Predictability (Kumar et al. 2018), as in disentanglement_lib's `sap_score.py`.

For discrete factors, a linear SVM (C=0.01, balanced classes) predicts each factor from each
single latent; the score matrix holds test accuracies, and SAP is the mean over factors of
the gap between the two most predictive latents. Deviation: each latent is standardised first
(with training statistics) so that the regularised SVM does not depend on its units.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from darla.vision.metrics.base import (
    MetricParams,
    Sampler,
    informative_factors,
    register_metric,
    require_sklearn,
    standardize,
)


@dataclass(frozen=True)
class SAPParams(MetricParams):
    num_train: int = 10000
    """Training samples of the per-latent classifiers."""
    num_test: int = 5000
    """Test samples that fill the score matrix."""


def sap_score_matrix(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Test accuracy of predicting factor k from latent d alone, (D, K)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    x_train, x_test = standardize(x_train, x_test)
    matrix = np.zeros((x_train.shape[1], y_train.shape[1]))
    for k in informative_factors(y_train):
        for d in range(x_train.shape[1]):
            clf = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(x_train[:, d : d + 1], y_train[:, k])
            matrix[d, k] = np.mean(clf.predict(x_test[:, d : d + 1]) == y_test[:, k])
    return matrix


@register_metric("sap", SAPParams, primary="sap")
def sap_metric(sampler: Sampler, params: SAPParams) -> dict[str, float]:
    require_sklearn("sap")
    x_train, y_train = sampler.factor_code(params.num_train, "train")
    x_test, y_test = sampler.factor_code(params.num_test, "test")
    matrix = sap_score_matrix(x_train, y_train, x_test, y_test, sampler.seed_for("sap"))
    factors = informative_factors(y_train)
    top = np.sort(matrix[:, factors], axis=0)
    gap = top[-1] - top[-2] if len(top) > 1 else top[-1]
    return {"sap": float(np.mean(gap))}
