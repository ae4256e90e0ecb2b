"""Model-Free Episodic Control (Blundell et al. 2016), DARLA's third learner.

MFEC keeps, for every action, a table of (state key, highest discounted return ever observed
after taking that action from that state). A state seen before (exact match) gets its stored
value; an unseen one gets the mean value of its k nearest stored keys. The agent acts
epsilon-greedily on these estimates and writes the Monte-Carlo returns of each finished episode
into the tables (max with the stored value), evicting the least recently used entry when a
table is full.

Keys are the observations themselves when they are feature vectors (the act stage's frozen
encoder wrapper hands MFEC the vision model's latents), or a fixed, seeded Gaussian random
projection of the pixels when they are images (the paper's baseline).

The class mimics the Stable-Baselines3 algorithm surface the act/transfer stages rely on:
`MFEC(env, ...)`, `learn(total_timesteps, callback, progress_bar)`, `predict(obs, ...)`,
`save(path)`, `MFEC.load(path, env)`, `num_timesteps`, `logger`, `get_env()`. The checkpoint is
one zip file (numpy `.npz` layout: arrays plus a JSON header), loaded without pickle.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Literal

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import configure_logger
from stable_baselines3.common.vec_env import VecEnv

from darla.agents.episodic_table import EpisodicTable
from darla.agents.persist import TrainingState, capture_rngs, restore_rngs
from darla.artifacts import atomic_save
from darla.errors import ArtifactError, ConfigError
from darla.registry import check_choice
from darla.seeding import derive_seed

logger = logging.getLogger(__name__)

FORMAT = "darla-mfec"
VERSION = 1
KeyMode = Literal["auto", "identity", "projection"]
KEY_MODES = ("auto", "identity", "projection")
IGNORED_POLICY_KWARGS = frozenset({"normalize_images", "features_extractor_class"})
"""What the act stage's pixel mode sets for CNN policies; meaningless (and harmless) for MFEC."""


def _quiet_logger(verbose: int, tensorboard_log: str | None, tb_log_name: str, reset: bool) -> Logger:
    """SB3's logger, minus the empty $TMPDIR/SB3-<date> folder it makes when nothing is logged."""
    if tensorboard_log is None and verbose == 0:
        return Logger(folder=None, output_formats=[])
    return configure_logger(verbose, tensorboard_log, tb_log_name, reset)


