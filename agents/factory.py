"""Algorithm x mode: build (or reload) an SB3 model whose policy sees a vision model's features.

Two registries instead of if/elif chains: `ALGOS` (ppo, a2c, dqn, mfec; `darla.agents.algos`) says
which class to build and how it is saved; `MODES` (frozen, finetune, pixels; `darla.agents.modes`)
says how frames reach the policy. Hyperparameters come from `hyperparams/<algo>.yaml` per env family (rl-baselines3-zoo
style) and are checked against the algorithm's constructor, so a typo is an error, not a no-op.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from darla.config import merge
from darla.envs.vec import resolve_vec
from darla.errors import ConfigError
from darla.registry import Registry, unknown_name_message

from .algos import ALGOS, AlgoSpec
from .features import Encoder, FeatureMapCNN
from .modes import MODES
from .readouts import FEATURE_HEADS

logger = logging.getLogger(__name__)


# set by the act stage itself, never by hyperparameter files
RESERVED = frozenset(
    {"self", "policy", "env", "device", "seed", "tensorboard_log", "verbose", "_init_setup_model"}
)

ACTIVATIONS: Registry[type[torch.nn.Module]] = Registry("activation function")
ACTIVATIONS.register("relu", torch.nn.ReLU)
ACTIVATIONS.register("tanh", torch.nn.Tanh)
ACTIVATIONS.register("elu", torch.nn.ELU)
ACTIVATIONS.register("leaky_relu", torch.nn.LeakyReLU)


# ----------------------------------------------------------------------------- hyperparameters
def hyperparams_file(algo: str) -> dict[str, Any]:
    """The parsed `hyperparams/<algo>.yaml` (sections: `default` and one per env family)."""
    ALGOS.get(algo)
    res = resources.files("darla.agents") / "hyperparams" / f"{algo}.yaml"
    if not res.is_file():
        return {}
    data = yaml.safe_load(res.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"hyperparams/{algo}.yaml must hold a mapping of env families")
    return data


def default_hyperparams(algo: str, family: str, mode: str, head: str = "mlp") -> dict[str, Any]:
    """`default` <- the family's section <- their `modes: {<mode>: ...}` overrides <- that mode's
    `heads: {<head>: ...}` overrides (act's `feature_head`)."""
    MODES.get(mode)
    if head not in FEATURE_HEADS:
        raise ConfigError(unknown_name_message("feature_head", head, list(FEATURE_HEADS)))
    data = hyperparams_file(algo)
    merged = merge(dict(data.get("default") or {}), dict(data.get(family) or {}))
    per_mode = dict(merged.pop("modes", None) or {})
    for name in per_mode:
        MODES.get(name)
    merged = merge(merged, dict(per_mode.get(mode) or {}))
    per_head = dict(merged.pop("heads", None) or {})
    for name in per_head:
        if name not in FEATURE_HEADS:
            raise ConfigError(
                f"hyperparams/{algo}.yaml: " + unknown_name_message("feature_head", name, list(FEATURE_HEADS))
            )
    return merge(merged, dict(per_head.get(head) or {}))


def allowed_hyperparams(algo: str) -> list[str]:
    params = inspect.signature(ALGOS.get(algo).cls.__init__).parameters
    return sorted(p for p in params if p not in RESERVED)


def check_hyperparams(algo: str, hparams: dict[str, Any]) -> None:
    allowed = allowed_hyperparams(algo)
    for key in hparams:
        if key not in allowed:
            raise ConfigError(unknown_name_message(f"hyperparameter for {algo}", key, allowed))
    activation = (hparams.get("policy_kwargs") or {}).get("activation_fn")
    if activation is not None:
        ACTIVATIONS.get(activation)


def resolve_hyperparams(
    algo: str, family: str, mode: str, overrides: dict[str, Any], head: str = "mlp"
) -> dict[str, Any]:
    """The full, validated hyperparameters of one act run (what its config.yaml records)."""
    hparams = merge(default_hyperparams(algo, family, mode, head), dict(overrides))
    check_hyperparams(algo, hparams)
    return hparams


def policy_kwargs(
    algo: str,
    mode: str,
    hparams: dict[str, Any],
    vision_checkpoint: str | None,
    feature_map: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """The user's policy kwargs (YAML-safe) turned into SB3's, with the mode's own on top; with
    `feature_map` (C, H, W), frozen features are read by a `FeatureMapCNN` of that map."""
    kwargs = dict(hparams.get("policy_kwargs") or {})
    if "activation_fn" in kwargs:
        kwargs["activation_fn"] = ACTIVATIONS.get(kwargs["activation_fn"])
    clash = {"features_extractor_class", "features_extractor_kwargs", "normalize_images"} & set(kwargs)
    if clash:
        raise ConfigError(f"policy_kwargs {sorted(clash)} are set by mode {mode!r}; remove them from hparams")
    kwargs.update(MODES.get(mode).policy_kwargs(vision_checkpoint))
    if feature_map is not None:
        if not MODES.get(mode).frozen_features:
            raise ConfigError(
                f"a convolutional feature head reads frozen feature maps; mode {mode!r} has none"
            )
        kwargs.update(
            features_extractor_class=FeatureMapCNN,
            features_extractor_kwargs={"map_shape": [int(s) for s in feature_map]},
        )
    return kwargs


# ----------------------------------------------------------------------------- env + model
def worker_wrapper(mode: str, vision: Encoder | None, vec: str) -> Callable[[gym.Env], gym.Env] | None:
    """The per-env wrapper `mode` wants inside the workers of a `vec` VecEnv (pass to make_vec_env)."""
    return MODES.get(mode).worker_wrapper(vision, resolve_vec(vec))


def wrap_env(venv: VecEnv, mode: str, vision: Encoder | None) -> VecEnv:
    """Episode statistics (for `rollout/ep_rew_mean`) then the mode's observation wrapper."""
    if not venv.env_is_wrapped(Monitor)[0]:
        venv = VecMonitor(venv)
    return MODES.get(mode).wrap_env(venv, vision)


def build_model(
    algo: str,
    mode: str,
    venv: VecEnv,
    hparams: dict[str, Any],
    *,
    seed: int,
    device: str = "cpu",
    vision_checkpoint: str | None = None,
    feature_map: tuple[int, ...] | None = None,
    tensorboard_log: str | Path | None = None,
) -> BaseAlgorithm:
    """A fresh SB3 model on an already wrapped env; finetune encoders start from the pretrained weights."""
    spec = ALGOS.get(algo)
    check_hyperparams(algo, hparams)
    kwargs = {k: v for k, v in hparams.items() if k != "policy_kwargs"}
    try:
        model = spec.cls(
            MODES.get(mode).policy,
            venv,
            policy_kwargs=policy_kwargs(algo, mode, hparams, vision_checkpoint, feature_map),
            seed=seed,
            device=device,
            tensorboard_log=None if tensorboard_log is None else str(tensorboard_log),
            verbose=0,
            **kwargs,
        )
    except TypeError as exc:
        raise ConfigError(f"bad hyperparameters for {algo}: {exc}") from None
    MODES.get(mode).after_build(model, vision_checkpoint)
    if tensorboard_log is None:
        # SB3 would otherwise make an empty $TMPDIR/SB3-<date> folder on every learn()
        model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def load_model(
    path: str | Path,
    algo: str,
    mode: str,
    hparams: dict[str, Any],
    *,
    vision_checkpoint: str | None = None,
    feature_map: tuple[int, ...] | None = None,
    device: str = "cpu",
) -> Any:
    """A finished policy, rebuilt from darla's own description (algo, mode, hyperparameters, the spaces
    recorded in the file) with only its tensors read from the file: nothing in it is unpickled."""
    spec = ALGOS.get(algo)

    def skeleton(observation_space: spaces.Space, action_space: spaces.Space) -> Any:
        return _skeleton(
            spec, mode, hparams, vision_checkpoint, feature_map, device, observation_space, action_space
        )

    return spec.persistence.load_policy(Path(path), skeleton)


def _skeleton(
    spec: AlgoSpec,
    mode: str,
    hparams: dict[str, Any],
    vision_checkpoint: str | None,
    feature_map: tuple[int, ...] | None,
    device: str,
    observation_space: spaces.Space,
    action_space: spaces.Space,
) -> BaseAlgorithm:
    """An untrained SB3 model of this description for these spaces, with no env: SB3's own loading
    path (`_init_setup_model=False`, spaces set, then `_setup_model`). A replay buffer is not part of
    a policy, so an off-policy model gets a one-row buffer instead of allocating the training one."""
    kwargs = {k: v for k, v in hparams.items() if k != "policy_kwargs"}
    if spec.off_policy:
        kwargs["buffer_size"] = 1
    try:
        model = spec.cls(
            MODES.get(mode).policy,
            None,
            policy_kwargs=policy_kwargs(spec.name, mode, hparams, vision_checkpoint, feature_map),
            device=device,
            verbose=0,
            _init_setup_model=False,
            **kwargs,
        )
    except TypeError as exc:
        raise ConfigError(f"bad hyperparameters for {spec.name}: {exc}") from None
    model.observation_space, model.action_space, model.n_envs = observation_space, action_space, 1
    model._setup_model()
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model
