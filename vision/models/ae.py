"""Plain autoencoder: the unregularised baseline of DARLA's comparison."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from darla.vision.base import MODELS, ModelConfig, VisionModel, recon_loss


@dataclass
class AEConfig(ModelConfig):
    """Autoencoder: deterministic code, reconstruction loss only."""


@MODELS.register("ae")
class AE(VisionModel):
    """Deterministic encoder -> code -> decoder, trained on reconstruction alone."""

    name = "ae"
    config_cls = AEConfig
    variational = False

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """Input noise applied before encoding during training (none for a plain AE)."""
        return x

    def loss(self, batch: torch.Tensor, step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        code, _ = self.posterior(self.corrupt(batch))
        rec = recon_loss(self.decode_logits(code), batch, self.config.recon)
        return rec, {"loss": rec.detach(), "recon": rec.detach()}