def _is_image_space(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


class MFEC:
    """Model-Free Episodic Control with an SB3-like interface (see the module docstring)."""

    hyperparameters: ClassVar[tuple[str, ...]] = (
        "capacity",
        "k",
        "gamma",
        "exploration_initial_eps",
        "exploration_final_eps",
        "exploration_fraction",
        "key_mode",
        "projection_dim",
        "match_tol",
        "seed",
    )

    def __init__(
        self,
        policy: str | VecEnv | None,
        env: VecEnv | None = None,
        *,
        capacity: int = 100_000,
        k: int = 11,
        gamma: float = 0.99,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.005,
        exploration_fraction: float = 0.1,
        key_mode: KeyMode = "auto",
        projection_dim: int = 64,
        match_tol: float = 1e-10,
        seed: int = 0,
        policy_kwargs: dict[str, Any] | None = None,
        device: str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
    ) -> None:
        """`MFEC(env, ...)`, or SB3's `MFEC(policy, env, ...)` as the act stage's factory calls it.

        MFEC has no network: the policy name is ignored, `device` only recorded, and
        `policy_kwargs` may only hold what SB3's image modes set (a fine-tuned encoder is refused).
        """
        if policy is not None and not isinstance(policy, str):
            if env is not None:
                raise ConfigError("MFEC: pass the env once (MFEC(env) or MFEC(policy, env))")
            env = policy
        if env is None:
            raise ConfigError("MFEC needs an env; MFEC.load(path) restores a model without one")
        extra = set(policy_kwargs or {}) - IGNORED_POLICY_KWARGS
        if extra:
            raise ConfigError(
                f"MFEC has no neural policy: policy_kwargs {sorted(extra)} do not apply"
                + (
                    " (mode 'finetune' needs a gradient; use mode frozen or pixels)"
                    if "features_extractor_kwargs" in extra
                    else ""
                )
            )
        self.device = device
        self._setup(
            env,
            env.observation_space,
            env.action_space,
            capacity=capacity,
            k=k,
            gamma=gamma,
            exploration_initial_eps=exploration_initial_eps,
            exploration_final_eps=exploration_final_eps,
            exploration_fraction=exploration_fraction,
            key_mode=key_mode,
            projection_dim=projection_dim,
            match_tol=match_tol,
            seed=seed,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
        )

    def _setup(
        self,
        env: VecEnv | None,
        obs_space: spaces.Space,
        act_space: spaces.Space,
        *,
        capacity: int,
        k: int,
        gamma: float,
        exploration_initial_eps: float,
        exploration_final_eps: float,
        exploration_fraction: float,
        key_mode: KeyMode,
        projection_dim: int,
        match_tol: float,
        seed: int,
        tensorboard_log: str | None,
        verbose: int,
    ) -> None:
        check_choice("MFEC key_mode", key_mode, KEY_MODES)
        if not 0.0 <= gamma <= 1.0:
            raise ConfigError(f"MFEC gamma must be in [0, 1], got {gamma}")
        for name, eps in (
            ("exploration_initial_eps", exploration_initial_eps),
            ("exploration_final_eps", exploration_final_eps),
        ):
            if not 0.0 <= eps <= 1.0:
                raise ConfigError(f"MFEC {name} must be in [0, 1], got {eps}")
        if not 0.0 <= exploration_fraction <= 1.0:
            raise ConfigError(f"MFEC exploration_fraction must be in [0, 1], got {exploration_fraction}")
        self.env = env
        if not isinstance(act_space, spaces.Discrete):
            raise ConfigError(f"MFEC needs a Discrete action space, got {act_space}")
        if not isinstance(obs_space, spaces.Box):
            raise ConfigError(
                f"MFEC needs a Box observation space (image or feature vector), got {obs_space}"
            )
        self.observation_space: spaces.Box = obs_space
        self.action_space: spaces.Discrete = act_space
        self.n_actions = int(act_space.n)
        self.capacity = int(capacity)
        self.k = int(k)
        self.gamma = float(gamma)
        self.exploration_initial_eps = float(exploration_initial_eps)
        self.exploration_final_eps = float(exploration_final_eps)
        self.exploration_fraction = float(exploration_fraction)
        self.match_tol = float(match_tol)
        self.seed = int(seed)
        self.tensorboard_log = tensorboard_log
        self.verbose = verbose

        obs_dim = int(np.prod(obs_space.shape))
        if key_mode == "auto":
            key_mode = "projection" if _is_image_space(obs_space) else "identity"
        self.key_mode: KeyMode = key_mode
        self.projection_dim = int(projection_dim)
        self.projection: np.ndarray | None = None
        if key_mode == "projection":
            # a fixed Gaussian random projection (Johnson-Lindenstrauss), scaled to keep norms
            rng = np.random.default_rng(derive_seed(self.seed, "mfec", "projection"))
            self.projection = (
                rng.standard_normal((obs_dim, self.projection_dim)) / np.sqrt(self.projection_dim)
            ).astype(np.float32)
            self.key_dim = self.projection_dim
        else:
            self.key_dim = obs_dim
        self.tables = [
            EpisodicTable(self.capacity, self.key_dim, self.k, self.match_tol) for _ in range(self.n_actions)
        ]

        self.num_timesteps = 0
        self._total_timesteps = 0
        self._clock = 0  # logical time for LRU bookkeeping
        self.exploration_rate = self.exploration_initial_eps
        self._rng = np.random.default_rng(derive_seed(self.seed, "mfec", "act"))
        self._tie_projection = np.random.default_rng(derive_seed(self.seed, "mfec", "ties")).standard_normal(
            (self.key_dim, self.n_actions)
        )
        self._logger: Logger | None = None
        self.ep_info_buffer: deque[dict[str, float]] = deque(maxlen=100)
        self._last_obs: np.ndarray | None = None
        self._trajectories: list[list[tuple[np.ndarray, int, float]]] = []

    # ------------------------------------------------------------------------ SB3 surface
    @property
    def logger(self) -> Logger:
        if self._logger is None:
            self._logger = _quiet_logger(self.verbose, None, "", True)
        return self._logger

    @property
    def policy(self) -> MFEC:
        """SB3 code calls `model.policy.set_training_mode(...)`; the tables are the policy."""
        return self

    def set_training_mode(self, mode: bool) -> None:
        """No-op: MFEC behaves the same in training and evaluation (predict never writes)."""

    def set_random_seed(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(derive_seed(self.seed if seed is None else seed, "mfec", "act"))

    def get_env(self) -> VecEnv | None:
        return self.env

    def set_env(self, env: VecEnv) -> None:
        if (
            env.observation_space.shape != self.observation_space.shape
            or env.action_space != self.action_space
        ):
            raise ConfigError(
                f"env spaces {env.observation_space}, {env.action_space} do not match the model's "
                f"{self.observation_space}, {self.action_space}"
            )
        self.env = env
        self._last_obs = None

    @property
    def n_envs(self) -> int:
        return self.env.num_envs if self.env is not None else 1

    def table_sizes(self) -> list[int]:
        return [t.size for t in self.tables]

    # ------------------------------------------------------------------------ keys and values
    def keys(self, obs: np.ndarray) -> np.ndarray:
        """Observations (n, *obs_shape) -> float32 keys (n, key_dim)."""
        obs = np.asarray(obs)
        shape = self.observation_space.shape
        if obs.shape == shape:
            obs = obs[None]
        if obs.shape[1:] != shape:
            raise ConfigError(
                f"MFEC expected observations of shape (n, {', '.join(map(str, shape))}), got {obs.shape}"
            )
        flat = obs.reshape(len(obs), -1).astype(np.float32)
        if self.projection is not None:
            if obs.dtype == np.uint8:
                flat /= 255.0
            return flat @ self.projection
        return flat

    def q_values(self, keys: np.ndarray, *, touch: bool = True) -> np.ndarray:
        """(n, n_actions) value estimates; actions with an empty table get +inf (try them first)."""
        now = self._clock if touch else None
        q = np.stack([table.query(keys, now) for table in self.tables], axis=1)
        return np.where(np.isnan(q), np.inf, q)

    def _tie_scores(self, keys: np.ndarray) -> np.ndarray:
        """(n, n_actions) pseudo-random scores that depend only on the state's key.

        Greedy ties are common (every action of a never-rewarded region estimates 0); breaking
        them towards action 0 makes a deterministic policy spin in place forever. A seeded hash of
        the key breaks them differently per state, yet reproducibly (evaluation, reload checks).
        """
        u = keys.astype(np.float64) @ self._tie_projection
        return np.modf(np.abs(u) * 10.0)[0]

    def _greedy(self, q: np.ndarray, keys: np.ndarray, random_ties: bool) -> np.ndarray:
        """Argmax over actions; ties broken at random (learning) or by the key hash (deterministic)."""
        scores = self._rng.random(q.shape) if random_ties else self._tie_scores(keys)
        is_max = q == q.max(1, keepdims=True)
        return np.argmax(np.where(is_max, 1.0 + scores, 0.0), axis=1)

    def _act(self, keys: np.ndarray, epsilon: float) -> np.ndarray:
        q = self.q_values(keys)
        actions = self._greedy(q, keys, random_ties=True)
        explore = self._rng.random(len(keys)) < epsilon
        random_actions = self._rng.integers(0, self.n_actions, len(keys))
        return np.where(explore, random_actions, actions)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """Greedy actions (ties broken by a hash of the state) when deterministic; else
        epsilon-greedy at the final epsilon.

        Prediction does not change the tables' LRU clock, so evaluation leaves the memory as is.
        """
        obs = np.asarray(observation)
        single = obs.shape == self.observation_space.shape
        keys = self.keys(obs)
        q = self.q_values(keys, touch=False)
        if deterministic:
            actions = self._greedy(q, keys, random_ties=False)
        else:
            actions = self._greedy(q, keys, random_ties=True)
            explore = self._rng.random(len(keys)) < self.exploration_final_eps
            actions = np.where(explore, self._rng.integers(0, self.n_actions, len(keys)), actions)
        actions = actions.astype(np.int64)
        return (actions[0] if single else actions), None

    # ------------------------------------------------------------------------ learning
    def _epsilon(self) -> float:
        if self.exploration_fraction <= 0 or self._total_timesteps <= 0:
            return self.exploration_final_eps
        progress = min(1.0, self.num_timesteps / (self.exploration_fraction * self._total_timesteps))
        return self.exploration_initial_eps + progress * (
            self.exploration_final_eps - self.exploration_initial_eps
        )

    def _write_episode(self, trajectory: list[tuple[np.ndarray, int, float]]) -> float:
        """Monte-Carlo returns of one finished episode into the tables; returns the undiscounted sum."""
        if not trajectory:
            return 0.0
        keys = np.stack([step[0] for step in trajectory])
        actions = np.array([step[1] for step in trajectory], dtype=np.int64)
        rewards = np.array([step[2] for step in trajectory], dtype=np.float64)
        returns = np.empty_like(rewards)
        acc = 0.0
        for t in range(len(rewards) - 1, -1, -1):  # O(T) scalar recursion, no table access
            acc = rewards[t] + self.gamma * acc
            returns[t] = acc
        self._clock += 1
        for a in range(self.n_actions):
            sel = actions == a
            if sel.any():
                self.tables[a].update(keys[sel], returns[sel].astype(np.float32), self._clock)
        return float(rewards.sum())

    def learn(
        self,
        total_timesteps: int,
        callback: BaseCallback | list[BaseCallback] | None = None,
        log_interval: int = 4,
        tb_log_name: str = "MFEC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> MFEC:
        """Act epsilon-greedily for `total_timesteps` env steps; write returns at episode ends."""
        if self.env is None:
            raise ConfigError("MFEC.learn needs an env: pass one to MFEC(...) or MFEC.load(path, env=...)")
        env = self.env
        if reset_num_timesteps:
            self.num_timesteps = 0
            self._last_obs = None
        self._total_timesteps = int(total_timesteps) + (0 if reset_num_timesteps else self.num_timesteps)
        self._logger = _quiet_logger(self.verbose, self.tensorboard_log, tb_log_name, reset_num_timesteps)
        cb = self._init_callback(callback, progress_bar)
        if self._last_obs is None:
            env.seed(derive_seed(self.seed, "mfec", "env"))
            self._last_obs = np.asarray(env.reset())
            self._trajectories = [[] for _ in range(env.num_envs)]
        n_envs = env.num_envs
        ep_returns = np.zeros(n_envs)
        ep_lengths = np.zeros(n_envs, dtype=np.int64)
        episodes = 0
        start = time.time()
        start_steps = self.num_timesteps
        cb.on_training_start(locals(), globals())
        cb.on_rollout_start()
        while self.num_timesteps < self._total_timesteps:
            self.exploration_rate = self._epsilon()
            keys = self.keys(self._last_obs)
            self._clock += 1
            actions = self._act(keys, self.exploration_rate)
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += n_envs
            ep_returns += rewards
            ep_lengths += 1
            for i in range(n_envs):  # per env, not per table entry
                self._trajectories[i].append((keys[i], int(actions[i]), float(rewards[i])))
                if dones[i]:
                    self._write_episode(self._trajectories[i])
                    self._trajectories[i] = []
                    episode = infos[i].get("episode")
                    r = float(episode["r"]) if episode else float(ep_returns[i])
                    length = float(episode["l"]) if episode else float(ep_lengths[i])
                    self.ep_info_buffer.append({"r": r, "l": length})
                    ep_returns[i] = 0.0
                    ep_lengths[i] = 0
                    episodes += 1
                    if log_interval and episodes % log_interval == 0:
                        self._dump_logs(start, start_steps)
            self._last_obs = np.asarray(new_obs)
            cb.update_locals(locals())
            if not cb.on_step():
                break
        cb.on_rollout_end()
        cb.on_training_end()
        self._dump_logs(start, start_steps)
        return self

    def _init_callback(
        self, callback: BaseCallback | list[BaseCallback] | None, progress_bar: bool
    ) -> BaseCallback:
        if isinstance(callback, list):
            callback = CallbackList(callback)
        if callback is None:
            callback = CallbackList([])
        if progress_bar:
            callback = CallbackList([callback, ProgressBarCallback()])
        callback.init_callback(self)  # type: ignore[arg-type]  # duck-typed BaseAlgorithm
        return callback

    def _dump_logs(self, start: float, start_steps: int) -> None:
        log = self.logger
        if self.ep_info_buffer:
            log.record("rollout/ep_rew_mean", float(np.mean([e["r"] for e in self.ep_info_buffer])))
            log.record("rollout/ep_len_mean", float(np.mean([e["l"] for e in self.ep_info_buffer])))
        log.record("rollout/exploration_rate", self.exploration_rate)
        log.record("mfec/table_entries", int(sum(self.table_sizes())))
        elapsed = max(time.time() - start, 1e-9)
        log.record("time/fps", int((self.num_timesteps - start_steps) / elapsed))
        log.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        log.dump(self.num_timesteps)

    # ------------------------------------------------------------------------ training state
    def capture_state(self) -> TrainingState:
        """Everything that decides the rest of a run (tables, clock, generator, the episodes in
        progress, the last observations), so that a resumed run is the unbroken one. MFEC's loop has
        no rollout buffer: any step between two `learn` iterations is a boundary."""
        state = TrainingState()
        state.meta.update(
            header=self._header(),
            rng=dict(self._rng.bit_generator.state),
            ep_info_buffer=list(self.ep_info_buffer),
            trajectories=[len(t) for t in self._trajectories],
        )
        if self.projection is not None:
            state.arrays["projection"] = self.projection
        for a, table in enumerate(self.tables):
            state.arrays.update(table.state(f"a{a}_"))
            state.arrays[f"a{a}_sqnorms"] = table.sqnorms[: table.size].copy()
        state.arrays["last_obs"] = np.asarray(self._last_obs)
        for i, trajectory in enumerate(self._trajectories):
            keys = np.stack([k for k, _, _ in trajectory]) if trajectory else np.zeros((0, self.key_dim))
            state.arrays[f"traj{i}_keys"] = keys.astype(np.float32)
            state.arrays[f"traj{i}_actions"] = np.array([a for _, a, _ in trajectory], dtype=np.int64)
            state.arrays[f"traj{i}_rewards"] = np.array([r for _, _, r in trajectory], dtype=np.float64)
        capture_rngs(state, None)
        return state

    def restore_state(self, state: TrainingState) -> None:
        """Put `capture_state`'s result into a model built with the same hyperparameters."""
        header = state.meta["header"]
        if header.get("hyperparameters") != self._header()["hyperparameters"]:
            raise ArtifactError("the MFEC checkpoint was made with other hyperparameters")
        if self.projection is not None:
            self.projection = np.asarray(state.arrays["projection"], dtype=np.float32)
        for a, table in enumerate(self.tables):
            table.load_state(state.arrays, f"a{a}_")
            table.sqnorms[: table.size] = state.arrays[f"a{a}_sqnorms"]
        self.num_timesteps = int(header["num_timesteps"])
        self._clock = int(header["clock"])
        self.exploration_rate = float(header["exploration_rate"])
        self._rng.bit_generator.state = state.meta["rng"]
        self.ep_info_buffer = deque(state.meta["ep_info_buffer"], maxlen=self.ep_info_buffer.maxlen)
        self._last_obs = state.arrays["last_obs"]
        self._trajectories = [
            [
                (state.arrays[f"traj{i}_keys"][t], int(state.arrays[f"traj{i}_actions"][t]),
                 float(state.arrays[f"traj{i}_rewards"][t]))
                for t in range(length)
            ]
            for i, length in enumerate(state.meta["trajectories"])
        ]  # fmt: skip
        restore_rngs(state, None)

    # ------------------------------------------------------------------------ persistence
    def _header(self) -> dict[str, Any]:
        box = self.observation_space
        return {
            "format": FORMAT,
            "version": VERSION,
            "hyperparameters": {name: getattr(self, name) for name in self.hyperparameters},
            "observation_space": {
                "shape": list(box.shape),
                "dtype": str(box.dtype),
                "low": float(np.min(box.low)),
                "high": float(np.max(box.high)),
            },
            "n_actions": self.n_actions,
            "num_timesteps": self.num_timesteps,
            "clock": self._clock,
            "exploration_rate": self.exploration_rate,
        }

    def save(self, path: str | Path | BinaryIO) -> None:
        """One zip file (npz layout): JSON header + tables (+ projection). Atomic. No pickle.

        Like SB3, a path without a suffix gets ".zip", and an open binary file is written to.
        """
        arrays: dict[str, np.ndarray] = {
            "header": np.frombuffer(json.dumps(self._header()).encode(), dtype=np.uint8)
        }
        if self.projection is not None:
            arrays["projection"] = self.projection
        for a, table in enumerate(self.tables):
            arrays.update(table.state(f"a{a}_"))

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        data = buf.getvalue()
        if not isinstance(path, (str, Path)):
            path.write(data)
            return
        target = Path(path)
        if not target.suffix:
            target = target.with_suffix(".zip")

        def writer(tmp: Path) -> None:
            tmp.write_bytes(data)

        atomic_save(target, writer)

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: VecEnv | None = None,
        device: str = "auto",
        custom_objects: dict[str, Any] | None = None,
    ) -> MFEC:
        """Rebuild an MFEC agent from `save`'s file; `device`/`custom_objects` as in SB3 (unused)."""
        path = Path(path)
        if not path.is_file() and not path.suffix and path.with_suffix(".zip").is_file():
            path = path.with_suffix(".zip")
        if not path.is_file():
            raise ArtifactError(f"MFEC checkpoint not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path} is not an MFEC checkpoint: {exc}") from None
        if "header" not in arrays:
            raise ArtifactError(f"{path} is not an MFEC checkpoint (no header)")
        try:
            header = json.loads(arrays["header"].tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path}: corrupt MFEC header: {exc}") from None
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ArtifactError(
                f"{path}: not a {FORMAT} v{VERSION} checkpoint (format={header.get('format')!r})"
            )
        space = header["observation_space"]
        obs_space = spaces.Box(
            low=space["low"], high=space["high"], shape=tuple(space["shape"]), dtype=np.dtype(space["dtype"])
        )
        model = cls.__new__(cls)
        model.device = device
        model._setup(
            env,
            obs_space,
            spaces.Discrete(header["n_actions"]),
            tensorboard_log=None,
            verbose=0,
            **header["hyperparameters"],
        )
        if env is not None and (
            env.observation_space.shape != obs_space.shape or env.action_space.n != header["n_actions"]  # type: ignore[attr-defined]
        ):
            raise ArtifactError(
                f"{path}: the env's spaces {env.observation_space.shape}, {env.action_space} do not match the "
                f"checkpoint's {obs_space.shape}, Discrete({header['n_actions']})"
            )
        if model.projection is not None:
            model.projection = np.asarray(arrays["projection"], dtype=np.float32)
        for a, table in enumerate(model.tables):
            table.load_state(arrays, f"a{a}_")
        model.num_timesteps = int(header["num_timesteps"])
        model._clock = int(header["clock"])
        model.exploration_rate = float(header["exploration_rate"])
        return model
