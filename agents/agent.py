"""A trained act-stage policy with its vision model: frames in, actions out.

Transfer and evaluation use only `load_agent(act_dir).predict(frames)`, so they never need to know
whether the policy reads frozen features, a fine-tuned encoder or raw pixels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

from darla.artifacts import ActArtifact, file_hash
from darla.errors import ArtifactError, ConfigError
from darla.runtime import resolve_device

from .config import ActConfig, PolicyInputs
from .factory import load_model
from .features import Encoder, LayerEncoder, StandardizedEncoder, feature_map_shape
from .modes import MODES

if TYPE_CHECKING:
    from darla.vision import VisionModel

logger = logging.getLogger(__name__)

POLICY = "policy.zip"
FEATURE_STATS = "feature_stats.npz"


def uses_feature_norm(cfg: ActConfig) -> bool:
    """True when the policy reads standardised frozen features (their statistics live in the folder)."""
    return cfg.feature_norm != "none" and MODES.get(cfg.mode).frozen_features


def policy_features(cfg: ActConfig, vision: VisionModel) -> Encoder:
    """The vision model at the layer the policy reads (`feature_layer`; default: its latent code)."""
    if cfg.feature_layer and MODES.get(cfg.mode).frozen_features:
        return LayerEncoder(vision, cfg.feature_layer)
    return vision


def policy_feature_map(cfg: ActConfig, encoder: Encoder | None) -> tuple[int, ...] | None:
    """The (C, H, W) map a `feature_head: cnn` policy reads from `encoder`; None for the MLP head."""
    if cfg.feature_head != "cnn" or not MODES.get(cfg.mode).frozen_features:
        return None
    shape = feature_map_shape(encoder)
    if shape is None:
        raise ConfigError(
            f"feature_head 'cnn' reads a convolutional map: set feature_layer to one of the encoder's "
            f"conv layers (got feature_layer {cfg.feature_layer or '(none: the latent code)'!r})"
        )
    return shape


def with_feature_norm(cfg: ActConfig, folder: Path, vision: VisionModel) -> Encoder:
    """The vision model as the policy reads it: at its `feature_layer`, standardised with the
    folder's statistics if asked."""
    base = policy_features(cfg, vision)
    if not uses_feature_norm(cfg):
        return base
    path = folder / FEATURE_STATS
    if not path.is_file():
        raise ArtifactError(
            f"{folder}: the policy reads standardised features (feature_norm {cfg.feature_norm!r}) "
            f"but {FEATURE_STATS} is missing; re-run act"
        )
    with np.load(path) as data:
        return StandardizedEncoder(base, data["mean"], data["std"])


def locate_vision_checkpoint(cfg: ActConfig, inputs: PolicyInputs, act_dir: Path) -> Path:
    """The vision checkpoint an act folder names, verified by content hash.

    The recorded path is tried first; if the run folder was moved, the same file is looked for at
    `<out>/see/<see folder name>/<file name>` relative to the act folder. A file whose hash differs
    from the recorded one is refused: the policy was trained on other features.
    """
    if inputs.vision_checkpoint is None or inputs.vision_hash is None:
        raise ArtifactError(f"{act_dir}: config.yaml names no vision checkpoint (mode {cfg.mode!r})")
    recorded = Path(inputs.vision_checkpoint)
    candidates = [recorded]
    if cfg.see is not None and len(act_dir.parents) >= 4:
        candidates.append(act_dir.parents[3] / "see" / Path(cfg.see).name / recorded.name)
    for path in candidates:
        if path.is_file():
            actual = file_hash(path)
            if actual != inputs.vision_hash:
                raise ArtifactError(
                    f"vision checkpoint {path} changed since this policy was trained "
                    f"(content hash {actual}, expected {inputs.vision_hash}); re-run act on it"
                )
            return path
    raise ArtifactError(f"vision checkpoint not found: {recorded} (needed by {act_dir})")


