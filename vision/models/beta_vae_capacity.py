"""beta-VAE with controlled capacity increase (Burgess et al. 2018): gamma * |KL - C(step)|."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from darla.errors import ConfigError
from darla.vision.base import MODELS, ModelConfig, gaussian_kl
from darla.vision.models.vae import GaussianVAE, Terms


@dataclass
class CapacityConfig(ModelConfig):
    """Controlled capacity: the KL is pulled towards a target C raised linearly during training."""

    gamma: float = 1000.0
    """Weight of |KL - C| (Burgess et al.: 1000)."""
    c_max: float = 25.0
    """Final capacity C in nats."""
    c_steps: int = 100_000
    """Training steps over which C rises linearly from 0 to c_max."""

    def validate(self) -> None:
        super().validate()
        if self.gamma < 0 or self.c_max < 0 or self.c_steps < 1:
            raise ConfigError(
                f"need gamma >= 0, c_max >= 0, c_steps >= 1; got {self.gamma}, {self.c_max}, {self.c_steps}"
            )


@MODELS.register("beta_vae_capacity")
class CapacityVAE(GaussianVAE):
    name = "beta_vae_capacity"
    config_cls = CapacityConfig
    config: CapacityConfig

    def capacity(self, step: int) -> float:
        """C at a training step: linear from 0 to c_max over c_steps, then constant."""
        return self.config.c_max * min(1.0, max(step, 0) / self.config.c_steps)

    def regularizer(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, Terms]:
        kl = gaussian_kl(mu, logvar).sum(1).mean()
        c = self.capacity(step)
        return self.config.gamma * (kl - c).abs(), {"kl": kl.detach(), "capacity": torch.tensor(c)}
