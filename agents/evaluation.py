"""The vectorised episode runner shared by act's periodic evaluation and the transfer stage.

Every policy meets the *same* episodes: episode j of domain d starts from an explicit seed, whichever
worker plays it, so returns are comparable across policies, seeds and runs. A worker is reset into
its next episode's domain as soon as it finishes (the vec env's own unseeded auto-reset is
overridden), so all workers stay busy until the last episode. Evaluations can be cached per
(policy, domain, episode settings): a floor or an oracle shared by several policies is played once,
and a killed evaluation resumes domain by domain.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from darla.artifacts import atomic_write_json, read_json
from darla.config import config_hash
from darla.errors import ArtifactError, ConfigError
from darla.log import progress
from darla.seeding import derive_seed, make_rng, seed_everything

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Episode:
    """One evaluation episode: a domain and a start seed, the same for every policy."""

    domain: str
    index: int
    seed: int


def episodes_for(seed: int, domain: str, n: int) -> list[Episode]:
    """The fixed evaluation episodes of a domain: episode j starts from derive_seed(seed, 'transfer', domain, j)."""
    return [Episode(domain, j, derive_seed(seed, "transfer", domain, j)) for j in range(n)]


class ActionFn(Protocol):
    def __call__(self, obs: np.ndarray, jobs: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations; `jobs[i]` is worker i's episode (an index, -1 idle)."""
        ...


