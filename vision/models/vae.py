"""VAE and beta-VAE (Higgins et al. 2017): ELBO with the KL weighted by beta."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from darla.errors import ConfigError
from darla.vision.base import (
    MODELS,
    ModelConfig,
    VisionModel,
    gaussian_kl,
    recon_loss,
    reparameterize,
)

Terms = dict[str, torch.Tensor]


@dataclass
class VAEConfig(ModelConfig):
    """VAE: Gaussian posterior, standard normal prior, KL weight 1."""


class GaussianVAE(VisionModel):
    """Shared VAE forward pass; methods override `regularizer` (and `reconstruction`)."""

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-image summed reconstruction NLL, batch mean."""
        return recon_loss(logits, x, self.config.recon)

    def regularizer(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, Terms]:
        kl = gaussian_kl(mu, logvar).sum(1).mean()
        return kl, {"kl": kl.detach()}

    def forward_loss(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, Terms, torch.Tensor]:
        """(loss, terms, sampled z) — z is returned for methods that reuse it (FactorVAE)."""
        mu, logvar = self.posterior(batch)
        assert logvar is not None
        z = reparameterize(mu, logvar)
        rec = self.reconstruction(self.decode_logits(z), batch)
        reg, terms = self.regularizer(mu, logvar, z, step)
        total = rec + reg
        return total, {"loss": total.detach(), "recon": rec.detach(), **terms}, z

    def loss(self, batch: torch.Tensor, step: int = 0) -> tuple[torch.Tensor, Terms]:
        total, terms, _ = self.forward_loss(batch, step)
        return total, terms


@MODELS.register("vae")
class VAE(GaussianVAE):
    name = "vae"
    config_cls = VAEConfig


@dataclass
class BetaVAEConfig(ModelConfig):
    """beta-VAE: reconstruction + beta * KL(q(z|x) || N(0, I))."""

    beta: float = 4.0
    """Weight of the KL term (beta > 1 pressures towards disentangling)."""

    def validate(self) -> None:
        super().validate()
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")


@MODELS.register("beta_vae")
class BetaVAE(GaussianVAE):
    name = "beta_vae"
    config_cls = BetaVAEConfig
    config: BetaVAEConfig

    def regularizer(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, Terms]:
        kl = gaussian_kl(mu, logvar).sum(1).mean()
        return self.config.beta * kl, {"kl": kl.detach()}
