"""SCAN (Higgins et al. 2018): symbols grounded in the latent space of a FROZEN beta-VAE.

A symbol y is k-hot over named factor values ("wall=brick_wall", "good_color=green", ...), built
from the ground-truth API's factor names and values. SCAN is a small VAE over symbols whose
latent space is the vision model's: q_scan(z | y) is trained with

    symbol reconstruction  +  beta * KL(q_scan(z|y) || N(0, I))  +  lambda * KL(q_vision(z|x) || q_scan(z|y))

on (image x, symbol y) pairs. The *forward* grounding KL is mode-covering: latents a symbol does
not talk about stay broad (close to the prior), the ones it names become narrow. Training
symbols name a random subset of the factors (at least one), so SCAN learns abstractions
("wall=brick_wall" alone) as well as full descriptions.

- sym2img: symbols -> q_scan(z|y) -> samples -> the vision decoder.
- img2sym: image -> the vision posterior mean -> SCAN's symbol decoder -> per-symbol probabilities.
- Recombination operators AND, IN COMMON, IGNORE on symbol latent distributions (`OPERATORS`):
  a latent unit is *specified* by a concept when its KL from the prior exceeds a threshold.
  AND keeps every unit either concept specifies (product of Gaussians where both do);
  IN COMMON keeps the units both specify alike; IGNORE (a IGNORE b) resets the units b
  specifies to the prior and keeps a's others. Unspecified units are N(0, 1).

`encode` = img2sym probabilities ("symbols"), the vision latent means ("latent"), or both.
The vocabulary travels in the config (resolved when the model is built), the frozen vision
model's weights in the state dict; its see folder (`base`) is needed to rebuild the model.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from darla.artifacts import SeeArtifact
from darla.errors import ArtifactError, ConfigError
from darla.registry import Registry, unknown_name_message
from darla.seeding import make_rng
from darla.vision.base import MODELS, ModelConfig, Upstream, VisionModel, reparameterize

logger = logging.getLogger(__name__)

Gaussian = tuple[torch.Tensor, torch.Tensor]
"""(mean, log-variance), same shape."""


@dataclass
class ScanConfig(ModelConfig):
    """SCAN on a frozen Gaussian zoo model (template fields latent_dim/channels/kernel are unused:
    SCAN's latent space is the base model's)."""

    base: str = ""
    """See folder (or model.pt) of the frozen beta_vae / beta_vae_dae whose latent space grounds the symbols."""
    env: str = ""
    """Env family whose ground truth gives factors, symbols and images; empty: the base see folder's env."""
    factors: tuple[str, ...] = ()
    """Factors that become symbols; empty: the family's appearance factors (all factors for other data)."""
    vocabulary: tuple[str, ...] = ()
    """Symbol names 'factor=value' (resolved from the ground truth when empty; stored for loading)."""
    hidden: int = 256
    """Width of the symbol encoder's and decoder's two hidden layers."""
    beta: float = 1.0
    """Weight of KL(q_scan(z|y) || N(0, I))."""
    grounding: float = 10.0
    """lambda: weight of the forward grounding KL(q_vision(z|x) || q_scan(z|y))."""
    keep_prob: float = 0.5
    """Probability that a training symbol names each factor (at least one is always named)."""
    examples: int = 4000
    """(image, factors) examples rendered from the ground truth and encoded once."""
    heldout: float = 0.2
    """Fraction of the symbol-factor combinations held out of training (img2sym is scored on them)."""
    features: Literal["symbols", "latent", "both"] = "symbols"
    """What `encode` returns: img2sym probabilities, the vision posterior means, or both concatenated."""
    seed: int = 0
    """Seeds the examples, the held-out combinations and the minibatches."""

    def validate(self) -> None:
        if self.hidden < 1 or self.examples < 2:
            raise ConfigError(f"scan: hidden >= 1 and examples >= 2, got {self.hidden}, {self.examples}")
        if self.beta < 0 or self.grounding < 0:
            raise ConfigError(f"scan: beta and grounding must be >= 0, got {self.beta}, {self.grounding}")
        if not 0.0 < self.keep_prob <= 1.0:
            raise ConfigError(f"scan: keep_prob must be in (0, 1], got {self.keep_prob}")
        if not 0.0 <= self.heldout < 1.0:
            raise ConfigError(f"scan: heldout must be in [0, 1), got {self.heldout}")


