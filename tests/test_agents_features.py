"""darla.agents units: the frozen-feature wrapper, the fine-tune extractor, registries, hyperparameters.

A tiny counting env (frame value = step index) makes the wrapper's outputs checkable exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import darla.vision
from darla.agents import ALGOS, MODES, EncoderExtractor, FrozenEncoderVecEnv, build_model, parameter_hash
from darla.agents.factory import default_hyperparams, policy_kwargs, resolve_hyperparams, wrap_env
from darla.errors import ConfigError, UnknownNameError

SIZE = 32
TINY = {"latent_dim": 4, "channels": (8, 8), "hidden": 16}


class CountEnv(gymnasium.Env):
    """Frames filled with 10 x the step index; truncated after `length` steps; 3 actions."""

    def __init__(self, size: int = SIZE, length: int = 3) -> None:
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = spaces.Discrete(3)
        self.length = length
        self.t = 0

    def frame(self) -> np.ndarray:
        return np.full(self.observation_space.shape, 10 * self.t, np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return self.frame(), {}

    def step(self, action: Any) -> Any:
        self.t += 1
        return self.frame(), float(action == 1), False, self.t >= self.length, {}


def count_venv(n: int = 2, size: int = SIZE, length: int = 3) -> DummyVecEnv:
    return DummyVecEnv([lambda: CountEnv(size, length) for _ in range(n)])


@pytest.fixture
def model() -> darla.vision.VisionModel:
    torch.manual_seed(0)
    return darla.vision.build("beta_vae", image_shape=(SIZE, SIZE, 3), **TINY)


@pytest.fixture
def checkpoint(tmp_path: Path, model: darla.vision.VisionModel) -> Path:
    return darla.vision.save(model, tmp_path / "model.pt")


def test_frozen_wrapper_encodes_batch_and_terminal_observation(model: darla.vision.VisionModel) -> None:
    before = parameter_hash(model)
    venv = FrozenEncoderVecEnv(count_venv(2), model)
    assert venv.observation_space.shape == (4,) and venv.observation_space.dtype == np.float32
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    obs = venv.reset()
    expected0 = model.encode(np.zeros((1, SIZE, SIZE, 3), np.uint8)).numpy()
    assert obs.dtype == np.float32 and obs.shape == (2, 4)
    np.testing.assert_allclose(obs, np.repeat(expected0, 2, axis=0), rtol=1e-5, atol=1e-6)
    for _ in range(2):
        _, _, dones, infos = venv.step(np.array([0, 1]))
        assert not dones.any() and "terminal_observation" not in infos[0]
    obs, _, dones, infos = venv.step(np.array([0, 1]))
    assert dones.all()
    # the returned observation is the reset frame, the terminal one the 3rd step's frame: both encoded
    np.testing.assert_allclose(obs, np.repeat(expected0, 2, axis=0), rtol=1e-5, atol=1e-6)
    final = model.encode(np.full((1, SIZE, SIZE, 3), 30, np.uint8)).numpy()[0]
    for info in infos:
        term = info["terminal_observation"]
        assert term.shape == (4,) and term.dtype == np.float32
        np.testing.assert_allclose(term, final, rtol=1e-5, atol=1e-6)
    assert not np.allclose(final, expected0[0])  # the two frames really give different features
    assert parameter_hash(model) == before


def test_subproc_workers_encode_frames_as_the_batched_wrapper_does(model: darla.vision.VisionModel) -> None:
    """With worker processes the frozen mode encodes inside each worker; same features, terminal
    frames included, and `wrap_env` does not encode twice."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from darla.agents.factory import worker_wrapper

    assert (
        worker_wrapper("frozen", model, "dummy") is None and worker_wrapper("frozen", model, "auto") is None
    )
    assert worker_wrapper("pixels", None, "subproc") is None
    wrapper = worker_wrapper("frozen", model, "subproc")
    assert wrapper is not None
    before = parameter_hash(model)
    sub = SubprocVecEnv([lambda: wrapper(CountEnv()) for _ in range(2)], start_method="fork")
    try:
        venv = wrap_env(sub, "frozen", model)
        assert not isinstance(venv, FrozenEncoderVecEnv) and venv.observation_space.shape == (4,)
        obs = venv.reset()
        frames = [np.zeros((1, SIZE, SIZE, 3), np.uint8), np.full((1, SIZE, SIZE, 3), 30, np.uint8)]
        first, final = (model.encode(f).numpy() for f in frames)
        np.testing.assert_allclose(obs, np.repeat(first, 2, axis=0), rtol=1e-5, atol=1e-6)
        for _ in range(3):
            obs, _, dones, infos = venv.step(np.array([0, 1]))
        assert dones.all()
        for info in infos:
            np.testing.assert_allclose(info["terminal_observation"], final[0], rtol=1e-5, atol=1e-6)
    finally:
        sub.close()
    assert parameter_hash(model) == before


