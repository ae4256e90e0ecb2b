"""IIN: a disentangling invertible interpretation network (Esser, Rombach, Ommer, CVPR 2020).

An invertible flow T maps the latent z = E(x) of a FROZEN pretrained zoo encoder E to
z~ = T(z), split into factor blocks z~_1..z~_K (one per ground-truth factor: object, colour,
wall, ...) and a residual z~_0. Because T is invertible, z~ carries exactly the information of z;
it only re-arranges it so that each block is one interpretable concept.

Supervised training uses pairs (x_a, x_b) that share factor F (from the ground-truth API: draw
factors for both, copy F from a to b). The flow is fitted by exact maximum likelihood:
z~_a ~ N(0, I); z~_b's F block ~ N(sigma_ab z~_a,F, (1 - sigma_ab) I) (correlated with its
partner), the other blocks of z~_b ~ N(0, I); plus both log-determinants. Block sizes come from
the dimension estimate: s_F = sum_i corr(E(x_a)_i, E(x_b)_i) over F's pairs, softmax over
factors (the residual's score s_0 defaults to N, as in the paper), floor(softmax * N).

The unsupervised variant fits T(z) to a standard normal (L = ||T(z)||^2 / 2 - log|T'(z)|),
which makes the latent's dimensions independent; then there is one block and no residual.

`encode` is the concatenated factor blocks (everything for the unsupervised variant). Training
only touches the flow; the encoder's weights are stored inside this model's checkpoint too, and
its see folder (config field `base`) must exist to rebuild the architecture.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from darla.artifacts import SeeArtifact
from darla.envs.ground_truth import GroundTruth
from darla.errors import ConfigError
from darla.seeding import derive_seed, make_rng
from darla.vision.base import MODELS, ModelConfig, Upstream, VisionModel
from darla.vision.factor_batches import FactorSource, allowed_appearance, ground_truth_for
from darla.vision.flows import VectorFlow

logger = logging.getLogger(__name__)

NAMES_BYTES = 1024
"""Room for the factor names (JSON, UTF-8) in a fixed-size buffer, so they travel with the weights."""


@dataclass
class IINConfig(ModelConfig):
    """IIN on a frozen zoo encoder (the template fields latent_dim/channels/kernel are unused:
    the flow's width is the base encoder's latent_dim)."""

    base: str = ""
    """See folder (or model.pt) of the frozen, pretrained encoder E whose latent the flow explains."""
    mode: Literal["supervised", "unsupervised"] = "supervised"
    """supervised: factor blocks from ground-truth pairs; unsupervised: flow to N(0, I) only."""
    blocks: int = 8
    """Number of flow blocks (ActNorm -> affine coupling -> fixed shuffle)."""
    hidden: int = 256
    """Width of the coupling networks' hidden layers."""
    depth: int = 2
    """Hidden layers per coupling network."""
    scale_bound: float = 1.0
    """Coupling log-scales are bound * tanh(.), so one block scales a unit by at most e^bound."""
    sigma_ab: float = 0.975
    """Correlation of a pair's shared factor block (the paper's sigma_ab)."""
    pairs: int = 4000
    """Training pairs drawn from the ground truth (split evenly over the factors), rendered once."""
    factors: tuple[str, ...] = ()
    """Ground-truth factors that get a block; empty: every factor with more than one value."""
    factor_dims: tuple[int, ...] = ()
    """Explicit block sizes (one per factor); empty: the dimension estimate decides."""
    residual_score: float | None = None
    """Score s_0 of the residual in the dimension estimate's softmax; None: N (the paper)."""
    temperature: float = 1.0
    """Softmax temperature of the dimension estimate (1 = the paper)."""
    pair_env: str = ""
    """Ground truth of the pairs: an env family or 'sprites'; empty: the see stage's env (else the
    base see folder's). Appearance stays inside the source domains' combinations."""
    seed: int = 0
    """Seeds the shuffles, the pairs and the pair minibatches."""

    def validate(self) -> None:
        if self.blocks < 1 or self.hidden < 1 or self.depth < 0:
            raise ConfigError(
                f"iin: blocks, hidden >= 1 and depth >= 0 (got {self.blocks}, {self.hidden}, {self.depth})"
            )
        if not 0.0 < self.sigma_ab < 1.0:
            raise ConfigError(f"iin: sigma_ab must be in (0, 1), got {self.sigma_ab}")
        if self.scale_bound <= 0:
            raise ConfigError(f"iin: scale_bound must be > 0, got {self.scale_bound}")
        if self.temperature <= 0:
            raise ConfigError(f"iin: temperature must be > 0, got {self.temperature}")
        if self.mode == "supervised" and self.pairs < 2:
            raise ConfigError(f"iin: pairs must be >= 2, got {self.pairs}")
        if self.factor_dims and self.factors and len(self.factor_dims) != len(self.factors):
            raise ConfigError(
                f"iin: factor_dims {list(self.factor_dims)} needs one size per factor {list(self.factors)}"
            )
        if any(d < 1 for d in self.factor_dims):
            raise ConfigError(f"iin: factor_dims must be >= 1, got {list(self.factor_dims)}")


