"""How frames reach a policy: the act modes `frozen` (DARLA), `finetune` (DARLA_FT) and `pixels`.

A `Mode` says which env wrapper turns frames into the policy's observations, which SB3 policy and
kwargs read them, what to do after the policy is built, and how to prepare raw frames for `predict`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import VecEnv, VecTransposeImage

from darla.errors import ConfigError
from darla.registry import Registry

from .features import (
    Encoder,
    EncoderExtractor,
    FrozenEncoderVecEnv,
    WorkerEncoder,
    encode_batch,
    is_feature_space,
)


class Mode:
    """How frames reach the policy. Subclasses are registered in MODES."""

    name: ClassVar[str]
    needs_vision: ClassVar[bool]
    policy: ClassVar[str]
    cost: ClassVar[float] = 1.0
    """time per env step relative to frozen (a scheduling hint: `darla run` starts long stages first)"""
    frozen_features: ClassVar[bool] = False
    """the policy reads a frozen encoder's features (what act's `feature_norm` standardises)"""
    min_size: ClassVar[int] = 0
    """the smallest frame side the policy's network takes (0: any)"""
    network: ClassVar[str] = "a network"
    """what reads the frames, named in errors"""

    def check_frame_size(self, height: int, width: int) -> None:
        """Refuse frames the policy's network cannot take (a run checks its see size before it starts)."""
        if min(height, width) < self.min_size:
            raise ConfigError(
                f"mode {self.name!r} uses {self.network}, which needs frames of at least "
                f"{self.min_size}x{self.min_size}; got {height}x{width} (set see.size >= {self.min_size})"
            )

    def wrap_env(self, venv: VecEnv, vision: Encoder | None) -> VecEnv:
        raise NotImplementedError

    def worker_wrapper(self, vision: Encoder | None, vec: str) -> Callable[[gym.Env], gym.Env] | None:
        """What wraps each env inside its worker (`make_vec_env(wrapper=...)`); None: nothing."""
        return None

    def policy_kwargs(self, vision_checkpoint: str | None) -> dict[str, Any]:
        return {}

    def after_build(self, model: BaseAlgorithm, vision_checkpoint: str | None) -> None:
        """Called once on a freshly built model (not on a reloaded one)."""

    def prepare(self, frames: np.ndarray, vision: Encoder | None) -> np.ndarray:
        """uint8 (n, H, W, 3) frames -> what the policy's observation space holds."""
        raise NotImplementedError


MODES: Registry[Mode] = Registry("act mode")


def _require(vision: Encoder | None, mode: str) -> Encoder:
    if vision is None:
        raise ConfigError(f"mode {mode!r} needs a vision model")
    return vision


class FrozenMode(Mode):
    """DARLA: the policy (MlpPolicy) sees the frozen encoder's features, computed by the env wrapper."""

    name = "frozen"
    needs_vision = True
    policy = "MlpPolicy"
    frozen_features = True

    def wrap_env(self, venv: VecEnv, vision: Encoder | None) -> VecEnv:
        vision = _require(vision, self.name)
        if is_feature_space(venv.observation_space, vision):
            return venv  # the workers already encode (worker_wrapper)
        return FrozenEncoderVecEnv(venv, vision)

    def worker_wrapper(self, vision: Encoder | None, vec: str) -> Callable[[gym.Env], gym.Env] | None:
        # in one process a batched pass beats per-env ones; with worker processes, encoding where
        # the frames are made runs beside the envs on every core and keeps frames off the pipes
        return WorkerEncoder(_require(vision, self.name)) if vec == "subproc" else None

    def prepare(self, frames: np.ndarray, vision: Encoder | None) -> np.ndarray:
        return encode_batch(_require(vision, self.name), frames)


class _ImageMode(Mode):
    """Frames go into the policy: channel-first uint8, scaled to [0, 1] by SB3 (stated, not guessed)."""

    policy = "CnnPolicy"

    def wrap_env(self, venv: VecEnv, vision: Encoder | None) -> VecEnv:
        return VecTransposeImage(venv)

    def policy_kwargs(self, vision_checkpoint: str | None) -> dict[str, Any]:
        return {"normalize_images": True}

    def prepare(self, frames: np.ndarray, vision: Encoder | None) -> np.ndarray:
        return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))


class FinetuneMode(_ImageMode):
    """DARLA_FT: the pretrained encoder is the policy's features extractor, trained end to end."""

    name = "finetune"
    needs_vision = True
    cost = 3.0  # SeekAvoid 64x64, 1 thread: ~120 env steps/s against frozen's ~370

    def policy_kwargs(self, vision_checkpoint: str | None) -> dict[str, Any]:
        if vision_checkpoint is None:
            raise ConfigError("mode 'finetune' needs a vision checkpoint")
        return {
            "normalize_images": True,
            "features_extractor_class": EncoderExtractor,
            "features_extractor_kwargs": {"vision_checkpoint": str(vision_checkpoint)},
        }

    def after_build(self, model: BaseAlgorithm, vision_checkpoint: str | None) -> None:
        # PPO/A2C initialised every extractor orthogonally; DQN built two (online + target): restore all.
        extractors = [m for m in model.policy.modules() if isinstance(m, EncoderExtractor)]
        if not extractors:
            raise ConfigError("finetune: the policy holds no EncoderExtractor")
        for extractor in extractors:
            extractor.load_pretrained(str(vision_checkpoint))


class PixelsMode(_ImageMode):
    """End-to-end baseline (DARLA_ENT-like): SB3's NatureCNN on raw frames, no pretraining."""

    name = "pixels"
    needs_vision = False
    cost = 1.5  # ~240 env steps/s
    min_size = 36  # NatureCNN's 8/4, 4/2, 3/1 convolutions need at least 36x36
    network = "NatureCNN"

    def wrap_env(self, venv: VecEnv, vision: Encoder | None) -> VecEnv:
        h, w = venv.observation_space.shape[:2]  # type: ignore[index]
        self.check_frame_size(h, w)
        return super().wrap_env(venv, vision)

    def policy_kwargs(self, vision_checkpoint: str | None) -> dict[str, Any]:
        return {"normalize_images": True, "features_extractor_class": NatureCNN}


MODES.register("frozen", FrozenMode())
MODES.register("finetune", FinetuneMode())
MODES.register("pixels", PixelsMode())