# ----------------------------------------------------------------------------- value names
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.75, 0.1),
    "blue": (0.1, 0.35, 0.95),
    "yellow": (0.95, 0.8, 0.1),
    "orange": (0.95, 0.55, 0.2),
    "purple": (0.6, 0.2, 0.85),
    "cyan": (0.2, 0.85, 0.95),
    "pink": (0.95, 0.5, 0.7),
    "white": (0.95, 0.95, 0.95),
    "grey": (0.6, 0.6, 0.6),
    "black": (0.05, 0.05, 0.05),
    "brown": (0.5, 0.3, 0.1),
}


def color_name(rgb: Sequence[float]) -> str:
    """The nearest palette colour (RGB in [0, 1])."""
    v = np.asarray(rgb, dtype=np.float64)
    return min(PALETTE, key=lambda k: float(((np.asarray(PALETTE[k]) - v) ** 2).sum()))


def value_label(value: Any, numbers: bool = True) -> str:
    """A short readable name for one factor value (textures, RGB colours, tuples of those).

    numbers=False drops plain numbers inside tuples (e.g. a ceiling height next to its texture).
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | np.integer | np.floating):
        return f"{float(value):g}"
    if isinstance(value, tuple | list):
        if len(value) == 3 and all(isinstance(v, float | int) and not isinstance(v, bool) for v in value):
            return color_name(value)
        keep = [v for v in value if numbers or isinstance(v, bool) or not isinstance(v, int | float)]
        parts = list(dict.fromkeys(value_label(v, numbers) for v in keep))
        return "_".join(p for p in parts if p)
    return str(value)


def factor_labels(gt: Any, name: str) -> list[str]:
    """Unique labels for every value of factor `name` (index labels when values are unknown)."""
    size = gt.factor_sizes[list(gt.factor_names).index(name)]
    values = getattr(gt, "values", None)
    if callable(values):
        labels = [value_label(v, numbers=False) for v in values(name)]
        if len(set(labels)) < len(labels):
            labels = [value_label(v) for v in values(name)]
    else:
        labels = [str(i) for i in range(size)]
    if len(set(labels)) < len(labels):  # e.g. two lights both nearest to 'grey'
        labels = [f"{lab}{i}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
    return labels


def default_factors(gt: Any) -> list[str]:
    appearance = getattr(gt, "appearance", None)
    if appearance:
        return [f.name for f in appearance]
    return [n for n, k in zip(gt.factor_names, gt.factor_sizes) if k > 1]


def build_vocabulary(gt: Any, factors: Sequence[str] = ()) -> tuple[str, ...]:
    names = list(gt.factor_names)
    chosen = list(factors) or default_factors(gt)
    for f in chosen:
        if f not in names:
            raise ConfigError(unknown_name_message("factor", f, names))
    return tuple(f"{f}={lab}" for f in chosen for lab in factor_labels(gt, f))


# ----------------------------------------------------------------------------- operators
def gaussian_kl_between(a: Gaussian, b: Gaussian) -> torch.Tensor:
    """KL(N_a || N_b) elementwise for diagonal Gaussians given as (mean, log-variance)."""
    (ma, la), (mb, lb) = a, b
    return 0.5 * (lb - la + (la.exp() + (ma - mb).pow(2)) / lb.exp() - 1.0)


def specified(g: Gaussian, threshold: float = 0.5) -> torch.Tensor:
    """Units a concept specifies: KL from the N(0, 1) prior above `threshold` nats."""
    prior = (torch.zeros_like(g[0]), torch.zeros_like(g[1]))
    return gaussian_kl_between(g, prior) > threshold


def _prior_like(g: Gaussian) -> Gaussian:
    return torch.zeros_like(g[0]), torch.zeros_like(g[1])


def product(a: Gaussian, b: Gaussian) -> Gaussian:
    """Normalised product of two Gaussians: precisions add, means are precision-weighted."""
    pa, pb = torch.exp(-a[1]), torch.exp(-b[1])
    var = 1.0 / (pa + pb)
    return var * (pa * a[0] + pb * b[0]), torch.log(var)


def _select(mask: torch.Tensor, x: Gaussian, y: Gaussian) -> Gaussian:
    return torch.where(mask, x[0], y[0]), torch.where(mask, x[1], y[1])


def op_and(a: Gaussian, b: Gaussian, threshold: float = 0.5, agree: float = 1.0) -> Gaussian:
    """Conjunction: units specified by a or b keep that concept's distribution (both: product)."""
    sa, sb = specified(a, threshold), specified(b, threshold)
    out = _select(sb, b, _prior_like(a))
    out = _select(sa, a, out)
    return _select(sa & sb, product(a, b), out)


