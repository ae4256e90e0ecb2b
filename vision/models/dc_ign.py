"""DC-IGN (Kulkarni et al. 2015): a VAE trained on batches in which only one generative factor changes.

Each latent block is assigned to a ground-truth factor (`units_per_factor` units each); the
remaining units form the "intrinsic" block. A unit outside every block would be clamped in every
batch, so it would get only the pull to the mean and never a reconstruction gradient.

Default layout (`factors` and `intrinsic` empty): on a room family, the appearance factors (walls,
floor, light, colours: what the scene is, as identity is in the paper's faces) are intrinsic and
every pose factor gets one unit, as azimuth, elevation and light do in the paper. On SeekAvoid
the earlier default gave each of 8 factors (appearance included) one unit and left 24 of 32 units
in no block: the encoder went constant (0 active latents, held-out mse 548 after 300 steps against
436 with this layout and 312 for a beta_vae). Without appearance factors (sprites), every factor
gets a block and `units_per_factor: 0` splits all the units over them.

A training batch is drawn from the ground-truth API with every factor fixed but one (or, for an
intrinsic batch, with only the `intrinsic` factors varying). Before decoding, the units of the
inactive factors are *clamped* to their batch mean, so the active block alone must explain the
batch's variation; in the backward pass the clamped units' gradient is *replaced* by their
difference from that mean (`ClampToMean`), nudging the encoder to give them the same value
across the batch. Batch types are drawn in the ratio 1 : 1 : ... : `intrinsic_ratio` (the
slides' 1:1:1:10 for azimuth : elevation : light : intrinsic). Beside them, at `frames_ratio`,
come plain batches of the trainer's own frames (the see stage's) with no unit clamped: rendered
one-factor scenes are not what an agent sees, and an RL backbone must encode the agent's frames.

Appearance factors are restricted to the combinations shown by the allowed domains (default:
the family's *source* split), so the target combinations stay unseen, as DARLA requires; pose
factors vary freely. Batches are rendered once into a pool (`pool_batches`) and cycled.

`encode` = the posterior means (all units).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from darla.envs.ground_truth import GroundTruth
from darla.errors import ConfigError
from darla.seeding import make_rng
from darla.vision.base import MODELS, ModelConfig, apply_step, gaussian_kl, reparameterize
from darla.vision.factor_batches import FactorSource, OneFactorSampler, allowed_appearance, ground_truth_for
from darla.vision.models.vae import GaussianVAE, Terms

logger = logging.getLogger(__name__)


@dataclass
class DCIGNConfig(ModelConfig):
    """DC-IGN: VAE + one-factor batches with clamped inactive latents."""

    env: str = ""
    """Ground truth of the batches: an env family (e.g. SeekAvoid) or 'sprites'; empty: the see stage's env."""
    domains: tuple[str, ...] = ()
    """Domains whose appearance combinations batches may show; empty: the family's source split."""
    factors: tuple[str, ...] = ()
    """Factors with their own latent block; empty: every varying factor not in `intrinsic`."""
    intrinsic: tuple[str, ...] = ()
    """Factors explained together by the leftover 'intrinsic' units (DC-IGN's identity/shape);
    empty (and `factors` empty): a room family's appearance factors."""
    units_per_factor: int = 0
    """Latent units assigned to each factor in `factors`; 0: one each if there is an intrinsic block,
    else all latent units split evenly over the factors (no unit left without a gradient)."""
    intrinsic_ratio: float = 10.0
    """Weight of intrinsic batches relative to each factor's batches (slides: 1:1:1:10)."""
    frames_ratio: float = 15.0
    """Weight of plain batches of the training frames (the see stage's, no unit clamped) relative
    to each factor's batches (15: half the steps on SeekAvoid's 5 pose factors + intrinsic 10);
    0: one-factor batches only, as in the paper. Rendered one-factor scenes are not what an agent
    sees (SeekAvoid's: one good and one bad object, always in view, agent near the centre): with 0,
    held-out mse on the see frames was 370 and PPO on the features stayed at the floor (source
    0.49 over 3 seeds); with 15, mse 137 (beta_vae: 120) and source 4.95 (3 seeds)."""
    pool_batches: int = 128
    """One-factor batches rendered once and cycled during training."""
    seed: int = 0
    """Seeds the batch pool and the order batches are drawn in."""

    def validate(self) -> None:
        super().validate()
        if (
            self.units_per_factor < 0
            or self.pool_batches < 1
            or self.intrinsic_ratio < 0
            or self.frames_ratio < 0
        ):
            raise ConfigError(
                "dc_ign: units_per_factor >= 0, pool_batches >= 1, intrinsic_ratio >= 0 and frames_ratio "
                f">= 0; got {self.units_per_factor}, {self.pool_batches}, {self.intrinsic_ratio}, "
                f"{self.frames_ratio}"
            )
        overlap = set(self.factors) & set(self.intrinsic)
        if overlap:
            raise ConfigError(f"dc_ign: factor(s) {sorted(overlap)} are in both `factors` and `intrinsic`")


