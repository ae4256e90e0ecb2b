"""`darla bench see`: vision training throughput of the project's trainer vs a plain PyTorch loop,
and encoding throughput, measured in one run on the same machine state.

The plain loop is the reference a reader would write by hand: the same beta-VAE architecture
(default memory format), the same batch size and thread count, random batches indexed from an
in-memory float tensor, Adam. Both sides run in alternating rounds after a warm-up, and the best
round of each is kept, so background load on a shared machine hits both alike.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from darla.artifacts import host_info
from darla.cli import Command
from darla.config import to_dict
from darla.errors import ConfigError
from darla.runtime import num_cores, setup_torch
from darla.vision import build
from darla.vision.trainer import TrainConfig, Trainer

logger = logging.getLogger(__name__)


@dataclass
class BenchSeeConfig:
    """Benchmark beta-VAE training (trainer vs plain loop) and encoding."""

    size: int = 64
    """Frame side in pixels."""
    batch_size: int = 64
    """Training minibatch."""
    steps: int = 20
    """Timed training steps per round."""
    warmup: int = 3
    """Untimed steps before each timing."""
    rounds: int = 2
    """Alternating rounds (trainer, plain loop); the best of each is reported."""
    encode_batch: int = 256
    """Batch size of the encode benchmark."""
    encode_frames: int = 4096
    """Frames encoded per encode round."""
    threads: int = 0
    """Torch threads (0 = all cores)."""
    seed: int = 0
    """Seed of the synthetic frames and models."""

    def validate(self) -> None:
        for name in ("size", "batch_size", "steps", "rounds", "encode_batch", "encode_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


class PlainBetaVAE(nn.Module):
    """DARLA's beta-VAE written the plain way (for the reference loop only)."""

    def __init__(self, size: int, latent: int = 32) -> None:
        super().__init__()
        ch = [3, 32, 32, 64, 64]
        self.enc = nn.Sequential(
            *[m for i in range(4) for m in (nn.Conv2d(ch[i], ch[i + 1], 4, 2, 1), nn.ReLU())],
            nn.Flatten(),
            nn.Linear(64 * (size // 16) ** 2, 256),
            nn.ReLU(),
            nn.Linear(256, 2 * latent),
        )
        self.dec_fc = nn.Sequential(
            nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 64 * (size // 16) ** 2), nn.ReLU()
        )
        rev = [64, 64, 32, 32, 3]
        layers: list[nn.Module] = []
        for i in range(4):
            layers.append(nn.ConvTranspose2d(rev[i], rev[i + 1], 4, 2, 1))
            if i < 3:
                layers.append(nn.ReLU())
        self.dec = nn.Sequential(*layers)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.enc(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        s = self.size // 16
        logits = self.dec(self.dec_fc(z).view(-1, 64, s, s))
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1).mean()
        return rec + 4.0 * kl


def _plain_round(
    model: PlainBetaVAE, opt: torch.optim.Optimizer, data: torch.Tensor, cfg: BenchSeeConfig
) -> float:
    g = torch.Generator().manual_seed(cfg.seed)

    def step() -> None:
        idx = torch.randint(data.shape[0], (cfg.batch_size,), generator=g)
        loss = model(data[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()

    for _ in range(cfg.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        step()
    return cfg.steps * cfg.batch_size / (time.perf_counter() - t0)


def _trainer_round(trainer: Trainer, cfg: BenchSeeConfig) -> float:
    trainer.cfg.steps = trainer.step + cfg.warmup
    trainer.fit()
    trainer.cfg.steps = trainer.step + cfg.steps
    return trainer.fit().images_per_s


def run_bench(cfg: BenchSeeConfig) -> dict[str, Any]:
    cfg.validate()
    setup_torch(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    frames = rng.integers(0, 256, (2048, cfg.size, cfg.size, 3), dtype=np.uint8)
    data = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255).contiguous()

    torch.manual_seed(cfg.seed)
    model = build("beta_vae", image_shape=(cfg.size, cfg.size, 3))
    n_params = sum(p.numel() for p in model.parameters())
    tcfg = TrainConfig(steps=1, batch_size=cfg.batch_size, lr=1e-4, checkpoint_every=10**9, log_every=10)
    trainer = Trainer(model, frames, tcfg, seed=cfg.seed, threads=cfg.threads, desc="bench")
    plain = PlainBetaVAE(cfg.size)
    plain_params = sum(p.numel() for p in plain.parameters())
    if plain_params != n_params:  # pragma: no cover - guards the comparison itself
        raise AssertionError(f"architectures differ: {plain_params} vs {n_params} parameters")
    opt = torch.optim.Adam(plain.parameters(), lr=1e-4)

    trainer_rates, plain_rates = [], []
    for r in range(cfg.rounds):
        # alternate which side goes first so drifting background load does not favour one
        order = ("trainer", "plain") if r % 2 == 0 else ("plain", "trainer")
        for side in order:
            if side == "trainer":
                trainer_rates.append(_trainer_round(trainer, cfg))
            else:
                plain_rates.append(_plain_round(plain, opt, data, cfg))
        logger.info("round %d: trainer %.0f img/s, plain %.0f img/s", r, trainer_rates[-1], plain_rates[-1])

    enc = build("beta_vae", image_shape=(cfg.size, cfg.size, 3)).eval()
    enc_frames = np.resize(frames, (cfg.encode_frames, cfg.size, cfg.size, 3))
    enc.encode(enc_frames[: cfg.encode_batch], batch_size=cfg.encode_batch)  # warm-up
    encode_rates = []
    for _ in range(cfg.rounds):
        t0 = time.perf_counter()
        enc.encode(enc_frames, batch_size=cfg.encode_batch)
        encode_rates.append(cfg.encode_frames / (time.perf_counter() - t0))

    best_trainer, best_plain = max(trainer_rates), max(plain_rates)
    return {
        "ratio": round(best_trainer / best_plain, 3),
        "trainer_images_per_s": round(best_trainer, 1),
        "plain_images_per_s": round(best_plain, 1),
        "encode_images_per_s": round(max(encode_rates), 1),
        "trainer_rounds": [round(v, 1) for v in trainer_rates],
        "plain_rounds": [round(v, 1) for v in plain_rates],
        "encode_rounds": [round(v, 1) for v in encode_rates],
        "threads": torch.get_num_threads(),
        "cores": num_cores(),
        "host": host_info(),
        "parameters": n_params,
        "config": to_dict(cfg),
    }


COMMAND = Command(
    words=("bench", "see"),
    config=BenchSeeConfig,
    run=run_bench,
    help="benchmark vision training (trainer vs plain loop) and encoding",
)
