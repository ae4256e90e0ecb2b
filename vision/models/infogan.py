"""InfoGAN (Chen et al. 2016): a GAN whose generator input carries codes c that a head Q must recover.

The generator G is the template decoder fed [noise z, codes c] (c = categorical one-hots and
continuous codes uniform in [-1, 1]). The discriminator D is the template encoder: its conv+FC
*body* is shared by the real/fake logit and by the auxiliary head Q(c | x), which outputs
categorical logits and a Gaussian (mean, log-variance) per continuous code. The variational
lower bound of the mutual information, L_I = H(c) - E[-log Q(c | G(z, c))], is maximised by
G *and* by Q with the shared body (the discriminator-side step adds lambda * info loss on detached
fakes; the generator step adds it on live fakes). Spectral norm on D keeps CPU-scale training
stable without batch-norm.

`encode` = Q's continuous code means followed by the categorical probabilities: what the
recognition network infers about an image's codes. `decode` maps that layout (noise set to its
mean 0) back to an image.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from darla.errors import ConfigError
from darla.vision.base import (
    MODELS,
    ConvDecoder,
    ConvEncoder,
    ModelConfig,
    OptimSpec,
    VisionModel,
    apply_step,
)

Terms = dict[str, torch.Tensor]


@dataclass
class InfoGANConfig(ModelConfig):
    """InfoGAN on the shared conv template (discriminator = encoder, generator = decoder)."""

    latent_dim: int = 5
    """Continuous codes c_cont, uniform in [-1, 1] (the part of `encode` that is continuous)."""
    noise_dim: int = 64
    """Incompressible noise z ~ N(0, I) fed to the generator beside the codes."""
    categorical: int = 1
    """Number of categorical codes."""
    categories: int = 10
    """Values of each categorical code (uniform one-hot)."""
    info_weight: float = 1.0
    """lambda: weight of the information loss (the negative MI lower bound up to H(c))."""
    g_lr: float = 2e-4
    """Generator learning rate (paper: 1e-3 with batch-norm in G; the template has none, and at
    1e-3 the spectral-normalised D wins and G collapses to a checkerboard, measured at 32x32)."""
    d_lr: float = 2e-4
    """Discriminator + Q learning rate (paper: 2e-4)."""
    spectral_norm: bool = True
    """Spectral-normalise the discriminator body and heads (stability without batch-norm)."""

    def validate(self) -> None:
        super().validate()
        if self.noise_dim < 0 or self.categorical < 0:
            raise ConfigError(
                f"infogan: noise_dim and categorical must be >= 0, got {self.noise_dim}, {self.categorical}"
            )
        if self.categorical and self.categories < 2:
            raise ConfigError(f"infogan: categories must be >= 2, got {self.categories}")
        if self.info_weight < 0 or self.g_lr <= 0 or self.d_lr <= 0:
            raise ConfigError(
                f"infogan: need info_weight >= 0 and learning rates > 0, got {self.info_weight}, "
                f"{self.g_lr}, {self.d_lr}"
            )


def _variance_preserving_init(module: nn.Module) -> None:
    """He init: PyTorch's default shrinks the signal per layer, so a fresh template generator
    ignores its input (outputs vary by ~1e-4) and Q gets nothing to learn from."""
    for child in module.modules():
        if isinstance(child, nn.ConvTranspose2d):
            # each output pixel sums in_channels * k^2 / stride^2 inputs
            fan_in = child.in_channels * child.kernel_size[0] * child.kernel_size[1]
            fan_in //= child.stride[0] * child.stride[1]
            nn.init.normal_(child.weight, std=math.sqrt(2.0 / fan_in))
        elif isinstance(child, nn.Linear):
            nn.init.kaiming_normal_(child.weight, nonlinearity="relu")
        else:
            continue
        if child.bias is not None:
            nn.init.zeros_(child.bias)


def _spectral(module: nn.Module) -> None:
    for child in list(module.modules()):
        if isinstance(child, nn.Conv2d | nn.Linear):
            nn.utils.parametrizations.spectral_norm(child)


@MODELS.register("infogan")
class InfoGAN(VisionModel):
    name = "infogan"
    config_cls = InfoGANConfig
    variational = False
    config: InfoGANConfig

    def __init__(self, config: ModelConfig, image_shape: Any = (64, 64, 3)) -> None:
        if not isinstance(config, InfoGANConfig):
            raise ConfigError(f"infogan needs an InfoGANConfig, got {type(config).__name__}")
        super().__init__(config, image_shape)
        self.n_cont = config.latent_dim
        self.n_cat = config.categorical * config.categories
        self.code_dim = self.n_cont + self.n_cat
        self.feature_dim = self.code_dim
        # discriminator: shared body (convs, FC) + real/fake logit; Q: its own head on the body
        self.encoder = ConvEncoder(self.image_shape, config, 1)
        self.q_head = nn.Linear(config.hidden, 2 * self.n_cont + self.n_cat)
        gen_cfg = dataclasses.replace(config, latent_dim=config.noise_dim + self.code_dim)
        self.decoder = ConvDecoder(self.image_shape, gen_cfg, self.encoder.grid)
        _variance_preserving_init(self.decoder)
        if config.spectral_norm:  # Q's head stays free: it must reach code-sized outputs
            _spectral(self.encoder)
        if config.channels_last:
            self.to(memory_format=torch.channels_last)

    # -- pieces ---------------------------------------------------------------------------------
    @property
    def generator(self) -> nn.Module:
        return self.decoder

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The shared discriminator body: convs -> FC (ReLU), features of width `hidden`."""
        h = self._prep(x)
        for conv in self.encoder.convs:
            h = F.relu(conv(h))
        return F.relu(self.encoder.fc(h.permute(0, 2, 3, 1).flatten(1)))

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Body features -> (D logit (N,), Q's cont means, cont log-variances, cat logits (N, cat, k))."""
        logit = self.encoder.head(h)[:, 0]
        out = self.q_head(h)
        n = self.n_cont
        mean = out[:, :n]
        logvar = out[:, n : 2 * n].clamp(-8.0, 4.0)
        cat = out[:, 2 * n :].reshape(-1, self.config.categorical, self.config.categories)
        return logit, mean, logvar, cat

    def sample_codes(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noise, continuous codes, categorical indices (n, categorical))."""
        noise = torch.randn(n, self.config.noise_dim, device=device)
        cont = torch.rand(n, self.n_cont, device=device) * 2 - 1
        cat = torch.randint(self.config.categories, (n, self.config.categorical), device=device)
        return noise, cont, cat

    def generate(self, noise: torch.Tensor, cont: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """Generator logits for explicit noise, continuous codes and categorical indices."""
        onehot = F.one_hot(cat, self.config.categories).flatten(1).float()
        return self.decoder(torch.cat([noise, cont, onehot], dim=1))

    def code_entropy(self) -> float:
        """H(c) in nats: categorical log k each, continuous U(-1, 1) log 2 each."""
        return self.config.categorical * math.log(self.config.categories) + self.n_cont * math.log(2.0)

    def info_loss(
        self,
        mean: torch.Tensor,
        logvar: torch.Tensor,
        cat_logits: torch.Tensor,
        cont: torch.Tensor,
        cat: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-E log Q(c | x) per sample, batch mean: (total, categorical CE, continuous Gaussian NLL)."""
        n = cont.shape[0]
        ce = (
            F.cross_entropy(cat_logits.reshape(-1, self.config.categories), cat.reshape(-1), reduction="sum")
            / n
            if self.config.categorical
            else cont.new_zeros(())
        )
        nll = 0.5 * (math.log(2 * math.pi) + logvar + (cont - mean).pow(2) * torch.exp(-logvar))
        cont_nll = nll.sum() / n
        return ce + cont_nll, ce, cont_nll

    # -- the zoo API ----------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Q's inferred codes: continuous means then categorical probabilities (differentiable)."""
        _, mean, _, cat = self.heads(self.body(x))
        return torch.cat([mean, F.softmax(cat, dim=-1).flatten(1)], dim=1)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.features(x), None

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Codes in `encode`'s layout (N, feature_dim), or a full generator input, -> logits."""
        if z.shape[1] == self.code_dim:
            z = torch.cat([z.new_zeros(z.shape[0], self.config.noise_dim), z], dim=1)
        if z.shape[1] != self.config.noise_dim + self.code_dim:
            raise ConfigError(
                f"infogan.decode expects {self.code_dim} code columns or "
                f"{self.config.noise_dim + self.code_dim} (noise + codes), got {z.shape[1]}"
            )
        return self.decoder(z)

    def layer_names(self) -> list[str]:
        """The discriminator body's layers and the inferred codes ('latent'); G has no encoder side."""
        return [f"conv{i}" for i in range(len(self.encoder.convs))] + ["fc", "latent"]

    def layer_output(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        if layer == "latent":
            return self.features(x)
        if layer not in self.layer_names():
            from darla.registry import unknown_name_message

            raise ConfigError(unknown_name_message("layer", layer, self.layer_names()))
        return super().layer_output(x, layer)

    # -- objectives ---------------------------------------------------------------------------
    def _d_side(
        self, real: torch.Tensor, fake: torch.Tensor, cont: torch.Tensor, cat: torch.Tensor
    ) -> tuple[torch.Tensor, Terms]:
        """Discriminator + Q objective: real/fake BCE + lambda * info loss on the given fakes."""
        logits_real = self.heads(self.body(real))[0]
        logit_fake, mean, logvar, cat_logits = self.heads(self.body(fake))
        d_loss = F.binary_cross_entropy_with_logits(
            logits_real, torch.ones_like(logits_real)
        ) + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
        info, ce, cont_nll = self.info_loss(mean, logvar, cat_logits, cont, cat)
        total = d_loss + self.config.info_weight * info
        terms = {
            "loss": total.detach(),
            "d_loss": d_loss.detach(),
            "info": info.detach(),
            "info_cat": ce.detach(),
            "info_cont": cont_nll.detach(),
            "mi_lower_bound": (self.code_entropy() - info).detach(),
            "d_real": torch.sigmoid(logits_real).mean().detach(),
            "d_fake": torch.sigmoid(logit_fake).mean().detach(),
        }
        return total, terms

    def loss(self, batch: torch.Tensor, step: int = 0) -> tuple[torch.Tensor, Terms]:
        """The discriminator/Q objective on `batch` and as many fresh fakes (what D and Q minimise)."""
        noise, cont, cat = self.sample_codes(batch.shape[0], batch.device)
        fake = torch.sigmoid(self.generate(noise, cont, cat))
        return self._d_side(batch, fake.detach(), cont, cat)

    def generator_loss(self, n: int, device: torch.device) -> tuple[torch.Tensor, Terms]:
        """Non-saturating adversarial loss + lambda * info loss on live fakes (grads reach G and Q)."""
        noise, cont, cat = self.sample_codes(n, device)
        fake = torch.sigmoid(self.generate(noise, cont, cat))
        logit, mean, logvar, cat_logits = self.heads(self.body(fake))
        adv = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        info, _, _ = self.info_loss(mean, logvar, cat_logits, cont, cat)
        total = adv + self.config.info_weight * info
        return total, {"g_loss": adv.detach(), "g_info": info.detach()}

    def optimizers(self) -> dict[str, OptimSpec]:
        gen = [p for p in self.decoder.parameters() if p.requires_grad]
        disc = [p for p in [*self.encoder.parameters(), *self.q_head.parameters()] if p.requires_grad]
        return {
            "discriminator": OptimSpec(disc, lr=self.config.d_lr, betas=(0.5, 0.999)),
            "generator": OptimSpec(gen, lr=self.config.g_lr, betas=(0.5, 0.999)),
        }

    def train_step(
        self, batch: torch.Tensor, step: int, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        """D+Q step (real vs detached fakes, info loss), then G step (adversarial + info loss).

        The G step's backward also leaves gradients on D's parameters; they are cleared by the
        next D step's zero_grad before they are ever applied.
        """
        loss, terms = self.loss(batch, step)
        apply_step(optimizers["discriminator"], loss, terms, step)
        g_loss, g_terms = self.generator_loss(batch.shape[0], batch.device)
        apply_step(optimizers["generator"], g_loss, g_terms, step)
        return {**terms, **g_terms}
