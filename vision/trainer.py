"""Training loop shared by the whole zoo: seeded batches from uint8 frames, Adam, checkpoints.

The loop is deterministic given the seed: batch indices come from a dedicated torch generator,
and every RNG state is saved with the weights and optimisers, so a run killed and resumed from
its last checkpoint ends with the same weights as one that never stopped. Ctrl-C and SIGTERM
stop it between two steps with a checkpoint of the step reached (`held_interrupts`). Checkpoints
are written atomically and hold only tensors and plain types (`torch.load(weights_only=True)`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from darla.errors import ArtifactError, ConfigError
from darla.log import progress
from darla.runtime import HeldInterrupt, held_interrupts, resolve_device, setup_torch
from darla.seeding import derive_seed, make_rng
from darla.vision.base import VisionModel, gaussian_kl, recon_loss_per_image
from darla.vision.checkpoint import model_payload, read_payload, write_payload

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings of a vision model."""

    steps: int = 20_000
    """Optimisation steps (one minibatch each)."""
    batch_size: int = 64
    """Frames per minibatch."""
    lr: float = 1e-4
    """Adam learning rate (DARLA: 1e-4 for the beta-VAE, 1e-3 for the DAE)."""
    holdout: float = 0.05
    """Fraction of the frames held out for evaluation (capped by max_holdout)."""
    max_holdout: int = 2000
    """Largest held-out set."""
    checkpoint_every: int = 500
    """Steps between checkpoints (resume points)."""
    log_every: int = 50
    """Steps between progress/tensorboard scalar updates."""
    image_every: int = 1000
    """Steps between tensorboard reconstruction images (0 = only at the end)."""
    mix: float = 0.0
    """Probability that a training frame gets a rectangle (each side 1/4 to 3/4 of the frame's)
    pasted from another frame of the minibatch, CutMix-style; the model reconstructs the mixed
    frame. Frames where appearance factors co-occur (one room always with one object set) then
    also show them apart, locally. 0: off (DARLA)."""

    hash_exclude: ClassVar[tuple[str, ...]] = ("checkpoint_every", "log_every", "image_every")
    hash_omit_default: ClassVar[tuple[str, ...]] = ("mix",)

    def validate(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "max_holdout"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"train.holdout must be in [0, 1), got {self.holdout}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.mix <= 1.0:
            raise ConfigError(f"train.mix must be in [0, 1], got {self.mix}")


@dataclass
class TrainResult:
    steps: int
    seconds: float
    """Wall time of all sessions that trained this model (resumed runs add up)."""
    images_per_s: float
    """Training throughput of the last session."""
    terms: dict[str, float] = field(default_factory=dict)
    """Loss terms averaged over the last logging window."""
    resumed_from: int = 0


def split_indices(n: int, cfg: TrainConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) frame indices, a seeded split; both sorted for memory-map locality."""
    if n < 2:
        raise ConfigError(f"need at least 2 frames to train, got {n}")
    perm = make_rng(seed, "holdout").permutation(n)
    k = min(cfg.max_holdout, round(n * cfg.holdout))
    k = min(max(k, 1 if cfg.holdout > 0 else 0), n - 1)
    return np.sort(perm[k:]), np.sort(perm[:k])


def mix_frames(frames: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """(N, H, W, C) frames where each, with probability `prob`, has a random rectangle (each side
    1/4 to 3/4 of the frame's) replaced by the same rectangle of another frame of the batch."""
    n, h, w = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    chosen = torch.rand(n, generator=gen) < prob
    donors = torch.randint(n, (n,), generator=gen)
    sides = torch.rand(n, 2, generator=gen) * 0.5 + 0.25
    corners = torch.rand(n, 2, generator=gen)
    out = frames.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        rh, rw = max(1, round(float(sides[i, 0]) * h)), max(1, round(float(sides[i, 1]) * w))
        top, left = int(float(corners[i, 0]) * (h - rh + 1)), int(float(corners[i, 1]) * (w - rw + 1))
        out[i, top : top + rh, left : left + rw] = frames[int(donors[i]), top : top + rh, left : left + rw]
    return out


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "batches": gen.get_state()}


class Trainer:
    """Trains one VisionModel on uint8 frames (N, H, W, C), e.g. `FrameDataset.frames`."""

    def __init__(
        self,
        model: VisionModel,
        frames: np.ndarray,
        cfg: TrainConfig,
        *,
        seed: int = 0,
        checkpoint: str | Path | None = None,
        resume_key: str = "",
        tb_dir: str | Path | None = None,
        extra: dict[str, Any] | None = None,
        device: str = "auto",
        threads: int = 0,
        desc: str = "",
        on_checkpoint: Callable[[int], None] | None = None,
    ) -> None:
        """`on_checkpoint(step)` runs after every periodic checkpoint (e.g. to score the model
        along training); the training RNG and train mode are restored after it."""
        setup_torch(threads)
        if frames.ndim != 4 or frames.dtype != np.uint8:
            raise ConfigError(f"frames must be uint8 (N, H, W, C), got {frames.dtype} {frames.shape}")
        if tuple(frames.shape[1:]) != model.image_shape:
            raise ConfigError(
                f"frames have shape {tuple(frames.shape[1:])} but {model.name} was built for "
                f"{model.image_shape}; set the model's image size to match the frames"
            )
        self.model = model.to(resolve_device(device))
        self.frames = frames
        self.cfg = cfg
        self.seed = seed
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.resume_key = resume_key
        self.tb_dir = Path(tb_dir) if tb_dir else None
        self.extra = dict(extra or {})
        self.desc = desc or model.name
        self.on_checkpoint = on_checkpoint
        self.train_idx, self.holdout_idx = split_indices(len(frames), cfg, seed)
        model.on_dataset(len(self.train_idx))
        self.optimizers = {
            name: torch.optim.Adam(spec.params, lr=spec.lr or cfg.lr, betas=spec.betas)
            for name, spec in model.optimizers().items()
        }
        self.batches = torch.Generator().manual_seed(derive_seed(seed, "batches"))
        self.step = 0
        self.elapsed = 0.0
        torch.manual_seed(derive_seed(seed, "train"))

    # -- state ------------------------------------------------------------------------------
    def state_payload(self) -> dict[str, Any]:
        payload = model_payload(self.model, {**self.extra, "resume_key": self.resume_key})
        payload["train_state"] = {
            "step": self.step,
            "elapsed": self.elapsed,
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "rng": _rng_state(self.batches),
        }
        return payload

    def save_checkpoint(self) -> None:
        if self.checkpoint is not None:
            write_payload(self.checkpoint, self.state_payload())

    def try_resume(self) -> bool:
        """Restore the training state from `checkpoint` if it was written by the same run."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        try:
            payload = read_payload(self.checkpoint)
        except ArtifactError as exc:
            logger.warning("ignoring unreadable checkpoint (%s); training from scratch", exc)
            return False
        state = payload.get("train_state")
        if (
            not state
            or payload.get("extra", {}).get("resume_key") != self.resume_key
            or payload["model"] != self.model.name
        ):
            logger.info("checkpoint %s is from another config; training from scratch", self.checkpoint)
            return False
        self.model.load_state_dict(payload["state_dict"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        torch.set_rng_state(state["rng"]["torch"])
        self.batches.set_state(state["rng"]["batches"])
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        logger.info("resumed %s from step %d", self.desc, self.step)
        return True

    # -- data ------------------------------------------------------------------------------
    def next_batch(self) -> torch.Tensor:
        n = self.cfg.batch_size * self.model.batches_per_step
        pos = torch.randint(len(self.train_idx), (n,), generator=self.batches).numpy()
        raw = torch.from_numpy(self.frames[self.train_idx[pos]])
        if self.cfg.mix > 0:
            raw = mix_frames(raw, self.cfg.mix, self.batches)
        return self.model.to_float(raw)

    # -- loop ------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train to `cfg.steps` (resuming when possible); checkpoint along the way and at the end."""
        resumed = self.step if self.try_resume() else 0
        cfg = self.cfg
        writer = self._writer()
        self.model.train()
        start_step, t0 = self.step, time.perf_counter()
        window: dict[str, torch.Tensor] = {}
        window_n = 0
        last: dict[str, float] = {}
        bar = progress(total=cfg.steps, desc=f"see {self.desc}", unit="step", initial=self.step)
        try:
            with held_interrupts() as interrupt:
                while True:
                    if interrupt.pending:  # between two steps: a state that resumes bit for bit
                        self._stop(interrupt, t0)
                    if self.step >= cfg.steps:
                        break
                    batch = self.next_batch()
                    terms = self.model.train_step(batch, self.step, self.optimizers)
                    self.step += 1
                    for k, v in terms.items():
                        window[k] = window[k] + v if k in window else v.clone()
                    window_n += 1
                    bar.update(1)
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                        last = {k: float(v) / window_n for k, v in window.items()}
                        window, window_n = {}, 0
                        rate = (self.step - start_step) * batch.shape[0] / max(time.perf_counter() - t0, 1e-9)
                        bar.set_postfix(loss=f"{last.get('loss', math.nan):.1f}", img_s=f"{rate:.0f}")
                        if writer is not None:
                            for k, v in last.items():
                                writer.add_scalar(f"train/{k}", v, self.step)
                            writer.add_scalar("train/images_per_s", rate, self.step)
                    if writer is not None and cfg.image_every and self.step % cfg.image_every == 0:
                        self._log_images(writer)
                        self.model.train()
                    if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                        t0 += self._scheduled_checkpoint(t0)  # training time excludes the hook
        finally:
            bar.close()
        seconds = time.perf_counter() - t0
        self.elapsed += seconds
        done = self.step - start_step
        rate = done * cfg.batch_size * self.model.batches_per_step / seconds if done else 0.0
        self.save_checkpoint()
        if writer is not None:
            self._log_images(writer)
            writer.close()
        self.model.eval()
        return TrainResult(self.step, self.elapsed, rate, last, resumed)

    def _scheduled_checkpoint(self, t0: float) -> float:
        """Checkpoint, then run `on_checkpoint` (training RNG and mode restored after it); returns
        the seconds the hook took."""
        self._checkpoint_now(t0)
        if self.on_checkpoint is None:
            return 0.0
        hook_start, rng = time.perf_counter(), torch.get_rng_state()
        self.on_checkpoint(self.step)
        torch.set_rng_state(rng)
        self.model.train()
        return time.perf_counter() - hook_start

    def _stop(self, interrupt: HeldInterrupt, t0: float) -> None:
        """Checkpoint the step reached, then raise the interrupt (KeyboardInterrupt, Terminated)."""
        self._checkpoint_now(t0)
        logger.warning(
            "%s interrupted at step %d of %d: checkpoint saved, the same command resumes from it",
            self.desc,
            self.step,
            self.cfg.steps,
        )
        interrupt.deliver()

    def _checkpoint_now(self, t0: float) -> None:
        # elapsed must include the current session up to now, without double counting at the end
        saved = self.elapsed
        self.elapsed = saved + (time.perf_counter() - t0)
        self.save_checkpoint()
        self.elapsed = saved

    def _writer(self) -> Any:
        if self.tb_dir is None:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.tb_dir), purge_step=self.step or None)

    def _log_images(self, writer: Any) -> None:
        from darla.vision.figures import recon_grid

        idx = self.holdout_idx[:8] if len(self.holdout_idx) else self.train_idx[:8]
        grid = recon_grid(self.model, np.asarray(self.frames[idx]))
        writer.add_image("recon", grid, self.step, dataformats="HWC")


