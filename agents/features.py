"""How a vision model's features reach an SB3 policy.

Two routes, because they trade speed for trainability:

- `FrozenEncoderVecEnv` (DARLA): a VecEnv wrapper that encodes the whole batch of frames once per
  step under `torch.no_grad()` and hands the policy a float32 feature vector (MlpPolicy). The
  encoder is never part of the policy, so no optimiser, `policy.train()` or orthogonal init can touch
  it, and its cost is one batched forward pass per step. With worker processes (`subproc`),
  `WorkerEncoder` puts a copy of the frozen encoder in every worker instead (`EncodeFrames`): the
  encoding then runs on the cores the envs use, in parallel with them, and only features cross
  the pipe.
- `EncoderExtractor` (DARLA_FT): the encoder inside the policy as a `BaseFeaturesExtractor`,
  differentiable through `model.features(x)`, trained end to end.

`StandardizedEncoder` optionally puts a fixed per-dimension standardisation behind a frozen encoder
(act's `feature_norm`); every frozen route takes either.
"""

from __future__ import annotations

import copy
import hashlib
from typing import TYPE_CHECKING, Any, Union

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from darla.errors import ConfigError

if TYPE_CHECKING:
    from darla.vision import VisionModel

Encoder = Union["VisionModel", "StandardizedEncoder", "LayerEncoder"]
"""What the frozen routes read features from: a vision model (or one of its layers), possibly standardised."""


def parameter_hash(module: torch.nn.Module) -> str:
    """A content hash of every parameter and buffer (to prove a frozen encoder never changed)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_image_shape(model: Encoder, shape: tuple[int, ...], what: str = "the env's frames") -> None:
    """A vision model only reads frames of the size it was trained on: say both sizes when they differ."""
    expected = tuple(int(s) for s in model.image_shape)
    if tuple(shape) != expected:
        raise ConfigError(
            f"image size mismatch: the vision model {type(model).__name__} was trained on "
            f"{expected[0]}x{expected[1]}x{expected[2]} frames but {what} are "
            f"{'x'.join(str(s) for s in shape)}; set the act size to {expected[0]} (or retrain see at this size)"
        )


def freeze(model: Encoder) -> Encoder:
    """Eval mode and no gradients: the encoder is a fixed function of the frame."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def frozen_for_frames(encoder: Encoder, space: spaces.Space, who: str) -> Encoder:
    """The frozen `encoder`, once `space` is shown to hold uint8 frames of the size it was trained on."""
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8 or len(space.shape) != 3:
        raise ConfigError(f"{who} expects uint8 (H, W, 3) frames, got {space}")
    check_image_shape(encoder, tuple(space.shape))
    return freeze(encoder)


def encode_batch(model: Encoder, frames: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W, 3) -> float32 (n, feature_dim): one batched, gradient-free forward pass."""
    with torch.no_grad():
        feats = model.encode(np.ascontiguousarray(frames))
    return feats.detach().to("cpu", torch.float32).numpy()


class FrozenEncoderVecEnv(VecEnvWrapper):
    """Replaces every observation (and every `terminal_observation`) by the frozen encoder's features.

    SB3 bootstraps the value of truncated episodes from `infos[i]["terminal_observation"]`; that frame
    must be encoded too, or the policy would see raw pixels where it expects features.
    """

    def __init__(self, venv: VecEnv, encoder: Encoder) -> None:
        self.encoder = frozen_for_frames(encoder, venv.observation_space, type(self).__name__)
        super().__init__(venv, observation_space=feature_space(encoder))

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        return encode_batch(self.encoder, np.asarray(obs))

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        feats = encode_batch(self.encoder, np.asarray(obs))
        ended = [i for i, info in enumerate(infos) if info.get("terminal_observation") is not None]
        if ended:
            terminal = np.stack([np.asarray(infos[i]["terminal_observation"]) for i in ended])
            for i, feat in zip(ended, encode_batch(self.encoder, terminal)):
                infos[i]["terminal_observation"] = feat
        return feats, rewards, dones, infos


def feature_space(encoder: Encoder) -> spaces.Box:
    return spaces.Box(low=-np.inf, high=np.inf, shape=(int(encoder.feature_dim),), dtype=np.float32)


def is_feature_space(space: spaces.Space, encoder: Encoder) -> bool:
    """True when observations are already this encoder's features (encoded inside the workers)."""
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.float32
        and tuple(space.shape) == (int(encoder.feature_dim),)
    )