class ClampToMean(torch.autograd.Function):
    """Forward: masked units -> their batch mean. Backward: their gradient := z - mean.

    Unmasked units pass values and gradients through unchanged. `mask` is (D,) bool, True = clamp.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mean = z.mean(0, keepdim=True)
        ctx.save_for_backward(z, mean, mask)
        return torch.where(mask, mean.expand_as(z), z)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        z, mean, mask = ctx.saved_tensors
        return torch.where(mask, z - mean, grad), None


def clamp_to_mean(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = ClampToMean.apply(z, mask)
    assert isinstance(out, torch.Tensor)
    return out


@dataclass(frozen=True)
class BatchType:
    name: str
    """A factor's name, or 'intrinsic'."""
    columns: tuple[int, ...]
    """Ground-truth columns that vary in this batch type."""
    units: tuple[int, int]
    """[start, stop) of the latent units left free (unclamped)."""
    weight: float


@MODELS.register("dc_ign")
class DCIGN(FactorSource, GaussianVAE):
    name = "dc_ign"
    config_cls = DCIGNConfig
    config: DCIGNConfig

    def __init__(self, config: ModelConfig, image_shape: Any = (64, 64, 3)) -> None:
        super().__init__(config, image_shape)
        self._init_factor_source()
        self.types: list[BatchType] = []
        self._pool: list[tuple[int, np.ndarray]] = []

    # -- ground truth ---------------------------------------------------------------------
    def _ground_truth_changed(self) -> None:
        assert self._gt is not None and self._sampler is not None
        self.types = self._layout(self._gt, self._sampler)
        self._pool = []

    def _ensure_ground_truth(self) -> GroundTruth:
        if self._gt is None:
            env = self.config.env or self._source_env
            if not env:
                raise ConfigError(
                    "dc_ign draws its batches from a ground truth: set params env=<family or 'sprites'> "
                    "(the see stage sets it), or call set_ground_truth()"
                )
            gt = ground_truth_for(env, self.image_shape[0])
            domains = self.config.domains or (self._source_domains if env == self._source_env else ())
            allowed, cols = allowed_appearance(gt, env, domains)
            self.set_ground_truth(gt, allowed, cols)
        assert self._gt is not None
        return self._gt

    def _layout(self, gt: GroundTruth, sampler: OneFactorSampler) -> list[BatchType]:
        names = list(gt.factor_names)
        for f in (*self.config.factors, *self.config.intrinsic):
            if f not in names:
                raise ConfigError(f"dc_ign: unknown factor {f!r}; the ground truth has {names}")
        intrinsic = [names.index(f) for f in self.config.intrinsic]
        if not intrinsic and not self.config.factors:
            intrinsic = [int(c) for c in sampler.allowed_cols]  # the scene's appearance
        if self.config.factors:
            own: list[tuple[int, ...]] = [(names.index(f),) for f in self.config.factors]
        else:
            own = [(i,) for i in range(len(names)) if i not in intrinsic and sampler.can_vary([i])]
            # appearance factors tied across the allowed domains (DARLA's rooms: wall + floor)
            # vary together: one batch type per minimal tied group
            singles = {c for (c,) in own}
            own += [grp for grp in sampler.tied_groups() if not set(grp) & (singles | set(intrinsic))]
        dropped = [names[c[0]] for c in own if not sampler.can_vary(list(c))]
        if dropped:
            raise ConfigError(f"dc_ign: factor(s) {dropped} never vary within the allowed domains")
        has_intrinsic = bool(intrinsic) and self.config.intrinsic_ratio > 0 and sampler.can_vary(intrinsic)
        sizes = self._block_sizes(len(own), has_intrinsic)
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        types = [
            BatchType("+".join(names[c] for c in cols), cols, (starts[k], starts[k + 1]), 1.0)
            for k, cols in enumerate(own)
        ]
        if starts[-1] < self.latent_dim and not has_intrinsic:
            logger.warning(
                "dc_ign: latent units %d..%d belong to no factor and no intrinsic batch: they are clamped "
                "in every batch and never learn (use units_per_factor=0 or add intrinsic factors)",
                starts[-1],
                self.latent_dim - 1,
            )
        if has_intrinsic:
            types.append(
                BatchType(
                    "intrinsic",
                    tuple(intrinsic),
                    (starts[-1], self.latent_dim),
                    self.config.intrinsic_ratio,
                )
            )
        if not types:
            raise ConfigError("dc_ign: no factor can vary; nothing to train on")
        logger.info("dc_ign batch types: %s", [(t.name, t.units, t.weight) for t in types])
        return types

    def _block_sizes(self, factors: int, intrinsic: bool) -> list[int]:
        """Units of each factor block (the intrinsic block, if any, takes what is left)."""
        u = self.config.units_per_factor
        need = factors * max(u, 1) + int(intrinsic)  # at least one unit per block
        if need > self.latent_dim:
            raise ConfigError(
                f"dc_ign: {factors} factors x {max(u, 1)} units{' + intrinsic units' if intrinsic else ''} "
                f"need {need} latents, latent_dim is {self.latent_dim}"
            )
        if u == 0 and not intrinsic and factors:
            share, extra = divmod(self.latent_dim, factors)
            return [share + (k < extra) for k in range(factors)]
        return [max(u, 1)] * factors

    def sample_batch(self, n: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """(batch type index drawn by weight, uint8 frames in which only that type's factors vary)."""
        gt = self._ensure_ground_truth()
        assert self._sampler is not None
        w = np.array([t.weight for t in self.types], dtype=np.float64)
        t = int(rng.choice(len(self.types), p=w / w.sum()))
        rows = self._sampler.sample(n, self.types[t].columns, rng)
        return t, gt.sample_observations_from_factors(rows, rng)

    def _fill_pool(self, n: int) -> None:
        rng = make_rng(self.config.seed, "dc_ign", "pool")
        self._pool = [self.sample_batch(n, rng) for _ in range(self.config.pool_batches)]

    def frames_share(self) -> float:
        """Fraction of steps on plain batches of the training frames."""
        r = self.config.frames_ratio
        return r / (r + sum(t.weight for t in self.types)) if r > 0 else 0.0

    def clamp_mask(self, t: int, device: torch.device | None = None) -> torch.Tensor:
        """(latent_dim,) bool: True for the units clamped in a batch of type `t`."""
        start, stop = self.types[t].units
        mask = torch.ones(self.latent_dim, dtype=torch.bool, device=device)
        mask[start:stop] = False
        return mask

    # -- losses ---------------------------------------------------------------------------
    def one_factor_loss(
        self, x: torch.Tensor, mask: torch.Tensor, step: int = 0
    ) -> tuple[torch.Tensor, Terms]:
        """ELBO on a one-factor batch with the `mask`ed units clamped (ClampToMean)."""
        mu, logvar = self.posterior(x)
        assert logvar is not None
        z = clamp_to_mean(reparameterize(mu, logvar), mask)
        rec = self.reconstruction(self.decode_logits(z), x)
        kl = gaussian_kl(mu, logvar).sum(1).mean()
        spread = (mu - mu.mean(0, keepdim=True)).pow(2)[:, mask].sum(1).mean()
        total = rec + kl
        return total, {
            "loss": total.detach(),
            "recon": rec.detach(),
            "kl": kl.detach(),
            "clamped_var": spread.detach(),
        }

    def train_step(
        self, batch: torch.Tensor, step: int, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        """One step on a pooled one-factor batch of the trainer's batch size, or (at `frames_ratio`)
        on the trainer's own `batch` with every unit free."""
        n = batch.shape[0]
        if not self._pool or self._pool[0][1].shape[0] != n:
            self._ensure_ground_truth()
            self._fill_pool(n)
        # global RNG below: checkpointed by the trainer, so a resumed run draws the same batches
        if self.config.frames_ratio > 0 and float(torch.rand(())) < self.frames_share():
            x = self.to_float(batch, batch.device)
            mask = torch.zeros(self.latent_dim, dtype=torch.bool, device=x.device)
        else:
            t, frames = self._pool[int(torch.randint(len(self._pool), (1,)))]
            x = self.to_float(torch.from_numpy(frames), batch.device)
            mask = self.clamp_mask(t, x.device)
        loss, terms = self.one_factor_loss(x, mask, step)
        apply_step(optimizers["main"], loss, terms, step)
        return terms
