"""`darla bench act`: env steps/s of PPO on frozen features vs PPO on pixels, and the bare env.

One run, same env, domains, n_envs and hyperparameters for both modes, for every vec env type
asked (dummy: all workers in this process, the frozen encoder batched over them; subproc: one
process per worker, each with its own copy of the frozen encoder, as `darla act --vec subproc`
trains). The frozen encoder is a DARLA-architecture beta_vae built fresh (untrained: speed does
not depend on the weights).
`ratio` = frozen / pixels (target >= 2); `env_ratio` = frozen / bare env (target >= 0.6, i.e. the
encoder plus learning cost under 40% of the env's own throughput).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from darla.agents.factory import build_model, resolve_hyperparams, worker_wrapper, wrap_env
from darla.artifacts import host_info
from darla.cli import Command
from darla.errors import ConfigError
from darla.runtime import num_cores, setup_torch
from darla.seeding import derive_seed

logger = logging.getLogger(__name__)

VecKind = Literal["dummy", "subproc"]
WHAT = ("bare", "frozen", "pixels")


@dataclass
class BenchActConfig:
    """Benchmark PPO throughput on frozen features vs pixels, against the bare vec env."""

    env: str = "SeekAvoid"
    """env family"""
    domains: tuple[str, ...] = ()
    """domains (default: the family's source split)"""
    size: int = 64
    """frame size"""
    n_envs: int = 4
    """vectorised workers"""
    steps: int = 4096
    """env steps measured per setting (rounded up to whole PPO rollouts)"""
    vecs: tuple[VecKind, ...] = ("dummy", "subproc")
    """vec env types to measure"""
    vision: str = "beta_vae"
    """zoo model used as the frozen encoder (built untrained, DARLA's architecture)"""
    hparams: dict[str, Any] = field(default_factory=dict)
    """PPO hyperparameters overriding the YAML ones (the same for both modes)"""
    rounds: int = 3
    """interleaved measurement rounds (the median is reported)"""
    threads: int = 1
    """torch threads (0: all cores; 1 avoids oversubscribing the cores the env workers use)"""
    seed: int = 0
    """seed of envs, encoder and policies"""

    def validate(self) -> None:
        if self.steps < 1 or self.n_envs < 1 or self.rounds < 1:
            raise ConfigError(
                f"steps, n_envs and rounds must be >= 1, got {self.steps}, {self.n_envs}, {self.rounds}"
            )
        if not self.vecs:
            raise ConfigError("vecs: give at least one of dummy, subproc")


def _make(cfg: BenchActConfig, vec: VecKind, domains: tuple[str, ...], what: str, encoder: Any) -> VecEnv:
    """The vec env of one setting, built as `darla act` builds it (frozen + subproc: the workers encode)."""
    from darla.envs import make_vec_env

    return make_vec_env(
        cfg.env,
        list(domains),
        cfg.n_envs,
        seed=derive_seed(cfg.seed, "bench-act"),
        size=cfg.size,
        vec=vec,
        domain_mode="per_episode",  # as `darla act` trains (any n_envs covers every domain)
        wrapper=None if what == "bare" else worker_wrapper(what, encoder, vec),
    )


class _Setting:
    """One thing to time (bare env, PPO frozen or PPO pixels), built once and measured in rounds."""

    def __init__(
        self, cfg: BenchActConfig, what: str, venv: VecEnv, hparams: dict[str, Any], encoder: Any
    ) -> None:
        self.what = what
        self.venv = venv
        self.rng = np.random.default_rng(cfg.seed)
        self.model = None
        if what == "bare":
            self.iters = max(1, cfg.steps // venv.num_envs)
            venv.reset()
            self._random_steps(1)
        else:
            wrapped = wrap_env(venv, what, encoder)
            self.model = build_model("ppo", what, wrapped, hparams, seed=cfg.seed, device="cpu")
            rollout = int(hparams.get("n_steps", 2048)) * cfg.n_envs
            self.total = max(1, -(-cfg.steps // rollout)) * rollout
            self.model.learn(total_timesteps=rollout)  # warm-up: first reset, allocations, thread pools

    def _random_steps(self, iters: int) -> None:
        n = self.venv.num_envs
        for _ in range(iters):
            self.venv.step(self.rng.integers(self.venv.action_space.n, size=n))  # type: ignore[attr-defined]

    def measure(self) -> tuple[float, float]:
        """(env steps per wall-clock second, env steps per CPU second of this process)."""
        wall, cpu = time.perf_counter(), time.process_time()
        if self.model is None:
            self._random_steps(self.iters)
            steps = self.iters * self.venv.num_envs
        else:
            self.model.learn(total_timesteps=self.total, reset_num_timesteps=False)
            steps = self.total
        return steps / (time.perf_counter() - wall), steps / max(time.process_time() - cpu, 1e-9)

    def close(self) -> None:
        self.venv.close()


def run_bench(cfg: BenchActConfig) -> dict[str, Any]:
    import torch

    import darla.vision
    from darla.envs import get_family

    setup_torch(cfg.threads)
    family = get_family(cfg.env)
    domains = family.resolve_domains(cfg.domains) if cfg.domains else family.splits["source"]
    torch.manual_seed(cfg.seed)
    encoder = darla.vision.build(cfg.vision, image_shape=(cfg.size, cfg.size, 3))
    hparams = resolve_hyperparams("ppo", family.name, "pixels", cfg.hparams)
    hparams.pop("policy_kwargs", None)  # same (default) policy heads for both modes
    per_vec: dict[str, dict[str, Any]] = {}
    for vec in cfg.vecs:
        settings = [
            _Setting(cfg, what, _make(cfg, vec, domains, what, encoder), hparams, encoder) for what in WHAT
        ]
        try:
            walls: dict[str, list[float]] = {w: [] for w in WHAT}
            cpus: dict[str, list[float]] = {w: [] for w in WHAT}
            # interleaved rounds: a burst of load from other processes hits every setting alike
            for _ in range(cfg.rounds):
                for setting in settings:
                    wall, cpu = setting.measure()
                    walls[setting.what].append(wall)
                    cpus[setting.what].append(cpu)
        finally:
            for setting in settings:
                setting.close()
        figures: dict[str, Any] = {w: round(float(np.median(walls[w])), 1) for w in WHAT}
        figures["ratio"] = round(figures["frozen"] / figures["pixels"], 2)
        figures["env_ratio"] = round(figures["frozen"] / figures["bare"], 2)
        figures["rounds"] = {w: [round(r, 1) for r in walls[w]] for w in WHAT}
        if vec == "dummy":  # everything runs in this process: CPU time is robust to other jobs' load
            cpu_rate = {w: float(np.median(cpus[w])) for w in WHAT}
            figures["per_cpu_second"] = {w: round(v, 1) for w, v in cpu_rate.items()}
            figures["cpu_ratio"] = round(cpu_rate["frozen"] / cpu_rate["pixels"], 2)
            figures["cpu_env_ratio"] = round(cpu_rate["frozen"] / cpu_rate["bare"], 2)
        logger.info("%s: %s", vec, figures)
        per_vec[vec] = figures
    best = max(per_vec, key=lambda v: per_vec[v]["frozen"])
    return {
        "env": family.name,
        "domains": list(domains),
        "size": cfg.size,
        "n_envs": cfg.n_envs,
        "steps": cfg.steps,
        "rounds": cfg.rounds,
        "cores": num_cores(),
        "torch_threads": torch.get_num_threads(),
        "host": host_info(),  # speed figures differ by CPU: say which one measured them
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "encoder": f"{cfg.vision} (untrained, DARLA architecture, {encoder.feature_dim} features)",
        "hparams": hparams,
        "vec": best,
        "bare": per_vec[best]["bare"],
        "frozen": per_vec[best]["frozen"],
        "pixels": per_vec[best]["pixels"],
        "ratio": per_vec[best]["ratio"],
        "env_ratio": per_vec[best]["env_ratio"],
        "per_vec": per_vec,
    }


def _render(result: dict[str, Any]) -> str:
    lines = [
        f"PPO env steps/s on {result['env']} {result['size']}x{result['size']}, {result['n_envs']} envs, "
        f"encoder {result['encoder']}",
        f"{'vec':<8} {'bare env':>9} {'frozen':>9} {'pixels':>9} {'ratio':>7} {'env_ratio':>9}",
    ]
    for vec, f in result["per_vec"].items():
        lines.append(
            f"{vec:<8} {f['bare']:>9.1f} {f['frozen']:>9.1f} {f['pixels']:>9.1f} {f['ratio']:>7.2f} {f['env_ratio']:>9.2f}"
        )
    lines.append(
        f"best ({result['vec']}): ratio {result['ratio']} (target >= 2), env_ratio {result['env_ratio']} (>= 0.6)"
    )
    return "\n".join(lines)


COMMAND = Command(
    words=("bench", "act"),
    config=BenchActConfig,
    run=run_bench,
    help="benchmark PPO on frozen features vs pixels",
    render=_render,
)