class EncodeFrames(gymnasium.ObservationWrapper):
    """One env whose observations are the frozen encoder's features (terminal frames included,
    since SubprocVecEnv's worker stores the wrapped env's last observation)."""

    def __init__(self, env: gymnasium.Env, encoder: Encoder) -> None:
        super().__init__(env)
        self.encoder = frozen_for_frames(encoder, env.observation_space, type(self).__name__)
        self.observation_space = feature_space(encoder)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return encode_batch(self.encoder, np.asarray(observation)[None])[0]


class WorkerEncoder:
    """Picklable env wrapper factory for `make_vec_env(wrapper=...)`: each worker process gets its
    own CPU copy of the frozen encoder, run at `threads` torch threads (the workers share the cores)."""

    def __init__(self, encoder: Encoder, threads: int = 1) -> None:
        self.encoder = copy.deepcopy(encoder).to("cpu")  # EncodeFrames freezes it in the worker
        self.threads = threads

    def __call__(self, env: gymnasium.Env) -> gymnasium.Env:
        torch.set_num_threads(self.threads)  # called in the worker process, never in the trainer's
        return EncodeFrames(env, self.encoder)


class StandardizedEncoder(torch.nn.Module):
    """A frozen vision model whose features are shifted and scaled per dimension by fixed statistics.

    The statistics come from frames of the act stage's own (source) domains and never change, so the
    policy's input stays a fixed function of the frame, as DARLA's frozen features are. It exists
    because PPO's MLP learns at the speed its inputs' scales allow: latents whose spreads differ by
    an order of magnitude leave the small ones (often the objects) learned last.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, base: VisionModel | LayerEncoder, mean: Any, std: Any) -> None:
        super().__init__()
        self.base = base
        mean_t = torch.as_tensor(np.asarray(mean), dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(np.asarray(std), dtype=torch.float32).reshape(-1)
        dim = int(base.feature_dim)
        if mean_t.numel() != dim or std_t.numel() != dim:
            raise ConfigError(
                f"feature statistics of size {mean_t.numel()}/{std_t.numel()} do not fit "
                f"{type(base).__name__}'s {dim} features"
            )
        if not bool(torch.isfinite(mean_t).all()) or not bool((std_t > 0).all()):
            raise ConfigError("feature statistics must be finite with positive standard deviations")
        self.register_buffer("mean", mean_t.to(base.device))
        self.register_buffer("std", std_t.to(base.device))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.base.image_shape

    @property
    def feature_dim(self) -> int:
        return int(self.base.feature_dim)

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def map_shape(self) -> tuple[int, ...] | None:
        return feature_map_shape(self.base)

    def encode(self, obs: Any, batch_size: int = 1024) -> torch.Tensor:
        """Frames -> (N, feature_dim) standardised posterior means (no grad)."""
        feats = self.base.encode(obs, batch_size=batch_size)
        return (feats - self.mean.to(feats.device)) / self.std.to(feats.device)


class LayerEncoder(torch.nn.Module):
    """A frozen vision model read at one of its encoder's layers instead of its latent code
    (act's `feature_layer`): the layer's activation map, flattened.

    Why: a latent code can lose what a policy needs in a held-out domain while earlier layers keep
    it (on SeekAvoid, a clone of the pixel policy kept all of its source return on the targets
    reading conv1 of beta_vae_dae, 23-29% reading its latents).
    """

    def __init__(self, base: VisionModel, layer: str) -> None:
        super().__init__()
        from darla.vision.base import require_encoder_layer

        require_encoder_layer(base, layer)
        self.base = base
        self.layer = layer
        h, w, c = base.image_shape
        with torch.no_grad():
            probe = self._activation(torch.zeros(1, c, h, w, device=base.device))
        self._dim = int(probe[0].numel())
        self._map_shape = tuple(int(s) for s in probe.shape[1:]) if probe.dim() == 4 else None

    def _activation(self, x: torch.Tensor) -> torch.Tensor:
        # what the next layer reads: the activation after the layer's ReLU (a map for conv layers)
        return torch.relu(self.base.layer_output(x, self.layer))

    def _read(self, x: torch.Tensor) -> torch.Tensor:
        return self._activation(x).flatten(1)

    @property
    def map_shape(self) -> tuple[int, ...] | None:
        """(channels, height, width) of a convolutional layer's map (its features, unflattened);
        None for a vector layer (fc)."""
        return self._map_shape

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.base.image_shape

    @property
    def feature_dim(self) -> int:
        return self._dim

    @property
    def device(self) -> torch.device:
        return self.base.device

    def encode(self, obs: Any, batch_size: int = 1024) -> torch.Tensor:
        """Frames -> (N, feature_dim) activations of the layer (no grad)."""
        t = self.base.as_batch(obs)
        with torch.inference_mode():
            outs = [
                self._read(self.base.to_float(t[i : i + batch_size], self.device))
                for i in range(0, t.shape[0], batch_size)
            ]
        return torch.cat(outs)


def feature_map_shape(encoder: Encoder | None) -> tuple[int, ...] | None:
    """(C, H, W) when the encoder's features are a flattened convolutional map, else None."""
    shape = getattr(encoder, "map_shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


class FeatureMapCNN(BaseFeaturesExtractor):
    """A small trainable conv net on a frozen convolutional layer's map (act's `feature_head: cnn`).

    Why: the frozen routes hand the policy the map flattened, and an MLP on thousands of flattened
    activations has no spatial prior (on SeekAvoid, PPO with an MLP on beta_vae_dae's conv1 learned
    far slower than NatureCNN on pixels). This head gives it NatureCNN's prior at the layer's
    resolution (32 then 64 channels: a strided 4x4 convolution, a 3x3 one, then a linear layer,
    about NatureCNN's cost on 64x64 frames when read at a 16x16 layer); the encoder before it
    stays frozen.
    """

    def __init__(self, observation_space: spaces.Box, map_shape: list[int], features_dim: int = 256) -> None:
        shape = tuple(int(s) for s in map_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ConfigError(
                f"FeatureMapCNN needs a (channels, height, width) map shape, got {list(map_shape)}"
            )
        flat = int(np.prod(observation_space.shape))
        if flat != int(np.prod(shape)):
            raise ConfigError(
                f"FeatureMapCNN: observations of {flat} features cannot be a {'x'.join(map(str, shape))} map"
            )
        super().__init__(observation_space, features_dim=features_dim)
        self.map_shape = shape
        self.convs = torch.nn.Sequential(
            torch.nn.Conv2d(shape[0], 32, kernel_size=4, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = int(self.convs(torch.zeros(1, *shape)).shape[1])
        self.linear = torch.nn.Sequential(torch.nn.Linear(n_flat, features_dim), torch.nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(observations.reshape(-1, *self.map_shape)))


def feature_moments(features: np.ndarray, min_std: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of (n, d) features; a dimension that never moves
    keeps a floor of `min_std` (scaled up by at most 1/min_std) rather than a division by zero."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ConfigError(f"feature statistics need (n >= 2, d) features, got shape {feats.shape}")
    return feats.mean(0).astype(np.float32), np.maximum(feats.std(0), min_std).astype(np.float32)


class EncoderExtractor(BaseFeaturesExtractor):
    """The vision model's encoder as a trainable SB3 features extractor (mode `finetune`).

    It is built from the checkpoint path so that a saved policy can be rebuilt; PPO/A2C re-initialise
    every extractor orthogonally while building the policy, so the factory loads the pretrained
    weights again *after* construction (`load_pretrained`).
    """

    def __init__(self, observation_space: spaces.Box, vision_checkpoint: str) -> None:
        import darla.vision

        model = darla.vision.load(vision_checkpoint, device="cpu")
        shape = tuple(observation_space.shape)
        if len(shape) != 3 or shape[0] != 3:
            raise ConfigError(f"EncoderExtractor expects channel-first (3, H, W) frames, got {shape}")
        check_image_shape(model, (shape[1], shape[2], shape[0]))
        super().__init__(observation_space, features_dim=int(model.feature_dim))
        # SB3's orthogonal init reshapes weights with .view(): it needs the default (contiguous) layout
        model.to(memory_format=torch.contiguous_format)
        for p in model.parameters():
            p.requires_grad_(True)
        self.encoder = model

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        # SB3 has already scaled uint8 frames to [0, 1] (normalize_images=True) and they are NCHW.
        return self.encoder.features(observations)

    def load_pretrained(self, vision_checkpoint: str) -> None:
        import darla.vision

        pretrained = darla.vision.load(vision_checkpoint, device="cpu")
        self.encoder.load_state_dict(pretrained.state_dict())