def test_frozen_wrapper_refuses_image_size_mismatch(model: darla.vision.VisionModel) -> None:
    with pytest.raises(ConfigError, match=r"32x32x3.*64x64x3"):
        FrozenEncoderVecEnv(count_venv(1, size=64), model)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_finetune_starts_from_pretrained_weights(
    algo: str, checkpoint: Path, model: darla.vision.VisionModel
) -> None:
    pretrained = parameter_hash(model)
    hparams = resolve_hyperparams(algo, "CountEnv", "finetune", {})
    venv = wrap_env(count_venv(2), "finetune", None)
    sb3 = build_model(algo, "finetune", venv, hparams, seed=0, vision_checkpoint=str(checkpoint))
    extractors = [m for m in sb3.policy.modules() if isinstance(m, EncoderExtractor)]
    assert len(extractors) == (2 if algo == "dqn" else 1)  # DQN: online + target network
    for extractor in extractors:
        assert parameter_hash(extractor.encoder) == pretrained
    # and the online encoder is trainable: its weights are in the optimiser and require grad
    online = extractors[0].encoder
    opt_params = {id(p) for group in sb3.policy.optimizer.param_groups for p in group["params"]}
    assert all(p.requires_grad and id(p) in opt_params for p in online.encoder.parameters())


def test_without_reloading_orthogonal_init_would_overwrite_the_encoder(
    checkpoint: Path, model: darla.vision.VisionModel
) -> None:
    """Why the factory reloads: SB3 alone builds the extractor and then re-initialises it."""
    venv = wrap_env(count_venv(2), "finetune", None)
    kwargs = policy_kwargs("ppo", "finetune", {}, str(checkpoint))
    plain = PPO("CnnPolicy", venv, policy_kwargs=kwargs, n_steps=16, batch_size=16, seed=0)
    extractor = next(m for m in plain.policy.modules() if isinstance(m, EncoderExtractor))
    assert parameter_hash(extractor.encoder) != parameter_hash(model)


def test_finetune_training_changes_the_encoder(checkpoint: Path, model: darla.vision.VisionModel) -> None:
    venv = wrap_env(count_venv(2), "finetune", None)
    hparams = resolve_hyperparams(
        "ppo", "CountEnv", "finetune", {"n_steps": 16, "batch_size": 16, "n_epochs": 1}
    )
    sb3 = build_model("ppo", "finetune", venv, hparams, seed=0, vision_checkpoint=str(checkpoint))
    sb3.learn(32)
    extractor = next(m for m in sb3.policy.modules() if isinstance(m, EncoderExtractor))
    assert parameter_hash(extractor.encoder) != parameter_hash(model)
    assert parameter_hash(darla.vision.load(checkpoint)) == parameter_hash(model)  # the file is untouched


