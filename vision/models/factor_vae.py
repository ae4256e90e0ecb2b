"""FactorVAE (Kim & Mnih 2018): VAE + gamma * TC, the TC estimated by a discriminator.

The discriminator learns to tell q(z) samples from samples whose dimensions were permuted
independently across a *second* minibatch (an approximation of prod_j q(z_j)). It trains on
detached codes with its own optimiser, so its gradients never reach the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from darla.errors import ConfigError
from darla.vision.base import MODELS, ModelConfig, OptimSpec, apply_step, gaussian_kl, reparameterize
from darla.vision.models.vae import GaussianVAE, Terms


@dataclass
class FactorVAEConfig(ModelConfig):
    """FactorVAE: reconstruction + KL + gamma * discriminator TC estimate."""

    gamma: float = 10.0
    """Weight of the total correlation estimate."""
    disc_hidden: int = 1000
    """Width of the discriminator MLP (paper: 1000)."""
    disc_layers: int = 6
    """Hidden layers of the discriminator MLP (paper: 6)."""
    disc_lr: float | None = None
    """Learning rate of the discriminator's Adam (betas 0.5, 0.9 as in the paper); None: the VAE's
    (training) rate, as in disentanglement_lib (1e-4 for both), so that raising the VAE's rate
    does not leave the discriminator's TC estimate behind the encoder."""

    def validate(self) -> None:
        super().validate()
        if self.disc_hidden < 1 or self.disc_layers < 1 or (self.disc_lr is not None and self.disc_lr <= 0):
            raise ConfigError(
                "disc_hidden, disc_layers must be >= 1 and disc_lr > 0 (or None); got "
                f"{self.disc_hidden}, {self.disc_layers}, {self.disc_lr}"
            )


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Shuffle each latent dimension independently across the batch (samples of prod_j q(z_j))."""
    idx = torch.argsort(torch.rand_like(z), dim=0)
    return z.gather(0, idx)


@MODELS.register("factor_vae")
class FactorVAE(GaussianVAE):
    name = "factor_vae"
    config_cls = FactorVAEConfig
    config: FactorVAEConfig
    batches_per_step = 2

    def __init__(self, config: FactorVAEConfig, image_shape: tuple[int, int, int] = (64, 64, 3)) -> None:
        super().__init__(config, image_shape)
        layers: list[nn.Module] = []
        width = config.latent_dim
        for _ in range(config.disc_layers):
            layers += [nn.Linear(width, config.disc_hidden), nn.LeakyReLU(0.2)]
            width = config.disc_hidden
        layers.append(nn.Linear(width, 2))
        self.discriminator = nn.Sequential(*layers)

    def tc_estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Density-ratio estimate of TC: mean of log D(z) / (1 - D(z)) (logit 0 = 'from q(z)')."""
        logits = self.discriminator(z)
        return (logits[:, 0] - logits[:, 1]).mean()

    def regularizer(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, Terms]:
        kl = gaussian_kl(mu, logvar).sum(1).mean()
        tc = self.tc_estimate(z)
        return kl + self.config.gamma * tc, {"kl": kl.detach(), "tc": tc.detach()}

    def optimizers(self) -> dict[str, OptimSpec]:
        disc = list(self.discriminator.parameters())
        ids = {id(p) for p in disc}
        main = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return {
            "main": OptimSpec(main),
            "discriminator": OptimSpec(disc, lr=self.config.disc_lr, betas=(0.5, 0.9)),
        }

    def discriminator_loss(self, z: torch.Tensor, z_other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of D on detached q(z) samples (class 0) vs permuted ones (class 1)."""
        real = self.discriminator(z.detach())
        perm = self.discriminator(permute_dims(z_other.detach()))
        zeros = torch.zeros(real.shape[0], dtype=torch.long, device=z.device)
        ones = torch.ones(perm.shape[0], dtype=torch.long, device=z.device)
        loss = 0.5 * (F.cross_entropy(real, zeros) + F.cross_entropy(perm, ones))
        acc = 0.5 * ((real.argmax(1) == 0).float().mean() + (perm.argmax(1) == 1).float().mean())
        return loss, acc.detach()

    def train_step(
        self, batch: torch.Tensor, step: int, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        """VAE step on the first minibatch, then D step against the permuted second minibatch."""
        x1, x2 = batch.chunk(2)
        loss, terms, z = self.forward_loss(x1, step)
        apply_step(optimizers["main"], loss, terms, step)
        with torch.no_grad():
            mu2, logvar2 = self.posterior(x2)
            assert logvar2 is not None
            z2 = reparameterize(mu2, logvar2)
        d_loss, acc = self.discriminator_loss(z, z2)
        apply_step(optimizers["discriminator"], d_loss, {"d_loss": d_loss.detach()}, step)
        terms.update(d_loss=d_loss.detach(), d_acc=acc)
        return terms