def op_in_common(a: Gaussian, b: Gaussian, threshold: float = 0.5, agree: float = 1.0) -> Gaussian:
    """Overlap: units both concepts specify alike (symmetric KL < `agree`) keep their average; others prior."""
    sym = gaussian_kl_between(a, b) + gaussian_kl_between(b, a)
    keep = specified(a, threshold) & specified(b, threshold) & (sym < agree)
    mean = (a[0] + b[0]) / 2
    logvar = torch.log((a[1].exp() + b[1].exp()) / 2)
    return _select(keep, (mean, logvar), _prior_like(a))


def op_ignore(a: Gaussian, b: Gaussian, threshold: float = 0.5, agree: float = 1.0) -> Gaussian:
    """Difference a \\ b: units b specifies go back to the prior; a's other units are kept."""
    return _select(specified(b, threshold), _prior_like(a), a)


Operator = Callable[..., Gaussian]
OPERATORS: Registry[Operator] = Registry("recombination operator")
OPERATORS.register("AND", op_and)
OPERATORS.register("IN_COMMON", op_in_common)
OPERATORS.register("IGNORE", op_ignore)


def recombine(op: str, a: Gaussian, b: Gaussian, threshold: float = 0.5, agree: float = 1.0) -> Gaussian:
    """Apply the named operator (AND, IN_COMMON, IGNORE; 'in common' also accepted)."""
    return OPERATORS.get(op.strip().upper().replace(" ", "_"))(a, b, threshold=threshold, agree=agree)


# ----------------------------------------------------------------------------- the model
def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
    )


def base_env(base: str) -> str:
    """The env family the base model was trained on (its see folder's artifact)."""
    env = SeeArtifact.read(base, finished=False).env
    if not env:
        raise ConfigError(f"scan: the see folder {base} names no env; set env to the family of the symbols")
    return env


def ground_truth_for(env: str, size: int) -> Any:
    from darla.vision.factor_batches import ground_truth_for as gt_for

    return gt_for(env, size)


def _groundable(model: VisionModel) -> bool:
    """SCAN grounds symbols in a Gaussian posterior (mean and log-variance), so its base must have
    one: a variational model with its own encoder (not a wrapper such as scan or iin)."""
    return bool(model.variational) and hasattr(model, "encoder") and model.name not in ("scan", "iin")