@torch.inference_mode()
def evaluate(model: VisionModel, frames: np.ndarray, batch_size: int = 256) -> dict[str, Any]:
    """Held-out figures: pixel reconstruction errors per image, KL per latent, active latents.

    Reconstructions use the posterior mean. `recon_mse` is the per-image sum of squared errors
    in [0, 1] pixel units, comparable across every model of the zoo (beta_vae_dae included).
    Active latents follow Burda et al.: variance of the posterior mean across frames > 0.01.
    """
    model.eval()
    n = len(frames)
    if n == 0:
        return {}
    bce = mse = 0.0
    kl_sum: torch.Tensor | None = None
    mus = []
    for start in range(0, n, batch_size):
        x = model.to_float(model.as_batch(np.asarray(frames[start : start + batch_size])))
        mu, logvar = model.posterior(x)
        logits = model.decode_logits(mu)
        bce += float(recon_loss_per_image(logits, x, "bernoulli").sum())
        mse += float(recon_loss_per_image(logits, x, "gaussian").sum())
        mus.append(mu)
        if logvar is not None:
            k = gaussian_kl(mu, logvar).sum(0)
            kl_sum = k if kl_sum is None else kl_sum + k
    mu_all = torch.cat(mus)
    var = mu_all.var(0) if n > 1 else torch.zeros(mu_all.shape[1])
    out: dict[str, Any] = {
        "heldout_frames": n,
        "recon_bce": bce / n,
        "recon_mse": mse / n,
        "latent_variance": [round(float(v), 5) for v in var],
        "active_latents": int((var > 0.01).sum()),
    }
    if kl_sum is not None:
        kl = kl_sum / n
        out["kl_per_latent"] = [round(float(v), 5) for v in kl]
        out["kl_total"] = float(kl.sum())
        out["latents_kl_above_0.1"] = int((kl > 0.1).sum())
    return out