def run_episodes(
    venv: VecEnv,
    episodes: Sequence[Episode],
    act: ActionFn,
    on_episode: Callable[[int, float, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Play every episode on a vec env; (returns, lengths) indexed like `episodes`.

    A worker is reset into the next episode's domain with its seed as soon as it finishes (the
    vec env's own unseeded auto-reset is overridden), so an episode is the same whichever worker
    plays it, and all workers stay busy until the last episode. `on_episode(index, return, length)` is
    called as each episode ends.
    """
    n_jobs = len(episodes)
    n = venv.num_envs
    if n > n_jobs:
        raise ConfigError(f"{n} envs for {n_jobs} episodes: use at most one env per episode")
    returns = np.zeros(n_jobs, dtype=np.float64)
    lengths = np.zeros(n_jobs, dtype=np.int64)
    jobs = np.full(n, -1, dtype=np.int64)
    next_job = 0

    def start(i: int) -> np.ndarray:
        nonlocal next_job
        ep = episodes[next_job]
        first_obs, _info = venv.env_method("reset", seed=ep.seed, options={"domain": ep.domain}, indices=[i])[
            0
        ]
        jobs[i] = next_job
        next_job += 1
        return np.asarray(first_obs)

    obs = np.stack([start(i) for i in range(n)])
    while (jobs >= 0).any():
        actions = act(obs, jobs.copy())
        step_obs, rewards, dones, _infos = venv.step(np.asarray(actions))
        obs = np.array(step_obs, copy=True)
        for i in map(int, np.flatnonzero(jobs >= 0)):
            job = int(jobs[i])
            returns[job] += float(rewards[i])
            lengths[job] += 1
            if dones[i]:
                if on_episode is not None:
                    on_episode(job, float(returns[job]), int(lengths[job]))
                if next_job < n_jobs:
                    obs[i] = start(i)
                else:
                    jobs[i] = -1
    return returns, lengths


def agent_action_fn(agent: Any, deterministic: bool) -> Callable[[Sequence[Episode], int], ActionFn]:
    def make(episodes: Sequence[Episode], n_actions: int) -> ActionFn:
        def act(obs: np.ndarray, jobs: np.ndarray) -> np.ndarray:
            return np.asarray(agent.predict(obs, deterministic=deterministic))

        return act

    return make


def random_action_fn(seed: int) -> Callable[[Sequence[Episode], int], ActionFn]:
    """Uniform actions from one RNG per episode, so the floor does not depend on scheduling."""

    def make(episodes: Sequence[Episode], n_actions: int) -> ActionFn:
        rngs = [make_rng(seed, "random", ep.domain, ep.index) for ep in episodes]

        def act(obs: np.ndarray, jobs: np.ndarray) -> np.ndarray:
            actions = np.zeros(len(jobs), dtype=np.int64)
            for i, job in enumerate(jobs):
                if job >= 0:
                    actions[i] = rngs[job].integers(n_actions)
            return actions

        return act

    return make


# ----------------------------------------------------------------------------- evaluation plan
@dataclass(frozen=True)
class EpisodeKey:
    """Everything that decides one policy's returns on one domain: the cache key."""

    env: str
    domain: str
    policy: str
    """'random', or 'act:<completion hash>' of an act folder"""
    episodes: int
    seed: int
    size: int
    max_episode_steps: int | None
    deterministic: bool


@dataclass
class PolicyEval:
    """A policy to evaluate: its role, cache identity, image size and how to build its actions."""

    role: str
    identity: str
    size: int
    splits: tuple[str, ...]
    make_act: Callable[[Sequence[Episode], int], ActionFn] = field(repr=False)
    """(episodes, n_actions) -> action function"""
    deterministic: bool = True


@dataclass(frozen=True)
class EvalSettings:
    """How policies are evaluated: episodes per domain and their seed, workers, time limit, and
    where finished domains are cached (None: not cached)."""

    episodes: int
    seed: int
    n_envs: int = 4
    vec: str = "auto"
    max_episode_steps: int | None = None
    cache_dir: Path | None = None


def _cache_path(cache_dir: Path, key: EpisodeKey) -> Path:
    return cache_dir / f"{key.domain}-{config_hash(key)}.json"


def _load_cached(path: Path, key: EpisodeKey) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except ArtifactError:
        return None
    if not isinstance(data, dict) or data.get("key") != dataclasses.asdict(key):
        return None
    return data


class _Collector:
    """Gathers one policy's finished episodes per domain; caches a domain as soon as it is complete."""

    def __init__(
        self,
        episodes: Sequence[Episode],
        missing: Sequence[tuple[str, EpisodeKey, Path | None]],
        per_domain: int,
        role: str,
        sink: dict[str, dict[str, Any]],
        bar: Any,
    ) -> None:
        self.episodes = episodes
        self.keys = {d: (key, path) for d, key, path in missing}
        self.pending = {d: per_domain for d in self.keys}
        self.returns = {d: np.zeros(per_domain) for d in self.keys}
        self.lengths = {d: np.zeros(per_domain, dtype=np.int64) for d in self.keys}
        self.role = role
        self.sink = sink
        self.bar = bar

    def __call__(self, job: int, ret: float, length: int) -> None:
        ep = self.episodes[job]
        self.returns[ep.domain][ep.index] = ret
        self.lengths[ep.domain][ep.index] = length
        self.pending[ep.domain] -= 1
        self.bar.update(1)
        if self.pending[ep.domain] == 0:
            key, path = self.keys[ep.domain]
            record = {
                "key": dataclasses.asdict(key),
                "returns": self.returns[ep.domain].tolist(),
                "lengths": self.lengths[ep.domain].tolist(),
            }
            if path is not None:
                atomic_write_json(path, record)
            self.sink[ep.domain] = record
            logger.info(
                "%s on %s: mean return %.3f over %d episodes",
                self.role,
                ep.domain,
                float(self.returns[ep.domain].mean()),
                len(self.returns[ep.domain]),
            )


class EnvPool:
    """Evaluation vec envs kept open across policies and transfers.

    Starting workers and loading each domain's textures costs seconds per worker; a run that
    evaluates many policies shares one pool, so that cost is paid once. Reusing a worker is
    safe because every episode starts with an explicit seed and domain.
    """

    def __init__(self) -> None:
        self._envs: dict[tuple[Any, ...], VecEnv] = {}

    def get(
        self,
        family: str,
        domains: Sequence[str],
        n_envs: int,
        *,
        size: int,
        vec: str,
        max_episode_steps: int | None,
    ) -> VecEnv:
        from darla.envs import make_vec_env

        key = (family, tuple(domains), n_envs, size, vec, max_episode_steps)
        if key not in self._envs:
            self._envs[key] = make_vec_env(
                family,
                list(domains),
                n_envs,
                seed=derive_seed(0, "transfer-vec"),
                size=size,
                vec=vec,
                # every reset names its episode's domain: workers are not tied to one domain
                domain_mode="per_episode",
                max_episode_steps=max_episode_steps,
            )
        return self._envs[key]

    def close(self) -> None:
        for venv in self._envs.values():
            venv.close()
        self._envs.clear()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate_policies(
    family: str,
    domains: Sequence[tuple[str, str]],
    policies: Sequence[PolicyEval],
    cfg: EvalSettings,
    pool: EnvPool,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Returns of every policy on every (domain, split) it applies to: role -> domain -> record.

    One vec env per image size serves every domain (workers switch domain at reset); each
    domain's record is cached as soon as its episodes are complete.
    """
    results: dict[str, dict[str, dict[str, Any]]] = {p.role: {} for p in policies}
    todo: list[tuple[PolicyEval, list[tuple[str, EpisodeKey, Path | None]]]] = []
    for policy in policies:
        missing = []
        for domain, split in domains:
            if split not in policy.splits:
                continue
            key = EpisodeKey(
                env=family,
                domain=domain,
                policy=policy.identity,
                episodes=cfg.episodes,
                seed=cfg.seed,
                size=policy.size,
                max_episode_steps=cfg.max_episode_steps,
                deterministic=policy.deterministic,
            )
            path = _cache_path(cfg.cache_dir, key) if cfg.cache_dir is not None else None
            cached = _load_cached(path, key) if path is not None else None
            if cached is not None:
                results[policy.role][domain] = cached
            else:
                missing.append((domain, key, path))
        if missing:
            todo.append((policy, missing))
    if not todo:
        return results

    total = sum(len(missing) for _, missing in todo) * cfg.episodes
    bar = progress(total=total, desc="evaluation", unit="ep")
    try:
        for policy, missing in todo:
            venv = pool.get(
                family,
                [d for d, _ in domains],
                min(cfg.n_envs, cfg.episodes),
                size=policy.size,
                vec=cfg.vec,
                max_episode_steps=cfg.max_episode_steps,
            )
            # Domain by domain: a worker loads a domain's textures once, and each domain's
            # record is complete (and cached) early, so a killed evaluation loses little.
            episodes = [ep for d, _, _ in missing for ep in episodes_for(cfg.seed, d, cfg.episodes)]
            collect = _Collector(episodes, missing, cfg.episodes, policy.role, results[policy.role], bar)
            bar.set_postfix_str(policy.role)
            n_actions = int(venv.action_space.n)  # type: ignore[attr-defined]
            seed_everything(derive_seed(cfg.seed, "transfer", policy.role))
            run_episodes(venv, episodes, policy.make_act(episodes, n_actions), on_episode=collect)
    finally:
        bar.close()
    return results
