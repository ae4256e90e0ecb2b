"""DARLA's beta-VAE_DAE: a beta-VAE whose reconstruction is measured in a frozen DAE's features.

Loss: || J(x_hat) - J(x) ||^2 (summed per image) + beta * KL, where J is the pretrained DAE up to
a chosen layer, applied to the beta-VAE's reconstruction x_hat and to the clean input x. The DAE
is a frozen submodule: no gradients, no optimiser, always in eval mode, saved with the model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from darla.config import from_dict, to_dict
from darla.errors import ConfigError
from darla.registry import unknown_name_message
from darla.vision.base import MODELS, Upstream, VisionModel, recon_loss
from darla.vision.models.dae import DAE, DAEConfig
from darla.vision.models.vae import BetaVAE, BetaVAEConfig


@dataclass
class BetaVAEDAEConfig(BetaVAEConfig):
    """beta-VAE_DAE (DARLA): reconstruction error in the feature space of a frozen DAE."""

    beta: float = 1.0
    """Weight of the KL term."""
    dae_layer: str = "out"
    """DAE layer J is taken at (pre-activation): conv0.., fc, latent, dec_fc, dec_fc2, deconv0.., out
    (DARLA: the last decoder layer, 'out')."""
    pixel_weight: float = 0.0
    """Weight of an extra pixel-space reconstruction term (0 = DARLA's pure DAE-space loss); a
    small value pins down pixels the DAE's features ignore, which an undertrained DAE has many of."""
    dae_from: str = ""
    """The trained DAE J comes from: a see folder, or empty for the experiment's own `dae` (trained
    first, with `model_params.dae` and `model_train.dae`)."""
    dae: dict[str, Any] = field(default_factory=dict)
    """Config of the DAE (its fields); filled in from the pretrained DAE that is attached."""

    def validate(self) -> None:
        super().validate()
        if self.pixel_weight < 0:
            raise ConfigError(f"pixel_weight must be >= 0, got {self.pixel_weight}")


@MODELS.register("beta_vae_dae")
class BetaVAEDAE(BetaVAE):
    name = "beta_vae_dae"
    config_cls = BetaVAEDAEConfig
    config: BetaVAEDAEConfig
    upstream = (
        Upstream(
            "dae_from",
            "a denoising autoencoder whose layers J can be read (a dae)",
            lambda model: isinstance(model, DAE),
            default="dae",
        ),
    )

    def __init__(self, config: BetaVAEDAEConfig, image_shape: tuple[int, int, int] = (64, 64, 3)) -> None:
        super().__init__(config, image_shape)
        dae_cfg = from_dict(DAEConfig, config.dae, where="dae")
        self.dae: DAE = DAE(dae_cfg, self.image_shape)
        names = self.dae.layer_names()
        if config.dae_layer not in names:
            raise ConfigError(unknown_name_message("dae_layer", config.dae_layer, names))
        self._freeze_dae()

    def _freeze_dae(self) -> None:
        self.dae.requires_grad_(False)
        self.dae.eval()

    def attach(self, field: str, model: VisionModel) -> None:
        self.attach_dae(model)

    def attach_dae(self, dae: VisionModel) -> None:
        """Use a pretrained DAE as J (copied and frozen); its config is recorded in ours."""
        if not isinstance(dae, DAE):
            raise ConfigError(f"beta_vae_dae needs a trained 'dae' model, got {dae.name!r}")
        if dae.image_shape != self.image_shape:
            raise ConfigError(
                f"DAE image shape {dae.image_shape} differs from the model's {self.image_shape}"
            )
        self.dae = copy.deepcopy(dae).to(self.device)
        self.config.dae = to_dict(dae.config)
        self._freeze_dae()

    def train(self, mode: bool = True) -> BetaVAEDAE:
        super().train(mode)
        self.dae.eval()
        return self

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        layer = self.config.dae_layer
        with torch.no_grad():
            target = self.dae.layer_output(x, layer)
        pred = self.dae.layer_output(torch.sigmoid(logits), layer)
        loss = (pred - target).pow(2).sum() / x.shape[0]
        if self.config.pixel_weight:
            loss = loss + self.config.pixel_weight * recon_loss(logits, x, self.config.recon)
        return loss
