"""Invertible building blocks for vector flows (the IIN's T): ActNorm, affine coupling, shuffles.

Every layer maps x -> (y, log|det dy/dx|) per sample and has an exact `inverse`; stacking them
keeps both properties, so a flow's likelihood is exact (change of variables).
"""

from __future__ import annotations

import torch
from torch import nn

from darla.errors import ConfigError
from darla.seeding import derive_seed


class ActNorm(nn.Module):
    """Per-dimension affine y = (x + loc) * exp(log_scale), initialised from the first batch.

    Data-dependent init (Glow): the first training batch comes out with zero mean and unit
    variance per dimension, which makes deep flows trainable from step one. The `initialized`
    flag is a buffer, so a loaded model is never re-initialised.
    """

    initialized: torch.Tensor

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(0)
        std = x.std(0, unbiased=False)
        self.loc.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        y = (x + self.loc) * torch.exp(self.log_scale)
        return y, self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.loc


def _mlp(d_in: int, d_out: int, hidden: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.LeakyReLU(0.1)]
        d = hidden
    last = nn.Linear(d, d_out)
    # zero-initialised output: every coupling starts as the identity
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class AffineCoupling(nn.Module):
    """Both halves in turn: x2 <- x2 * exp(s(x1)) + t(x1), then x1 <- x1 * exp(s'(x2)) + t'(x2).

    The log-scale is bounded, s = bound * tanh(raw), so one block can never blow a dimension up
    or collapse it; the Jacobian is triangular per half and its log-determinant is sum(s).
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 2, scale_bound: float = 1.0) -> None:
        super().__init__()
        if dim < 2:
            raise ConfigError(f"an affine coupling needs dim >= 2, got {dim}")
        self.d1 = dim // 2
        self.d2 = dim - self.d1
        self.scale_bound = float(scale_bound)
        self.net_a = _mlp(self.d1, 2 * self.d2, hidden, depth)  # conditions on x1, moves x2
        self.net_b = _mlp(self.d2, 2 * self.d1, hidden, depth)  # conditions on new x2, moves x1

    def _st(self, net: nn.Module, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = net(cond).chunk(2, dim=1)
        return self.scale_bound * torch.tanh(raw_s), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = x[:, : self.d1], x[:, self.d1 :]
        s, t = self._st(self.net_a, x1)
        x2 = x2 * torch.exp(s) + t
        logdet = s.sum(1)
        s, t = self._st(self.net_b, x2)
        x1 = x1 * torch.exp(s) + t
        return torch.cat([x1, x2], dim=1), logdet + s.sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[:, : self.d1], y[:, self.d1 :]
        s, t = self._st(self.net_b, y2)
        y1 = (y1 - t) * torch.exp(-s)
        s, t = self._st(self.net_a, y1)
        y2 = (y2 - t) * torch.exp(-s)
        return torch.cat([y1, y2], dim=1)


class Shuffle(nn.Module):
    """A fixed, seeded permutation of the dimensions (volume preserving: log-det 0)."""

    perm: torch.Tensor
    inv_perm: torch.Tensor

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(dim, generator=gen)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, self.inv_perm]


class VectorFlow(nn.Module):
    """n_blocks x (ActNorm -> AffineCoupling -> Shuffle) on (N, dim) vectors."""

    def __init__(
        self,
        dim: int,
        n_blocks: int = 8,
        hidden: int = 256,
        depth: int = 2,
        scale_bound: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if n_blocks < 1:
            raise ConfigError(f"a flow needs n_blocks >= 1, got {n_blocks}")
        self.dim = dim
        layers: list[nn.Module] = []
        for i in range(n_blocks):
            layers += [
                ActNorm(dim),
                AffineCoupling(dim, hidden, depth, scale_bound),
                Shuffle(dim, derive_seed(seed, "shuffle", i)),
            ]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (T(x), log|det T'(x)|) per sample."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ConfigError(f"flow expects (N, {self.dim}) inputs, got {tuple(x.shape)}")
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)  # type: ignore[operator]
        return y
