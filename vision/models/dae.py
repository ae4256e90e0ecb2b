"""Denoising autoencoder with masking noise (random occluding rectangles), as in DARLA."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from darla.errors import ConfigError
from darla.vision.base import MODELS
from darla.vision.models.ae import AE, AEConfig


@dataclass
class DAEConfig(AEConfig):
    """Denoising autoencoder: reconstruct the clean frame from one with occluded rectangles."""

    mask_rects: int = 3
    """Rectangles drawn per image (each one independently kept with probability mask_prob)."""
    mask_prob: float = 0.8
    """Probability that each rectangle is drawn."""
    mask_min: float = 0.1
    """Smallest rectangle side, as a fraction of the image side."""
    mask_max: float = 0.4
    """Largest rectangle side, as a fraction of the image side."""
    mask_value: float = 0.0
    """Intensity the occluded pixels are set to (0 = black)."""

    def validate(self) -> None:
        super().validate()
        if self.mask_rects < 0:
            raise ConfigError(f"mask_rects must be >= 0, got {self.mask_rects}")
        if not 0.0 < self.mask_min <= self.mask_max <= 1.0:
            raise ConfigError(
                f"need 0 < mask_min <= mask_max <= 1, got mask_min={self.mask_min}, mask_max={self.mask_max}"
            )
        if not 0.0 <= self.mask_prob <= 1.0:
            raise ConfigError(f"mask_prob must be in [0, 1], got {self.mask_prob}")


def occlusion_mask(
    n: int, h: int, w: int, cfg: DAEConfig, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, 1, h, w) bool: True where a random rectangle occludes the image."""
    k = cfg.mask_rects
    if k == 0:
        return torch.zeros(n, 1, h, w, dtype=torch.bool, device=device)
    r = torch.rand(n, k, 5, device=device, generator=generator)
    span = cfg.mask_max - cfg.mask_min
    rh = ((cfg.mask_min + span * r[..., 0]) * h).clamp(min=1)
    rw = ((cfg.mask_min + span * r[..., 1]) * w).clamp(min=1)
    y0 = r[..., 2] * (h - rh)
    x0 = r[..., 3] * (w - rw)
    on = r[..., 4] < cfg.mask_prob
    ys = torch.arange(h, device=device).view(1, 1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, 1, w)
    inside = (
        (ys >= y0[..., None, None])
        & (ys < (y0 + rh)[..., None, None])
        & (xs >= x0[..., None, None])
        & (xs < (x0 + rw)[..., None, None])
        & on[..., None, None]
    )
    return inside.any(dim=1, keepdim=True)


@MODELS.register("dae")
class DAE(AE):
    """An autoencoder trained to undo masking noise; its layers are DARLA's feature map J."""

    name = "dae"
    config_cls = DAEConfig
    config: DAEConfig

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        mask = occlusion_mask(n, h, w, self.config, x.device)
        return x.masked_fill(mask, self.config.mask_value)
