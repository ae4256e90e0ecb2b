"""Modularity and explicitness (Ridgeway & Mozer 2018), as in disentanglement_lib's
`modularity_explicitness.py`.

Modularity: from the (D, K) mutual information of the binned latents with the factors, each
latent should carry information about one factor only (1 - normalised spread of its squared
MI beyond the top factor). Explicitness: a logistic regression on the standardised code
predicts each factor; the score is the mean one-vs-rest ROC AUC on test data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from darla.vision.metrics.base import (
    MetricParams,
    Sampler,
    discretize,
    informative_factors,
    mutual_info_matrix,
    register_metric,
    require_sklearn,
    standardize,
)


@dataclass(frozen=True)
class ModularityParams(MetricParams):
    num_train: int = 10000
    """Samples for the mutual information and the explicitness classifiers."""
    num_test: int = 5000
    """Test samples of explicitness."""
    num_bins: int = 20
    """Equal-width histogram bins per latent."""


def modularity(mi: np.ndarray) -> float:
    """Mean over latents of 1 - (sum of squared MI except the top) / (top * (K - 1))."""
    sq = np.square(mi)
    top = sq.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (sq.sum(axis=1) - top) / (top * (sq.shape[1] - 1.0))
    score = np.where(top == 0.0, 0.0, 1.0 - delta)
    return float(np.mean(score))


def mean_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present as both positives and negatives."""
    from sklearn.metrics import roc_auc_score

    aucs = []
    for j, c in enumerate(classes):
        positive = y == c
        if 0 < positive.sum() < len(y):
            aucs.append(roc_auc_score(positive, proba[:, j]))
    return float(np.mean(aucs)) if aucs else 0.5


def explicitness(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> tuple[float, float]:
    """(train, test) mean ROC AUC of a logistic regression per factor on the standardised code."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x_train, x_test = standardize(x_train, x_test)
    train, test = [], []
    for k in informative_factors(y_train):
        clf = LogisticRegression(max_iter=1000, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x_train, y_train[:, k])
        train.append(mean_auc(y_train[:, k], clf.predict_proba(x_train), clf.classes_))
        test.append(mean_auc(y_test[:, k], clf.predict_proba(x_test), clf.classes_))
    return float(np.mean(train)), float(np.mean(test))


@register_metric("modularity", ModularityParams, primary="modularity")
def modularity_metric(sampler: Sampler, params: ModularityParams) -> dict[str, float]:
    require_sklearn("modularity")
    x_train, y_train = sampler.factor_code(params.num_train, "train")
    x_test, y_test = sampler.factor_code(params.num_test, "test")
    varying = informative_factors(y_train)
    mi = mutual_info_matrix(discretize(x_train, params.num_bins), y_train[:, varying])
    train_auc, test_auc = explicitness(x_train, y_train, x_test, y_test, sampler.seed_for("explicitness"))
    return {"modularity": modularity(mi), "explicitness": test_auc, "explicitness.train": train_auc}