class Agent:
    """A policy and the vision model it reads: `predict(uint8 frames) -> actions`."""

    def __init__(
        self,
        config: ActConfig,
        model: BaseAlgorithm,
        vision: Encoder | None,
        path: Path | None = None,
        inputs: PolicyInputs | None = None,
    ) -> None:
        self.config = config
        self.inputs = inputs or PolicyInputs()
        """what the policy was trained on (the vision checkpoint and its content hash)"""
        self.model = model
        self.vision = vision
        self.path = path
        self._mode = MODES.get(config.mode)
        self.image_size = int(config.size or 64)

    @property
    def n_actions(self) -> int:
        return int(self.model.action_space.n)  # type: ignore[attr-defined]

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """uint8 frames (n, H, W, 3) (or one (H, W, 3) frame) -> int64 actions (n,)."""
        frames = np.asarray(obs)
        if frames.ndim == 3:
            frames = frames[None]
        self._check_frames(frames)
        actions, _ = self.model.predict(self._mode.prepare(frames, self.vision), deterministic=deterministic)
        return np.asarray(actions, dtype=np.int64).reshape(len(frames))

    def _check_frames(self, frames: np.ndarray) -> None:
        expected = (self.image_size, self.image_size, 3)
        if frames.ndim != 4 or tuple(frames.shape[1:]) != expected or frames.dtype != np.uint8:
            raise ConfigError(
                f"Agent expects uint8 frames of shape (n, {expected[0]}, {expected[1]}, 3), "
                f"got {frames.dtype} {tuple(frames.shape)}"
            )

    def action_probabilities(self, obs: np.ndarray) -> np.ndarray:
        """uint8 frames (n, H, W, 3) -> (n, n_actions) action probabilities: the policy's
        distribution for actor-critic policies, a one-hot of the greedy action otherwise."""
        frames = np.asarray(obs)
        policy = self.model.policy
        if not isinstance(policy, ActorCriticPolicy):
            greedy = self.predict(frames, deterministic=True)
            return np.eye(self.n_actions, dtype=np.float32)[greedy]
        self._check_frames(frames)
        tensor, _ = policy.obs_to_tensor(self._mode.prepare(frames, self.vision))
        with torch.no_grad():
            dist = policy.get_distribution(tensor).distribution
        assert isinstance(dist, torch.distributions.Categorical)
        return np.asarray(dist.probs.cpu().numpy(), dtype=np.float32)

    def __repr__(self) -> str:
        c = self.config
        return f"Agent({c.algo}/{c.mode} on {c.env} {list(c.domains)}, seed {c.seed}, from {self.path})"


def load_agent(act_dir: str | Path, device: str = "auto") -> Agent:
    """Rebuild a finished act stage's policy with its (hash-verified) vision model."""
    artifact = ActArtifact.read(act_dir)
    return agent_from_folder(artifact.path, artifact.config(ActConfig), PolicyInputs.of(artifact.raw), device)


def agent_from_folder(path: Path, cfg: ActConfig, inputs: PolicyInputs, device: str = "auto") -> Agent:
    """The agent saved in `path` under the resolved `cfg` (no completion check: act uses it to verify)."""
    if not (path / POLICY).is_file():
        raise ArtifactError(f"{path} holds no {POLICY}")
    dev = resolve_device(device)
    vision: Encoder | None = None
    checkpoint: str | None = None
    if MODES.get(cfg.mode).needs_vision:
        import darla.vision

        ckpt = locate_vision_checkpoint(cfg, inputs, path)
        checkpoint = str(ckpt)
        vision = with_feature_norm(cfg, path, darla.vision.load(ckpt, device=dev))
    model = load_model(
        path / POLICY,
        cfg.algo,
        cfg.mode,
        cfg.hparams,
        vision_checkpoint=checkpoint,
        feature_map=policy_feature_map(cfg, vision),
        device=dev,
    )
    expected = _observation_shape(cfg, vision)
    if tuple(model.observation_space.shape) != expected:
        raise ArtifactError(
            f"{path / POLICY} reads observations of shape {tuple(model.observation_space.shape)}, but its "
            f"config ({cfg.mode} on {'frames' if vision is None else 'the vision model'}) gives {expected}"
        )
    model.policy.set_training_mode(False)
    return Agent(cfg, model, vision, path, inputs)


def _observation_shape(cfg: ActConfig, vision: Encoder | None) -> tuple[int, ...]:
    """What the policy of `cfg` reads: a feature vector (frozen), or channel-first frames."""
    if MODES.get(cfg.mode).frozen_features:
        assert vision is not None
        return (int(vision.feature_dim),)
    size = int(cfg.size or 64)
    return (3, size, size)
