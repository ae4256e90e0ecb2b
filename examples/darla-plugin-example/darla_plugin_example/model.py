"""`sparse_ae`: an autoencoder with an L1 penalty on its code, as a darla vision-model plug-in.

A zoo method is a `VisionModel` subclass with a config dataclass and a loss: the encoder, decoder,
`encode` (what the policy sees), checkpoints and figures come from darla's shared template. The
class does not register itself; the package's `darla.models` entry point does, under `name`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from darla.errors import ConfigError
from darla.vision import ModelConfig, VisionModel
from darla.vision.base import recon_loss


@dataclass
class SparseAEConfig(ModelConfig):
    """Deterministic autoencoder; the code pays `l1` nats per unit of absolute activation."""

    l1: float = 1.0
    """Weight of the code's L1 norm (summed over units, averaged over the batch) against the
    per-image reconstruction loss; 0 makes a plain autoencoder."""

    def validate(self) -> None:
        super().validate()
        if self.l1 < 0:
            raise ConfigError(f"l1 must be >= 0, got {self.l1}")


class SparseAE(VisionModel):
    """Encoder -> code -> decoder; reconstruction plus an L1 penalty that switches off unused units."""

    name = "sparse_ae"
    config_cls = SparseAEConfig
    variational = False  # the encoder's output is the code itself: `encode` returns it
    config: SparseAEConfig

    def loss(self, batch: torch.Tensor, step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        code, _ = self.posterior(batch)
        recon = recon_loss(self.decode_logits(code), batch, self.config.recon)
        sparsity = code.abs().sum(1).mean()
        total = recon + self.config.l1 * sparsity
        return total, {"loss": total.detach(), "recon": recon.detach(), "l1": sparsity.detach()}