def test_pixels_mode_is_channel_first_and_normalised() -> None:
    venv = wrap_env(count_venv(2, size=40), "pixels", None)
    assert venv.observation_space.shape == (3, 40, 40)
    sb3 = build_model("ppo", "pixels", venv, resolve_hyperparams("ppo", "CountEnv", "pixels", {}), seed=0)
    assert sb3.policy.normalize_images
    frames = np.full((2, 40, 40, 3), 7, np.uint8)
    prepared = MODES.get("pixels").prepare(frames, None)
    assert prepared.shape == (2, 3, 40, 40) and prepared.flags["C_CONTIGUOUS"]


def test_pixels_mode_refuses_frames_too_small_for_nature_cnn() -> None:
    with pytest.raises(ConfigError, match=r"NatureCNN.*36x36.*32x32"):
        wrap_env(count_venv(1, size=32), "pixels", None)


def test_registries_name_the_valid_choices() -> None:
    assert {"a2c", "dqn", "ppo"} <= set(ALGOS.names())
    assert MODES.names() == ["finetune", "frozen", "pixels"]
    with pytest.raises(UnknownNameError, match=r"did you mean 'ppo'.*Valid choices: a2c, dqn"):
        ALGOS.get("ppp")
    with pytest.raises(UnknownNameError, match="did you mean 'frozen'"):
        MODES.get("frozn")


def test_hyperparameters_per_family_mode_and_overrides() -> None:
    frozen = default_hyperparams("ppo", "SeekAvoid", "frozen")
    pixels = default_hyperparams("ppo", "SeekAvoid", "pixels")
    assert frozen["n_steps"] == 128 and frozen["policy_kwargs"]["net_arch"] == [128, 128]
    assert "policy_kwargs" not in pixels and frozen["learning_rate"] != pixels["learning_rate"]
    merged = resolve_hyperparams(
        "ppo", "SeekAvoid", "frozen", {"learning_rate": 1e-3, "policy_kwargs": {"net_arch": [8]}}
    )
    assert merged["learning_rate"] == 1e-3 and merged["policy_kwargs"]["net_arch"] == [8]
    assert merged["n_steps"] == 128
    assert resolve_hyperparams("ppo", "SeekAvoid", "frozen", merged) == merged  # idempotent
    assert default_hyperparams("dqn", "SeekAvoid", "pixels")["buffer_size"] == 50_000
    # a conv head on a frozen map trains with NatureCNN's settings, keeping the frozen MLP heads
    cnn = default_hyperparams("ppo", "SeekAvoid", "frozen", head="cnn")
    assert (cnn["n_epochs"], cnn["batch_size"]) == (pixels["n_epochs"], pixels["batch_size"]) == (4, 256)
    assert cnn["policy_kwargs"] == frozen["policy_kwargs"] and "heads" not in frozen
    assert resolve_hyperparams("ppo", "SeekAvoid", "frozen", {"n_epochs": 2}, head="cnn")["n_epochs"] == 2
    with pytest.raises(ConfigError, match=r"feature_head 'cnnn'.*mlp"):
        default_hyperparams("ppo", "SeekAvoid", "frozen", head="cnnn")


def test_unknown_hyperparameters_are_errors() -> None:
    with pytest.raises(
        ConfigError, match="hyperparameter for ppo 'lerning_rate'; did you mean 'learning_rate'"
    ):
        resolve_hyperparams("ppo", "SeekAvoid", "frozen", {"lerning_rate": 1e-3})
    with pytest.raises(ConfigError, match="'buffer_size'"):
        resolve_hyperparams("ppo", "SeekAvoid", "frozen", {"buffer_size": 10})  # a DQN-only key
    with pytest.raises(UnknownNameError, match="activation function 'rellu'"):
        resolve_hyperparams("a2c", "SeekAvoid", "frozen", {"policy_kwargs": {"activation_fn": "rellu"}})
    with pytest.raises(ConfigError, match="set by mode"):
        policy_kwargs("ppo", "pixels", {"policy_kwargs": {"normalize_images": False}}, None)
