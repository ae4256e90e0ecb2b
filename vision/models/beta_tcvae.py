"""beta-TCVAE (Chen et al. 2018): the KL split into index-code MI, total correlation, dim-wise KL.

The aggregate posterior q(z) and its marginals are estimated on the minibatch with log-sum-exp
over a (M, M) log-weight matrix: row i says how much each batch member j counts when
estimating q(z_i). The same weights are used for the joint and for every marginal (a per-dimension
sum of the weights is a known bug of public code), and the stratified matrix is built explicitly
so each row sums to one (its mis-strided construction is the other known bug).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from darla.errors import ConfigError
from darla.vision.base import MODELS, ModelConfig, gaussian_log_density
from darla.vision.models.vae import GaussianVAE, Terms


def log_weight_matrix(batch: int, dataset_size: int, sampling: str) -> torch.Tensor:
    """(M, M) log importance weights for estimating q(z_i) from the batch.

    'mws' (minibatch-weighted sampling): every member weighs 1/M. Chen et al. print a constant
    log(N*M) instead of log(M); the extra log N only shifts the estimates by constants (no gradient
    change) and would make the reported MI/TC/dim-KL meaningless, so it is dropped here.
    'mss' (stratified): the member that generated z_i weighs 1/N (its share of the data), each of
    the M-1 others weighs (N-1)/(N(M-1)), so each row sums to one.
    """
    m, n = batch, max(dataset_size, batch)
    if sampling == "mws" or m == 1:
        return torch.full((m, m), -math.log(m))
    other = math.log(n - 1) - math.log(n) - math.log(m - 1)
    w = torch.full((m, m), other)
    w.fill_diagonal_(-math.log(n))
    return w


def tc_terms(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    dataset_size: int,
    sampling: Literal["mws", "mss"] = "mws",
) -> dict[str, torch.Tensor]:
    """Minibatch estimates of (mutual information, total correlation, dimension-wise KL).

    The three add up to the Monte Carlo estimate of KL(q(z|x) || p(z)) on the batch.
    """
    m = z.shape[0]
    # mat[i, j, d] = log q(z_i,d | x_j)
    mat = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    logw = log_weight_matrix(m, dataset_size, sampling).to(z)
    log_qz = torch.logsumexp(logw + mat.sum(2), dim=1)
    log_prod_qzi = torch.logsumexp(logw[:, :, None] + mat, dim=1).sum(1)
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(1)
    zeros = torch.zeros_like(z)
    log_pz = gaussian_log_density(z, zeros, zeros).sum(1)
    return {
        "mi": (log_qz_x - log_qz).mean(),
        "tc": (log_qz - log_prod_qzi).mean(),
        "dwkl": (log_prod_qzi - log_pz).mean(),
    }


@dataclass
class TCVAEConfig(ModelConfig):
    """beta-TCVAE: alpha * MI + beta * TC + gamma * dimension-wise KL."""

    alpha: float = 1.0
    """Weight of the index-code mutual information."""
    beta: float = 6.0
    """Weight of the total correlation (the disentangling pressure)."""
    gamma: float = 1.0
    """Weight of the dimension-wise KL."""
    sampling: Literal["mws", "mss"] = "mws"
    """Estimator of q(z): minibatch-weighted (mws) or minibatch-stratified (mss) sampling."""
    dataset_size: int = 0
    """Number of training frames N (used by 'mss'); 0 = set by the trainer."""

    def validate(self) -> None:
        super().validate()
        if self.dataset_size < 0:
            raise ConfigError(f"dataset_size must be >= 0, got {self.dataset_size}")


@MODELS.register("beta_tcvae")
class BetaTCVAE(GaussianVAE):
    name = "beta_tcvae"
    config_cls = TCVAEConfig
    config: TCVAEConfig

    def on_dataset(self, size: int) -> None:
        if self.config.dataset_size == 0:
            self.config.dataset_size = int(size)

    def regularizer(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, Terms]:
        c = self.config
        t = tc_terms(z, mu, logvar, c.dataset_size or z.shape[0], c.sampling)
        reg = c.alpha * t["mi"] + c.beta * t["tc"] + c.gamma * t["dwkl"]
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(1).mean()
        return reg, {"kl": kl.detach(), **{k: v.detach() for k, v in t.items()}}