# ----------------------------------------------------------------------------- the math
def pair_correlations(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """Per-dimension Pearson correlation between paired codes (N, D) -> (D,); constant dims -> 0."""
    a = za - za.mean(0)
    b = zb - zb.mean(0)
    denom = torch.sqrt(a.pow(2).mean(0) * b.pow(2).mean(0))
    corr = (a * b).mean(0) / denom.clamp_min(1e-12)
    return torch.where(denom > 1e-12, corr, torch.zeros_like(corr))


def estimate_dims(
    scores: Sequence[float], total: int, residual_score: float | None = None, temperature: float = 1.0
) -> list[int]:
    """Block sizes from factor scores: N_F = floor(softmax([s_0, s_1..s_K] / T)_F * N), at least 1.

    Returns [N_1, .., N_K]; the residual gets N - sum. Raises if the factors cannot get one
    dimension each.
    """
    k = len(scores)
    if k > total:
        raise ConfigError(f"iin: {k} factors need at least {k} latent dimensions, the encoder has {total}")
    s0 = float(total) if residual_score is None else float(residual_score)
    logits = np.array([s0, *scores], dtype=np.float64) / temperature
    p = np.exp(logits - logits.max())
    p /= p.sum()
    dims = np.maximum(np.floor(p[1:] * total).astype(int), 1)
    while dims.sum() > total:  # only possible when the residual score is tiny: shave the largest
        dims[int(np.argmax(dims))] -= 1
    return [int(d) for d in dims]


def block_masks(dims: Sequence[int], total: int, device: torch.device | None = None) -> torch.Tensor:
    """(K, total) bool: row F marks block F's dimensions (blocks first, residual last)."""
    masks = torch.zeros(len(dims), total, dtype=torch.bool, device=device)
    start = 0
    for f, d in enumerate(dims):
        masks[f, start : start + d] = True
        start += d
    return masks


def pair_nll(
    ya: torch.Tensor,
    yb: torch.Tensor,
    logdet_a: torch.Tensor,
    logdet_b: torch.Tensor,
    shared: torch.Tensor,
    sigma: float,
) -> torch.Tensor:
    """Per-pair negative log-likelihood of (z_a, z_b) under the IIN pair model (constants kept).

    `shared` (B, D) bool marks each pair's shared factor block: there z~_b ~ N(sigma z~_a,
    (1 - sigma) I); elsewhere z~_b ~ N(0, I); z~_a ~ N(0, I) everywhere.
    """
    log2pi = math.log(2 * math.pi)
    var = 1.0 - sigma
    nll_a = 0.5 * (ya.pow(2) + log2pi).sum(1) - logdet_a
    corr = 0.5 * ((yb - sigma * ya).pow(2) / var + math.log(var) + log2pi)
    free = 0.5 * (yb.pow(2) + log2pi)
    nll_b = torch.where(shared, corr, free).sum(1) - logdet_b
    return nll_a + nll_b


# ----------------------------------------------------------------------------- the model
@MODELS.register("iin")
class IIN(FactorSource, VisionModel):
    """Invertible interpretation network on a frozen zoo encoder (see the module docstring)."""

    name = "iin"
    config_cls = IINConfig
    upstream = (
        Upstream(
            "base",
            "a zoo encoder with at least 2 features that is not itself a flow (e.g. beta_vae)",
            lambda model: model.name != "iin" and int(model.feature_dim) >= 2,
        ),
    )
    variational = False
    generative = True
    config: IINConfig
    n_factors: torch.Tensor
    block_dims: torch.Tensor
    block_scores: torch.Tensor
    names_utf8: torch.Tensor

    def __init__(self, config: ModelConfig, image_shape: Any = (64, 64, 3)) -> None:
        # not VisionModel.__init__: the IIN has no conv template of its own, it wraps `base`
        nn.Module.__init__(self)
        if not isinstance(config, IINConfig):
            raise ConfigError(f"iin needs an IINConfig, got {type(config).__name__}")
        if not config.base:
            raise ConfigError(
                "iin needs `base`: the see folder of a trained zoo encoder (e.g. runs/x/see/beta_vae)"
            )
        from darla.vision.checkpoint import load

        self.config = config
        self.base: VisionModel = load(config.base, device="cpu")
        if self.base.name == "iin":
            raise ConfigError(f"iin: base {config.base!r} is itself an iin; use the encoder's see folder")
        base_shape = tuple(int(v) for v in self.base.image_shape)
        if tuple(int(v) for v in image_shape) != base_shape:
            raise ConfigError(
                f"iin: image_shape {tuple(image_shape)} differs from the base encoder's {base_shape}"
            )
        self.image_shape = base_shape
        n = int(self.base.feature_dim)
        if n < 2:
            raise ConfigError(f"iin: the base encoder has {n} feature dimension(s); a flow needs >= 2")
        self.latent_dim = n
        self.flow = VectorFlow(n, config.blocks, config.hidden, config.depth, config.scale_bound, config.seed)
        # the factor layout, decided before training and saved with the weights
        self.register_buffer("n_factors", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("block_dims", torch.zeros(n, dtype=torch.int64))
        self.register_buffer("block_scores", torch.zeros(n, dtype=torch.float32))
        self.register_buffer("names_utf8", torch.zeros(NAMES_BYTES, dtype=torch.uint8))
        self._init_factor_source()
        self._pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._batch_gen = torch.Generator().manual_seed(derive_seed(config.seed, "iin", "batches"))

    # -- frozen base ----------------------------------------------------------------------
    def train(self, mode: bool = True) -> IIN:
        super().train(mode)
        self.base.eval()  # the encoder stays frozen and deterministic
        return self

    # -- factor layout --------------------------------------------------------------------
    @property
    def factor_names(self) -> tuple[str, ...]:
        raw = bytes(self.names_utf8.cpu().numpy().tolist()).rstrip(b"\0")
        return tuple(json.loads(raw.decode())) if raw else ()

    @property
    def factor_dims(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.block_dims[: int(self.n_factors)].tolist())

    @property
    def feature_dim(self) -> int:
        dims = self.factor_dims
        return sum(dims) if dims else self.latent_dim

    def set_layout(
        self, names: Sequence[str], dims: Sequence[int], scores: Sequence[float] | None = None
    ) -> None:
        """Fix the factor blocks (names and sizes, in output order; the residual is the rest)."""
        if len(names) != len(dims):
            raise ConfigError(f"iin: {len(names)} factor names but {len(dims)} block sizes")
        if sum(dims) > self.latent_dim or any(d < 1 for d in dims):
            raise ConfigError(f"iin: block sizes {list(dims)} do not fit {self.latent_dim} latent dimensions")
        raw = json.dumps(list(names)).encode()
        if len(raw) > NAMES_BYTES:
            raise ConfigError(f"iin: factor names too long to store ({len(raw)} > {NAMES_BYTES} bytes)")
        self.n_factors.fill_(len(dims))
        self.block_dims.zero_()
        self.block_dims[: len(dims)] = torch.tensor(list(dims), dtype=torch.int64)
        self.block_scores.zero_()
        if scores is not None:
            self.block_scores[: len(dims)] = torch.tensor(list(scores), dtype=torch.float32)
        self.names_utf8.zero_()
        self.names_utf8[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)

    def blocks(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a full T(z) (N, latent_dim) into named blocks: each factor, then 'residual'."""
        out: dict[str, torch.Tensor] = {}
        start = 0
        for name, d in zip(self.factor_names, self.factor_dims):
            out[name] = y[:, start : start + d]
            start += d
        out["residual"] = y[:, start:]
        return out

    # -- ground truth pairs ---------------------------------------------------------------
    def _ground_truth_changed(self) -> None:
        self._pairs = None

    def _base_see(self) -> SeeArtifact:
        """The base's see folder (its env and source domains)."""
        return SeeArtifact.read(self.config.base, finished=False)

    def _ground_truth(self) -> GroundTruth:
        """The attached ground truth, else `pair_env`'s / the see stage's / the base's env family,
        restricted to the source domains' appearance combinations (targets stay unseen)."""
        if self._gt is not None:
            return self._gt
        base: SeeArtifact | None = None
        env = self.config.pair_env or self._source_env
        if not env:
            base = self._base_see()
            env = base.env
        if not env:
            raise ConfigError("iin: no env family for the pairs; set pair_env (e.g. SeekAvoid or sprites)")
        if env == self._source_env:
            domains: Sequence[str] = self._source_domains
        else:
            base = base if base is not None else self._base_see()
            domains = base.domains if base.env == env else ()
        gt = ground_truth_for(env, self.image_shape[0])
        allowed, cols = allowed_appearance(gt, env, domains)
        self.set_ground_truth(gt, allowed, cols)
        return gt

    def _factor_groups(self, gt: GroundTruth) -> list[list[int]]:
        """Columns that get a block, as groups of columns tied in the allowed domains.

        A factor qualifies when it takes >= 2 values in the allowed data. Appearance factors that
        always change together there (SeekAvoid's wall and floor) are one concept for the pairs:
        sharing one means sharing the other, so they get one block, named 'wall+floor'.
        """
        assert self._sampler is not None
        sampler = self._sampler
        names = list(gt.factor_names)
        acols = [int(c) for c in sampler.allowed_cols] if sampler.allowed is not None else []
        signature: dict[int, tuple[int, ...]] = {}
        for j, c in enumerate(acols):
            assert sampler.allowed is not None
            column = sampler.allowed[:, j]
            _, first, labels = np.unique(column, return_index=True, return_inverse=True)
            rank = np.argsort(np.argsort(first))  # canonical labels: order of first appearance
            signature[c] = tuple(int(v) for v in rank[labels.reshape(-1)])

        def varies(c: int) -> bool:
            return len(set(signature[c])) > 1 if c in signature else bool(sampler.sizes[c] > 1)

        if self.config.factors:
            missing = [f for f in self.config.factors if f not in names]
            if missing:
                raise ConfigError(f"iin: unknown factor(s) {missing}; the ground truth has {names}")
            cols = [names.index(f) for f in self.config.factors]
            frozen = [names[c] for c in cols if not varies(c)]
            if frozen:
                raise ConfigError(f"iin: factor(s) {frozen} take a single value within the allowed domains")
        else:
            cols = [c for c in range(len(names)) if varies(c)]
        groups: list[list[int]] = []
        for c in cols:
            tied = next((g for g in groups if c in signature and signature.get(g[0]) == signature[c]), None)
            if tied is None:
                groups.append([c])
            else:
                tied.append(c)
        return groups

    def sample_pair_factors(
        self, n: int, col: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Factor rows (a, b) that share column `col` and are drawn independently otherwise
        (appearance columns inside the allowed combinations)."""
        assert self._sampler is not None
        sampler = self._sampler
        sizes = sampler.sizes
        fa = np.stack([rng.integers(0, k, size=n) for k in sizes], axis=1).astype(np.int64)
        fb = np.stack([rng.integers(0, k, size=n) for k in sizes], axis=1).astype(np.int64)
        if sampler.allowed is not None and len(sampler.allowed_cols):
            allowed, acols = sampler.allowed, sampler.allowed_cols
            fa[:, acols] = allowed[rng.integers(len(allowed), size=n)]
            fb[:, acols] = allowed[rng.integers(len(allowed), size=n)]
            inner = np.flatnonzero(acols == col)
            if len(inner):  # b's appearance row must share a's value of col: draw among those rows
                j = int(inner[0])
                for value in np.unique(fa[:, col]):
                    rows = np.flatnonzero(fa[:, col] == value)
                    cands = allowed[allowed[:, j] == value]
                    fb[np.ix_(rows, acols)] = cands[rng.integers(len(cands), size=len(rows))]
        fb[:, col] = fa[:, col]
        return fa, fb

    @torch.no_grad()
    def make_pairs(
        self, n: int, rng: np.random.Generator, factors: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_a, z_b, f): base codes of n pairs sharing factor factors[f] (f indexes `factors`)."""
        gt = self._ground_truth()
        per = max(1, n // len(factors))
        za, zb, fs = [], [], []
        for f, col in enumerate(factors):
            fa, fb = self.sample_pair_factors(per, col, rng)
            za.append(self.base.encode(gt.sample_observations_from_factors(fa, rng)).cpu())
            zb.append(self.base.encode(gt.sample_observations_from_factors(fb, rng)).cpu())
            fs.append(torch.full((per,), f, dtype=torch.int64))
        return torch.cat(za), torch.cat(zb), torch.cat(fs)

    def prepare(self) -> None:
        """Draw the pair set once and fix the factor layout (dimension estimate or `factor_dims`)."""
        if self.config.mode == "unsupervised":
            return
        gt = self._ground_truth()
        groups = self._factor_groups(gt)
        if not groups:
            raise ConfigError(f"iin: no factor of {list(gt.factor_names)} varies within the allowed domains")
        cols = [g[0] for g in groups]  # sharing a group's first column shares all of it
        rng = make_rng(self.config.seed, "iin", "pairs")
        za, zb, f = self.make_pairs(self.config.pairs, rng, cols)
        names = ["+".join(gt.factor_names[c] for c in g) for g in groups]
        scores = [float(pair_correlations(za[f == i], zb[f == i]).sum()) for i in range(len(cols))]
        if int(self.n_factors) == 0:  # a loaded/resumed model keeps its layout
            if self.config.factor_dims:
                if len(self.config.factor_dims) != len(cols):
                    raise ConfigError(
                        f"iin: factor_dims {list(self.config.factor_dims)} needs one size per factor {names}"
                    )
                dims = list(self.config.factor_dims)
            else:
                dims = estimate_dims(
                    scores, self.latent_dim, self.config.residual_score, self.config.temperature
                )
            self.set_layout(names, dims, scores)
            logger.info(
                "iin factor blocks: %s (scores %s; residual %d)",
                dict(zip(names, dims)),
                [round(s, 2) for s in scores],
                self.latent_dim - sum(dims),
            )
        self._pairs = (za, zb, f)

    # -- the flow ---------------------------------------------------------------------------
    def transform(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (N, latent_dim) -> (T(z), log|det T'(z)|)."""
        return self.flow(z)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.flow.inverse(y)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """float NCHW [0,1] -> the interpretable blocks of T(E(x)) (differentiable through T)."""
        y, _ = self.flow(self.base.features(x))
        return y[:, : self.feature_dim]

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the full T(E(x)), None): every flow dimension, residual included (for figures/evaluation;
        `encode` gives the factor blocks only)."""
        y, _ = self.flow(self.base.features(x))
        return y, None

    def _full(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[1] == self.feature_dim and self.feature_dim < self.latent_dim:
            z = torch.cat([z, z.new_zeros(z.shape[0], self.latent_dim - self.feature_dim)], dim=1)
        if z.shape[1] != self.latent_dim:
            raise ConfigError(
                f"iin.decode expects {self.feature_dim} or {self.latent_dim} columns, got {z.shape[1]}"
            )
        return z

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Factor blocks (the residual set to its prior mean 0) or a full T(z) -> the base's logits."""
        return self.base.decode_logits(self.flow.inverse(self._full(z)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.base.decode(self.flow.inverse(self._full(z)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Exact: T is invertible, so the base encoder's reconstruction."""
        return self.base.reconstruct(x)

    def layer_names(self) -> list[str]:
        return self.base.layer_names()

    def layer_output(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        return self.base.layer_output(x, layer)

    # -- losses ---------------------------------------------------------------------------
    def unsupervised_loss(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean NLL of z under T^-1(N(0, I)) (Eq. 11 of the review), in nats per dimension."""
        y, logdet = self.flow(z)
        nll = (0.5 * (y.pow(2) + math.log(2 * math.pi)).sum(1) - logdet).mean() / self.latent_dim
        return nll, {"loss": nll.detach(), "nll": nll.detach(), "logdet": logdet.mean().detach()}

    def pair_loss(
        self, za: torch.Tensor, zb: torch.Tensor, f: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean pair NLL (nats per dimension of one code) for pairs sharing factor blocks f."""
        n = za.shape[0]
        y, logdet = self.flow(torch.cat([za, zb]))
        masks = block_masks(self.factor_dims, self.latent_dim, y.device)
        nll = pair_nll(y[:n], y[n:], logdet[:n], logdet[n:], masks[f], self.config.sigma_ab)
        loss = nll.mean() / (2 * self.latent_dim)
        return loss, {"loss": loss.detach(), "pair_nll": loss.detach(), "logdet": logdet.mean().detach()}

    def loss(self, batch: torch.Tensor, step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """unsupervised: NLL of the batch's codes; supervised: pair NLL on len(batch) ground-truth pairs."""
        if self.config.mode == "unsupervised":
            with torch.no_grad():
                z = self.base.features(batch)
            return self.unsupervised_loss(z)
        if self._pairs is None:
            self.prepare()
        assert self._pairs is not None
        za, zb, f = self._pairs
        idx = torch.randint(len(f), (batch.shape[0],), generator=self._batch_gen)
        device = self.block_dims.device
        return self.pair_loss(za[idx].to(device), zb[idx].to(device), f[idx].to(device))
