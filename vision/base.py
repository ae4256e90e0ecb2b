"""The zoo's one interface and one conv encoder/decoder template (DARLA's architecture).

A method is a registered `VisionModel` subclass with a typed config dataclass and a small loss
hook; every method shares the template below, so what differs between methods is the loss only.
`encode` is what reinforcement learning sees: the deterministic posterior mean, batched, on
uint8 frames. `features` is the same computation kept differentiable (fine-tuning).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from darla.config import from_dict
from darla.errors import ConfigError, TrainingError
from darla.registry import Registry

Shape = tuple[int, int, int]


# ----------------------------------------------------------------------------- configs
@dataclass
class ModelConfig:
    """Architecture shared by every method (DARLA's defaults at 64x64x3)."""

    latent_dim: int = 32
    """Number of latent units (DARLA: 32)."""
    channels: tuple[int, ...] = (32, 32, 64, 64)
    """Conv channels of the encoder (the decoder mirrors them); each conv halves the image side."""
    kernel: int = 4
    """Conv kernel size (even; stride 2 with 'same-halving' padding)."""
    hidden: int = 256
    """Width of the fully connected layer between convs and latents."""
    recon: Literal["bernoulli", "gaussian"] = "bernoulli"
    """Reconstruction likelihood, summed per image: Bernoulli cross-entropy or squared error."""
    channels_last: bool = True
    """Run convolutions in channels-last memory format (faster on CPU)."""

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ConfigError(f"channels must be a non-empty list of positive ints, got {self.channels}")
        if self.kernel < 2 or self.kernel % 2:
            raise ConfigError(f"kernel must be an even number >= 2, got {self.kernel}")
        if self.hidden < 1:
            raise ConfigError(f"hidden must be >= 1, got {self.hidden}")


@dataclass(frozen=True)
class OptimSpec:
    """One optimiser the trainer builds for a model (most models have one, named 'main')."""

    params: list[nn.Parameter]
    lr: float | None = None
    """Learning rate; None means the trainer's `lr`."""
    betas: tuple[float, float] = (0.9, 0.999)


# ----------------------------------------------------------------------------- template
def _padding(kernel: int) -> int:
    return (kernel - 2) // 2


class ConvEncoder(nn.Module):
    """convs (stride 2, ReLU) -> FC hidden (ReLU) -> linear head of `out_dim` units."""

    def __init__(self, image_shape: Shape, cfg: ModelConfig, out_dim: int) -> None:
        super().__init__()
        h, w, c = image_shape
        self.convs = nn.ModuleList()
        for ch in cfg.channels:
            self.convs.append(nn.Conv2d(c, ch, cfg.kernel, stride=2, padding=_padding(cfg.kernel)))
            c = ch
        n = len(cfg.channels)
        self.grid = (h >> n, w >> n, c)  # (h, w, c) of the last conv's output
        self.fc = nn.Linear(self.grid[0] * self.grid[1] * c, cfg.hidden)
        self.head = nn.Linear(cfg.hidden, out_dim)

    def stages(self, x: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        """(layer name, pre-activation output) for every layer, in order."""
        for i, conv in enumerate(self.convs):
            x = conv(x)
            yield f"conv{i}", x
            x = F.relu(x)
        # flatten in (h, w, c) order: a free view when x is channels-last
        x = x.permute(0, 2, 3, 1).flatten(1)
        x = self.fc(x)
        yield "fc", x
        yield "head", self.head(F.relu(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        x = F.relu(self.fc(x.permute(0, 2, 3, 1).flatten(1)))
        return self.head(x)


class ConvDecoder(nn.Module):
    """The encoder mirrored: FC hidden -> FC grid -> transposed convs; returns pixel logits."""

    def __init__(self, image_shape: Shape, cfg: ModelConfig, grid: tuple[int, int, int]) -> None:
        super().__init__()
        self.grid = grid
        self.channels_last = cfg.channels_last
        gh, gw, gc = grid
        self.fc = nn.Linear(cfg.latent_dim, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, gh * gw * gc)
        outs = [*reversed(cfg.channels[:-1]), image_shape[2]]
        self.deconvs = nn.ModuleList()
        c = gc
        for ch in outs:
            self.deconvs.append(nn.ConvTranspose2d(c, ch, cfg.kernel, stride=2, padding=_padding(cfg.kernel)))
            c = ch

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        gh, gw, gc = self.grid
        x = x.view(-1, gh, gw, gc).permute(0, 3, 1, 2)  # NCHW view over channels-last memory
        return x if self.channels_last else x.contiguous()

    def stages(self, z: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        x = self.fc(z)
        yield "dec_fc", x
        x = self.fc2(F.relu(x))
        yield "dec_fc2", x
        x = self._grid(F.relu(x))
        last = len(self.deconvs) - 1
        for i, deconv in enumerate(self.deconvs):
            x = deconv(x)
            yield f"deconv{i}", x
            if i < last:
                x = F.relu(x)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc2(F.relu(self.fc(z))))
        x = self._grid(x)
        last = len(self.deconvs) - 1
        for i, deconv in enumerate(self.deconvs):
            x = deconv(x)
            if i < last:
                x = F.relu(x)
        return x


# ----------------------------------------------------------------------------- helpers
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per sample and dimension, closed form: (N, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) elementwise (broadcasting)."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def recon_loss(logits: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Reconstruction negative log-likelihood summed per image, averaged over the batch."""
    n = x.shape[0]
    if kind == "bernoulli":
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
    return (torch.sigmoid(logits) - x).pow(2).sum() / n


def recon_loss_per_image(logits: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bernoulli":
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    return (torch.sigmoid(logits) - x).pow(2).sum((1, 2, 3))


# ----------------------------------------------------------------------------- the interface
@dataclass(frozen=True)
class Upstream:
    """A trained model this one is built on: DARLA's DAE under beta_vae_dae, the frozen encoder under
    iin and scan. Declared once by the model; the planner and the see stage resolve every such
    dependency the same way (a zoo model name is trained first in the same experiment, a see folder
    is read as it is) and the artifact records what was used, for hashes and the leak check."""

    field: str
    """The model's config field naming it: a see folder, or a zoo model name (trained first)."""
    interface: str
    """What it must be, in words, for errors (e.g. 'a Gaussian encoder (variational)')."""
    accepts: Callable[[VisionModel], bool]
    """Whether a loaded model offers that interface."""
    default: str = ""
    """The zoo model trained first when the field is empty ('' : the field must be given)."""


class VisionModel(nn.Module):
    """Base of every zoo method: template encoder/decoder + a loss hook.

    Subclasses set `name`, `config_cls`, `variational` and override `loss` (and, when they train
    extra parts with their own optimiser, `optimizers` and `train_step`).
    """

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type[ModelConfig]] = ModelConfig
    variational: ClassVar[bool] = True
    """True: the encoder outputs a Gaussian (mean, log-variance); False: a deterministic code."""
    batches_per_step: ClassVar[int] = 1
    """How many minibatches `train_step` consumes at once (FactorVAE needs a second one)."""
    generative: ClassVar[bool] = True
    upstream: ClassVar[tuple[Upstream, ...]] = ()
    """Trained models this one is built on (see `Upstream`); `attach` receives each before training."""

    def __init__(self, config: ModelConfig, image_shape: Shape = (64, 64, 3)) -> None:
        super().__init__()
        image_shape = check_image_shape(image_shape, config)
        self.config = config
        self.image_shape: Shape = image_shape
        self.latent_dim = config.latent_dim
        self.feature_dim = config.latent_dim
        out = 2 * config.latent_dim if self.variational else config.latent_dim
        self.encoder = ConvEncoder(image_shape, config, out)
        self.decoder = ConvDecoder(image_shape, config, self.encoder.grid)
        if config.channels_last:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    # -- plumbing -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    # -- forward pieces -------------------------------------------------------------------
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """float NCHW [0,1] -> (mean, log-variance), or (code, None) for deterministic models."""
        h = self.encoder(self._prep(x))
        if not self.variational:
            return h, None
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images, float NCHW in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction (decoder of the posterior mean), NCHW in [0, 1]."""
        return self.decode(self.posterior(x)[0])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """float NCHW [0,1] -> (N, feature_dim); differentiable (used by fine-tuning)."""
        return self.posterior(x)[0]

    def layer_names(self) -> list[str]:
        """Names accepted by `layer_output`, encoder first; 'out' is the last decoder layer."""
        n = len(self.encoder.convs)
        enc = [f"conv{i}" for i in range(n)] + ["fc", "latent"]
        dec = ["dec_fc", "dec_fc2"] + [f"deconv{i}" for i in range(n)] + ["out"]
        return enc + dec

    def layer_output(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Pre-activation output of one named layer on input x (the DAE feature map J of DARLA).

        The decoder is fed the posterior mean, so the map is deterministic.
        """
        names = self.layer_names()
        if layer not in names:
            from darla.registry import unknown_name_message

            raise ConfigError(unknown_name_message("layer", layer, names))
        if layer == "out":
            layer = f"deconv{len(self.encoder.convs) - 1}"
        head: torch.Tensor | None = None
        for name, h in self.encoder.stages(self._prep(x)):
            if name == layer:
                return h
            head = h
        assert head is not None
        code = head[:, : self.latent_dim]
        if layer == "latent":
            return code
        for name, h in self.decoder.stages(code):
            if name == layer:
                return h
        raise AssertionError(layer)  # pragma: no cover

    # -- the public API ---------------------------------------------------------------------
    def as_batch(self, obs: Any) -> torch.Tensor:
        """Validate `obs` and return it as a tensor: uint8 (N,H,W,C) or float (N,C,H,W).

        Accepts HxWxC / NxHxWxC uint8 arrays or tensors, or float NCHW in [0, 1].
        """
        if isinstance(obs, np.ndarray):
            arr = np.ascontiguousarray(obs)
            with warnings.catch_warnings():
                # read-only arrays (memory-mapped frames) are shared, never written: only copied from
                warnings.simplefilter("ignore", UserWarning)
                t = torch.from_numpy(arr)
        else:
            t = obs
        if not isinstance(t, torch.Tensor):
            raise ConfigError(f"expected a numpy array or torch tensor of frames, got {type(obs).__name__}")
        h, w, c = self.image_shape
        if t.dtype == torch.uint8:
            if t.ndim == 3:
                t = t.unsqueeze(0)
            if t.ndim != 4 or tuple(t.shape[1:]) != (h, w, c):
                raise ConfigError(
                    f"{self.name} expects uint8 frames of shape (H, W, C) = ({h}, {w}, {c}) "
                    f"or (N, {h}, {w}, {c}); got {tuple(t.shape)}"
                )
            return t
        if t.is_floating_point():
            if t.ndim == 3:
                t = t.unsqueeze(0)
            if t.ndim != 4 or tuple(t.shape[1:]) != (c, h, w):
                raise ConfigError(
                    f"{self.name} expects float frames of shape (N, C, H, W) = (N, {c}, {h}, {w}) "
                    f"in [0, 1], or uint8 (N, {h}, {w}, {c}); got {tuple(t.shape)}"
                )
            return t
        raise ConfigError(f"expected uint8 or float frames, got dtype {t.dtype}")

    def to_float(self, t: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """A validated batch (see `as_batch`) -> float NCHW in [0, 1] on `device`."""
        device = device or self.device
        if t.dtype == torch.uint8:
            # permute gives a channels-last view: no layout copy for channels-last models
            return t.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        return t.to(device=device, dtype=torch.float32)

    def encode(self, obs: Any, batch_size: int = 1024) -> torch.Tensor:
        """Frames -> (N, feature_dim) float32 posterior means on the model's device (no grad)."""
        t = self.as_batch(obs)
        was_training = self.training
        if was_training:  # eval() walks every submodule: skip it on the per-step path of frozen act
            self.eval()
        device = self.device
        outs = []
        with torch.inference_mode():
            for start in range(0, t.shape[0], batch_size):
                x = self.to_float(t[start : start + batch_size], device)
                outs.append(self.features(x).float())
        if was_training:
            self.train()
        if not outs:
            return torch.zeros(0, self.feature_dim, device=device)
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    # -- training hooks ---------------------------------------------------------------------
    def on_dataset(self, size: int) -> None:
        """Told the number of training frames before training (beta-TCVAE's estimator needs it)."""

    def attach(self, field: str, model: VisionModel) -> None:
        """Receive the trained model named by upstream `field` before training (a model that loads it
        from the field's path itself ignores this)."""

    def on_source(self, env: str, domains: tuple[str, ...]) -> None:
        """Told the env family and source domains the see stage trains on (DC-IGN draws its
        one-factor batches from that family's ground truth, inside those domains)."""

    def loss(self, batch: torch.Tensor, step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """batch float NCHW [0,1] -> (scalar to minimise, named detached terms incl. 'loss')."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, OptimSpec]:
        """The optimisers to build, by name; 'main' trains the encoder and decoder."""
        return {"main": OptimSpec([p for p in self.parameters() if p.requires_grad])}

    def train_step(
        self, batch: torch.Tensor, step: int, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        """One optimisation step on `batch` (batches_per_step minibatches stacked); returns terms."""
        loss, terms = self.loss(batch, step=step)
        apply_step(optimizers["main"], loss, terms, step)
        return terms


def check_model(name: str, cls: Any) -> None:
    """What every zoo method must be (checked when it registers, also for plug-ins): a VisionModel
    subclass named as registered, with a dataclass config derived from ModelConfig and its own loss."""
    if not (isinstance(cls, type) and issubclass(cls, VisionModel)):
        raise ConfigError(f"model {name!r} must be a subclass of darla.vision.VisionModel, got {cls!r}")
    if cls.name != name:
        raise ConfigError(f"model class {cls.__name__} is named {cls.name!r} but registered as {name!r}")
    config_cls = cls.config_cls
    if not (dataclasses.is_dataclass(config_cls) and issubclass(config_cls, ModelConfig)):
        raise ConfigError(f"model {name!r}: config_cls must be a dataclass subclass of ModelConfig")
    if cls.loss is VisionModel.loss:
        raise ConfigError(f"model {name!r} ({cls.__name__}) does not implement loss(batch, step)")


MODELS: Registry[type[VisionModel]] = Registry("model", group="darla.models", check=check_model)
"""The zoo: darla's methods (vision/models/) and plug-ins from the `darla.models` entry points."""


def apply_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, terms: dict[str, torch.Tensor], step: int
) -> None:
    """Check the loss is finite (naming the bad term and step), then backward and step."""
    if not bool(torch.isfinite(loss)):
        bad = [k for k, v in terms.items() if k != "loss" and not bool(torch.isfinite(v).all())]
        names = ", ".join(f"{k}={float(terms[k])}" for k in bad) or f"loss={float(loss)}"
        raise TrainingError(
            f"non-finite loss at step {step}: {names}. Lower the learning rate or check the data."
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def check_image_shape(image_shape: Any, cfg: ModelConfig) -> Shape:
    try:
        h, w, c = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"image_shape must be (H, W, C), got {image_shape!r}") from None
    n = len(cfg.channels)
    unit = 1 << n
    if h % unit or w % unit or h < unit or w < unit or c < 1:
        raise ConfigError(
            f"image_shape {(h, w, c)} does not fit {n} stride-2 convs: H and W must be positive "
            f"multiples of {unit} (e.g. 64x64x3, or 32x32x3)"
        )
    return (h, w, c)


def build(name: str, image_shape: Any = (64, 64, 3), **params: Any) -> VisionModel:
    """A fresh model of zoo method `name`; `params` are validated against its config dataclass."""
    cls = MODELS.get(name)
    cfg = from_dict(cls.config_cls, params, where=name)
    return cls(cfg, image_shape)


def encoder_layers(model: nn.Module) -> list[str]:
    """The encoder's hidden layers a frozen policy can read instead of the latent code: the named
    layers before 'latent' (none for a model without named layers)."""
    names = getattr(model, "layer_names", None)
    all_names = list(names()) if callable(names) else []
    return all_names[: all_names.index("latent")] if "latent" in all_names else []


def require_encoder_layer(model: nn.Module, layer: str) -> None:
    """A ConfigError naming the layers `model` has, unless `layer` is one of its encoder layers."""
    layers = encoder_layers(model)
    if layer in layers:
        return
    kind = type(model).__name__
    if not layers:
        raise ConfigError(f"{kind} has no named encoder layers to read features from")
    from darla.registry import unknown_name_message

    raise ConfigError(unknown_name_message(f"encoder layer of {kind}", layer, layers))
