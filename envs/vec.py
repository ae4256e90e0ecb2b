"""Vectorised envs for SB3: one or several domains, per worker or drawn per episode."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import gymnasium
import numpy as np

from darla.envs.replay import EpisodeRecorder
from darla.errors import ConfigError
from darla.registry import check_choice
from darla.seeding import derive_seed

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

VEC_KINDS = ("dummy", "subproc", "auto")
DOMAIN_MODES = ("per_worker", "per_episode")


def resolve_vec(vec: str) -> Literal["dummy", "subproc"]:
    """`auto` -> the kind `make_vec_env` builds (see its docstring)."""
    check_choice("vec env kind", vec, list(VEC_KINDS))
    return "subproc" if vec == "subproc" else "dummy"


class DomainSchedule(gymnasium.Wrapper):
    """Draws the domain of every episode from `domains` with its own seeded generator, so the
    same seed gives the same domain sequence whatever the vectorisation."""

    def __init__(self, env: gymnasium.Env, domains: Sequence[str], seed: int) -> None:
        super().__init__(env)
        self.domains = tuple(domains)
        self._rng = np.random.default_rng(seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        options = dict(options or {})
        if "domain" not in options:
            options["domain"] = self.domains[int(self._rng.integers(len(self.domains)))]
        return self.env.reset(seed=seed, options=options)

    def get_rng_state(self) -> dict[str, Any]:
        return dict(self._rng.bit_generator.state)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state


def _make_env(
    family: str,
    domains: tuple[str, ...],
    index: int,
    seed: int,
    size: int,
    domain_mode: str,
    max_episode_steps: int | None,
    env_params: dict[str, Any],
    wrapper: Callable[[gymnasium.Env], gymnasium.Env] | None = None,
    record_episodes: bool = False,
) -> gymnasium.Env:
    """Build worker `index`'s env (module-level so SubprocVecEnv can pickle it)."""
    from darla.envs.family import get_family

    fam = get_family(family)
    env_seed = derive_seed(seed, "env", index)
    first = domains[index % len(domains)]
    env: gymnasium.Env = fam.make(
        first, seed=env_seed, size=size, max_episode_steps=max_episode_steps, **env_params
    )
    if domain_mode == "per_episode":
        env = DomainSchedule(env, domains, derive_seed(seed, "domains", index))
    if record_episodes:
        env = EpisodeRecorder(env)
    return wrapper(env) if wrapper is not None else env


def make_vec_env(
    family: str,
    domains: Sequence[str],
    n_envs: int,
    *,
    seed: int,
    size: int = 64,
    vec: Literal["dummy", "subproc", "auto"] = "auto",
    domain_mode: Literal["per_worker", "per_episode"] = "per_worker",
    max_episode_steps: int | None = None,
    env_params: dict[str, Any] | None = None,
    wrapper: Callable[[gymnasium.Env], gymnasium.Env] | None = None,
    record_episodes: bool = False,
) -> VecEnv:
    """An SB3 VecEnv of `n_envs` copies of `family` (observations uint8 (n, H, W, 3)).

    `wrapper` (picklable) wraps each env where it lives, inside its worker process for `subproc`:
    the frozen mode encodes frames there, so only feature vectors cross the pipe.
    `record_episodes`: each env keeps what decides its current episode (`EpisodeRecorder`), so a
    checkpoint can save the envs' state and a resume replay it.

    per_worker: worker i always uses domains[i % len(domains)]; per_episode: every reset draws
    a domain (seeded per worker). Split names ("source") are expanded. info["domain"] is set.
    `auto` is dummy: with single-threaded llvmpipe a 64x64 MiniWorld step costs less than the
    pipe round trip to a worker process (SeekAvoid, 4 envs: ~2,600 env steps/s in one process
    against ~2,000 in subprocesses; frozen PPO 880 against 590). Use the cores with `darla run
    --jobs` (whole stages in parallel) instead.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from darla.envs.family import get_family

    fam = get_family(family)
    names = fam.resolve_domains(list(domains) if not isinstance(domains, str) else domains)
    check_choice("vec env kind", vec, list(VEC_KINDS))
    check_choice("domain mode", domain_mode, list(DOMAIN_MODES))
    if n_envs < 1:
        raise ConfigError(f"n_envs must be >= 1, got {n_envs}")
    fns: list[Callable[[], gymnasium.Env]] = [
        functools.partial(
            _make_env,
            fam.name,
            names,
            i,
            seed,
            size,
            domain_mode,
            max_episode_steps,
            dict(env_params or {}),
            wrapper,
            record_episodes,
        )
        for i in range(n_envs)
    ]
    if domain_mode == "per_worker" and len(names) > 1 and n_envs % len(names):
        shares = dict(Counter(names[i % len(names)] for i in range(n_envs)))
        logger.warning(
            "per_worker: %d envs over %d domains gives them unequal shares of experience %s; use a "
            "multiple of %d envs or domain_mode='per_episode'",
            n_envs,
            len(names),
            shares,
            len(names),
        )
    if resolve_vec(vec) == "subproc":
        return SubprocVecEnv(fns, start_method="forkserver")
    return DummyVecEnv(fns)