@MODELS.register("scan")
class SCAN(VisionModel):
    """Symbol-Concept Association Network on a frozen vision VAE (see the module docstring)."""

    name = "scan"
    config_cls = ScanConfig
    variational = True
    config: ScanConfig
    upstream = (
        Upstream(
            "base",
            "a Gaussian encoder (a variational zoo model: beta_vae, beta_vae_dae, vae, beta_tcvae, ...)",
            lambda model: _groundable(model),
        ),
    )

    def __init__(self, config: ModelConfig, image_shape: Any = (64, 64, 3)) -> None:
        nn.Module.__init__(self)  # no conv template of its own: SCAN lives in `base`'s latent space
        if not isinstance(config, ScanConfig):
            raise ConfigError(f"scan needs a ScanConfig, got {type(config).__name__}")
        if not config.base:
            raise ConfigError("scan needs `base`: the see folder of a trained beta_vae or beta_vae_dae")
        from darla.vision.checkpoint import load

        self.config = config
        self.base: VisionModel = load(config.base, device="cpu")
        if not _groundable(self.base):
            raise ConfigError(
                f"scan: base {config.base!r} is a {self.base.name!r}; SCAN needs {SCAN.upstream[0].interface}"
            )
        shape = tuple(int(v) for v in self.base.image_shape)
        if tuple(int(v) for v in image_shape) != shape:
            raise ConfigError(f"scan: image_shape {tuple(image_shape)} differs from the base model's {shape}")
        self.image_shape = shape
        self.latent_dim = self.base.latent_dim
        self._gt: Any = None
        if not config.vocabulary:
            config.vocabulary = build_vocabulary(self.ground_truth(), config.factors)
        self.vocabulary = tuple(config.vocabulary)
        self.groups = self._groups(self.vocabulary)
        n_sym = len(self.vocabulary)
        self.sym_encoder = _mlp(n_sym, config.hidden, 2 * self.latent_dim)
        self.sym_decoder = _mlp(self.latent_dim, config.hidden, n_sym)
        sizes = {"symbols": n_sym, "latent": self.latent_dim, "both": n_sym + self.latent_dim}
        self.feature_dim = sizes[config.features]
        self._data: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _groups(vocabulary: Sequence[str]) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i, sym in enumerate(vocabulary):
            if "=" not in sym:
                raise ConfigError(f"scan: vocabulary entries must be 'factor=value', got {sym!r}")
            groups.setdefault(sym.split("=", 1)[0], []).append(i)
        return groups

    def train(self, mode: bool = True) -> SCAN:
        super().train(mode)
        self.base.eval()
        return self

    # -- ground truth and examples ----------------------------------------------------------
    def set_ground_truth(self, gt: Any) -> None:
        if tuple(gt.image_shape) != tuple(self.image_shape):
            raise ConfigError(
                f"scan: ground truth renders {tuple(gt.image_shape)}, the base expects {self.image_shape}"
            )
        self._gt = gt
        self._data = None

    def ground_truth(self) -> Any:
        if self._gt is None:
            if not self.config.env:
                self.config.env = base_env(self.config.base)
            self.set_ground_truth(ground_truth_for(self.config.env, self.image_shape[0]))
        return self._gt

    def factor_columns(self) -> list[int]:
        """Ground-truth columns of the symbol factors, in vocabulary order."""
        names = list(self.ground_truth().factor_names)
        missing = [f for f in self.groups if f not in names]
        if missing:
            raise ArtifactError(
                f"scan: factor(s) {missing} of the vocabulary are unknown to {self.config.env}"
            )
        return [names.index(f) for f in self.groups]

    def symbols_of(
        self, factors: np.ndarray | torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Factor rows of the symbol factors (N, F) -> k-hot (N, n_symbols); `keep` (N, F) masks factors."""
        f = torch.as_tensor(np.asarray(factors), dtype=torch.int64)
        y = torch.zeros(f.shape[0], len(self.vocabulary))
        for j, idx in enumerate(self.groups.values()):
            on = torch.ones(f.shape[0], dtype=torch.bool) if keep is None else keep[:, j]
            rows = torch.nonzero(on).flatten()
            y[rows, torch.tensor(idx)[f[rows, j]]] = 1.0
        return y

    @torch.no_grad()
    def prepare(self, rng: np.random.Generator | None = None) -> None:
        """Render and encode `examples` images once; split symbol combinations into train / held out."""
        gt = self.ground_truth()
        rng = rng or make_rng(self.config.seed, "scan", "examples")
        cols = self.factor_columns()
        factors = gt.sample_factors(self.config.examples, rng)
        frames = gt.sample_observations_from_factors(factors, rng)
        mu, logvar = self.posterior_of(frames)
        combos = factors[:, cols]
        uniq, inverse = np.unique(combos, axis=0, return_inverse=True)
        n_held = round(self.config.heldout * len(uniq))
        held_combo = np.zeros(len(uniq), dtype=bool)
        held_combo[make_rng(self.config.seed, "scan", "heldout").permutation(len(uniq))[:n_held]] = True
        held = torch.from_numpy(held_combo[inverse.reshape(-1)])
        self._data = {
            "mu": mu,
            "logvar": logvar,
            "factors": torch.from_numpy(combos),
            "heldout": held,
        }
        logger.info(
            "scan: %d examples, %d symbol combinations (%d held out, %d held-out examples)",
            len(combos),
            len(uniq),
            n_held,
            int(held.sum()),
        )

    @torch.no_grad()
    def posterior_of(self, frames: np.ndarray, batch_size: int = 256) -> Gaussian:
        """The frozen vision posterior (mean, log-variance) of uint8 frames."""
        mus, lvs = [], []
        for s in range(0, len(frames), batch_size):
            x = self.to_float(self.as_batch(frames[s : s + batch_size]))
            mu, lv = self.base.posterior(x)
            assert lv is not None
            mus.append(mu.cpu())
            lvs.append(lv.cpu())
        return torch.cat(mus), torch.cat(lvs)

    @property
    def data(self) -> dict[str, torch.Tensor]:
        if self._data is None:
            self.prepare()
        assert self._data is not None
        return self._data

    # -- SCAN proper ------------------------------------------------------------------------
    def symbol_posterior(self, y: torch.Tensor) -> Gaussian:
        """k-hot symbols (N, n_symbols) -> q_scan(z | y) as (mean, log-variance)."""
        mu, logvar = self.sym_encoder(y).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 6.0)

    def symbol_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.sym_decoder(z)

    def scan_loss(self, y: torch.Tensor, vision: Gaussian) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Symbol reconstruction + beta KL to the prior + lambda forward KL(q_vision || q_scan)."""
        q = self.symbol_posterior(y)
        z = reparameterize(*q)
        n = y.shape[0]
        rec = F.binary_cross_entropy_with_logits(self.symbol_logits(z), y, reduction="sum") / n
        prior = gaussian_kl_between(q, _prior_like(q)).sum() / n
        ground = gaussian_kl_between(vision, q).sum() / n
        total = rec + self.config.beta * prior + self.config.grounding * ground
        return total, {
            "loss": total.detach(),
            "sym_recon": rec.detach(),
            "kl_prior": prior.detach(),
            "kl_grounding": ground.detach(),
        }

    def training_batch(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Gaussian]:
        """n training examples (held-out combinations excluded), symbols naming random factor subsets."""
        d = self.data
        pool = torch.nonzero(~d["heldout"]).flatten()
        if len(pool) == 0:
            raise ConfigError("scan: every example is held out; lower `heldout` or raise `examples`")
        idx = pool[torch.randint(len(pool), (n,), generator=generator)]
        keep = torch.rand(n, len(self.groups), generator=generator) < self.config.keep_prob
        none = ~keep.any(1)
        pick = torch.randint(len(self.groups), (n,), generator=generator)
        keep[none, pick[none]] = True
        y = self.symbols_of(d["factors"][idx], keep).to(self.device)
        return y, (d["mu"][idx].to(self.device), d["logvar"][idx].to(self.device))

    def loss(self, batch: torch.Tensor, step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SCAN loss on len(batch) ground-truth examples (the frames of the see stage are not used)."""
        y, vision = self.training_batch(batch.shape[0])
        return self.scan_loss(y, vision)

    # -- img2sym / sym2img ------------------------------------------------------------------
    def img2sym(self, x: torch.Tensor) -> torch.Tensor:
        """float NCHW [0,1] -> per-symbol probabilities (N, n_symbols), from the vision posterior mean."""
        mu, _ = self.base.posterior(x)
        return torch.sigmoid(self.symbol_logits(mu))

    def describe(self, probs: torch.Tensor) -> list[dict[str, dict[str, float]]]:
        """Per image: {factor: {value: probability normalised within the factor}}, most likely first."""
        out = []
        for row in probs.detach().cpu():
            desc: dict[str, dict[str, float]] = {}
            for factor, idx in self.groups.items():
                p = row[idx] / row[idx].sum().clamp_min(1e-12)
                order = torch.argsort(p, descending=True)
                desc[factor] = {
                    self.vocabulary[idx[int(k)]].split("=", 1)[1]: round(float(p[k]), 4) for k in order
                }
            out.append(desc)
        return out

    def predict_factors(self, probs: torch.Tensor) -> torch.Tensor:
        """Most probable value index of every symbol factor: (N, F)."""
        return torch.stack([probs[:, idx].argmax(1) for idx in self.groups.values()], dim=1)

    def parse_symbols(self, text: str) -> torch.Tensor:
        """'wall=brick,good_color=green' -> a k-hot (1, n_symbols) vector.

        Each term is 'factor=value' or a bare 'value'; a factor or value may be abbreviated by a
        unique prefix or substring. Unknown or ambiguous terms raise a ConfigError listing the
        valid symbols.
        """
        y = torch.zeros(1, len(self.vocabulary))
        terms = [t.strip() for t in text.split(",") if t.strip()]
        if not terms:
            raise ConfigError(f"no symbols given; valid symbols: {', '.join(self.vocabulary)}")
        for term in terms:
            y[0, self._lookup(term)] = 1.0
        return y

    def _lookup(self, term: str) -> int:
        def match(query: str, options: Sequence[str]) -> list[str]:
            q = query.lower()
            for test in (
                lambda o: o.lower() == q,
                lambda o: o.lower().startswith(q),
                lambda o: q in o.lower(),
            ):
                hits = [o for o in options if test(o)]
                if hits:
                    return hits
            return []

        valid = ", ".join(self.vocabulary)
        if "=" in term:
            fq, vq = (s.strip() for s in term.split("=", 1))
            factors = match(fq, list(self.groups))
            cands = [
                self.vocabulary.index(f"{f}={v}")
                for f in factors
                for v in match(vq, [self.vocabulary[i].split("=", 1)[1] for i in self.groups[f]])
            ]
        else:
            values = match(term, [s.split("=", 1)[1] for s in self.vocabulary])
            cands = sorted({i for i, s in enumerate(self.vocabulary) if s.split("=", 1)[1] in values})
        if len(cands) == 1:
            return cands[0]
        if not cands:
            raise ConfigError(f"unknown symbol {term!r}; valid symbols: {valid}")
        raise ConfigError(
            f"ambiguous symbol {term!r}: matches {', '.join(self.vocabulary[i] for i in cands)}; valid symbols: {valid}"
        )

    @torch.no_grad()
    def sym2img(self, y: torch.Tensor, n: int = 16, generator: torch.Generator | None = None) -> torch.Tensor:
        """k-hot (1, n_symbols) or a concept (mean, log-variance) -> n decoded samples, NCHW [0,1]."""
        mu, logvar = self.symbol_posterior(y.to(self.device))
        return self.imagine((mu, logvar), n, generator)

    @torch.no_grad()
    def imagine(
        self, concept: Gaussian, n: int = 16, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        mu, logvar = concept
        eps = torch.randn(n, mu.shape[-1], generator=generator).to(mu.device)
        z = mu.reshape(1, -1) + eps * torch.exp(0.5 * logvar.reshape(1, -1))
        return self.base.decode(z)

    @torch.no_grad()
    def img2sym_accuracy(self, heldout: bool = True) -> dict[str, Any]:
        """img2sym accuracy on the held-out (or training) combinations' images, with chance levels."""
        d = self.data
        sel = d["heldout"] if heldout else ~d["heldout"]
        if int(sel.sum()) == 0:
            return {}
        probs = torch.sigmoid(self.symbol_logits(d["mu"][sel].to(self.device))).cpu()
        pred = self.predict_factors(probs)
        true = d["factors"][sel]
        per = (pred == true).float().mean(0)
        chance = [1.0 / len(idx) for idx in self.groups.values()]
        return {
            "examples": int(sel.sum()),
            "accuracy": float(per.mean()),
            "all_factors_correct": float((pred == true).all(1).float().mean()),
            "chance": float(np.mean(chance)),
            "per_factor": {f: round(float(a), 4) for f, a in zip(self.groups, per)},
            "per_factor_chance": {f: round(c, 4) for f, c in zip(self.groups, chance)},
        }

    # -- the zoo API ------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.features == "latent":
            return self.base.features(x)
        probs = self.img2sym(x)
        if self.config.features == "symbols":
            return probs
        return torch.cat([probs, self.base.features(x)], dim=1)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frozen vision posterior (SCAN's latent space is the vision model's)."""
        return self.base.posterior(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.base.decode_logits(z)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.reconstruct(x)

    def layer_names(self) -> list[str]:
        return self.base.layer_names()

    def layer_output(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        return self.base.layer_output(x, layer)


def load_scan(path: str | Path, device: str = "auto") -> SCAN:
    """A trained SCAN from its folder or model.pt; a non-SCAN checkpoint is an ArtifactError."""
    vision = importlib.import_module("darla.vision")
    model = vision.load(path, device=device)
    if not isinstance(model, SCAN):
        raise ArtifactError(
            f"{path} holds a {model.name!r} model, not a scan; train one with `darla scan train`"
        )
    return model
