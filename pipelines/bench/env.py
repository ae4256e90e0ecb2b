"""`darla bench env`: env steps/s against the plain env it is built on, and frame-collection scaling.

Everything is measured in one run: the baseline (`BASELINES`: raw MiniWorld OneRoom for the room
families, Gymnasium's Reacher-v5 rendering rgb frames for Reaching) is timed right before every
domain, so load from other processes hits both sides of each ratio alike. Headline: `ratio` =
median over (domain, round) pairs of the family's steps/s / the baseline's steps/s at the same
resolution; `collect_ratio` = collection frames/s with 2 workers / with 1. `cpu_ratio` is the same
comparison per CPU second (steadier than wall-clock on a shared machine).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from darla.artifacts import host_info
from darla.cli import Command
from darla.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class BenchEnvConfig:
    """Benchmark env stepping and frame collection."""

    env: str = "SeekAvoid"
    """Env family to measure."""
    domains: tuple[str, ...] = ("all",)
    """Domains to time (names or split names)."""
    size: int = 64
    """Observation size (the baseline is rendered at the same size)."""
    steps: int = 1000
    """Steps per measurement (random actions, resets included)."""
    repeats: int = 2
    """Rounds; each round times the baseline right before every domain (paired ratios, medians)."""
    collect_frames: int = 3000
    """Frames per collection measurement (1 worker, then 2)."""
    seed: int = 0
    """Seed of the action sequences and the collection."""

    def validate(self) -> None:
        if self.steps < 10 or self.repeats < 1 or self.collect_frames < 1:
            raise ConfigError("need steps >= 10, repeats >= 1, collect_frames >= 1")


def _steps_per_second(env: Any, actions: list[Any], seed: int) -> tuple[float, float]:
    """(steps per wall-clock second, steps per CPU second of this process incl. GL threads)."""
    env.reset(seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    steps = len(actions)
    return steps / (time.perf_counter() - t0), steps / max(time.process_time() - c0, 1e-9)


class _RenderEachStep(gymnasium.Wrapper):
    """Return the rendered rgb frame as the observation, as a pixel agent would see the env."""

    def _frame(self) -> Any:
        # Gymnasium's offscreen viewer makes its GL context current only when it is created: with
        # another context in the process (darla's env) its later frames come out black (and fast)
        raw: Any = self.env.unwrapped
        viewer = getattr(raw.mujoco_renderer, "viewer", None)
        if viewer is not None:
            viewer.make_context_current()
        return self.env.render()

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        _, info = self.env.reset(**kwargs)
        return self._frame(), info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        _, reward, terminated, truncated, info = self.env.step(action)
        return self._frame(), reward, terminated, truncated, info


def _oneroom(size: int) -> Any:
    from miniworld.envs.oneroom import OneRoom

    with contextlib.redirect_stdout(io.StringIO()):
        return OneRoom(obs_width=size, obs_height=size)


def _reacher(size: int) -> Any:
    from darla.envs.reaching_gl import select_backend

    select_backend()  # MUJOCO_GL before gymnasium imports mujoco
    return _RenderEachStep(gymnasium.make("Reacher-v5", render_mode="rgb_array", width=size, height=size))


def _discrete(n: int) -> Callable[[np.random.Generator, int], list[Any]]:
    return lambda rng, steps: [int(a) for a in rng.integers(n, size=steps)]


@dataclass(frozen=True)
class Baseline:
    """The plain env a family is compared with, and how to draw random actions for both sides."""

    name: str
    make: Callable[[int], Any]
    """frame size -> env whose step returns a frame of that size"""
    actions: Callable[[np.random.Generator, int], list[Any]]
    family_actions: int | None = None
    """how many of the family's discrete actions to draw from (None: all of them)"""

    @property
    def key(self) -> str:
        return self.name.split("-")[0].lower()


ONEROOM = Baseline("OneRoom", _oneroom, _discrete(3), family_actions=3)  # turn left/right, forward
REACHER = Baseline(
    "Reacher-v5", _reacher, lambda rng, steps: list(rng.uniform(-1, 1, (steps, 2)).astype(np.float32))
)
BASELINES: dict[str, Baseline] = {"SeekAvoid": ONEROOM, "FetchObject": ONEROOM, "Reaching": REACHER}
"""Family -> the plain env it is measured against (OneRoom for any family not listed)."""


def run_bench_env(cfg: BenchEnvConfig) -> dict[str, Any]:
    from darla.envs import collect_frames, get_family

    fam = get_family(cfg.env)
    names = fam.resolve_domains(list(cfg.domains))
    baseline = BASELINES.get(fam.name, ONEROOM)
    env = fam.make(names[0], seed=cfg.seed, size=cfg.size)
    plain = baseline.make(cfg.size)
    n_family_actions = baseline.family_actions or int(env.action_space.n)
    # Paired measurements: the baseline right before each domain, so a load spike from other
    # processes hits both sides of a ratio; medians over rounds and pairs.
    raw: list[float] = []
    per_domain: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    cpu_ratios: list[float] = []
    for r in range(cfg.repeats):
        for name in names:
            rng = np.random.default_rng(cfg.seed + r)
            base, base_cpu = _steps_per_second(plain, baseline.actions(rng, cfg.steps), cfg.seed + r)
            env.reset(options={"domain": name})
            actions = _discrete(n_family_actions)(rng, cfg.steps)
            ours, ours_cpu = _steps_per_second(env, actions, cfg.seed + r)
            cpu_ratios.append(ours_cpu / base_cpu)
            raw.append(base)
            per_domain[name].append(ours)
            ratios[name].append(ours / base)
    plain.close()
    env.close()
    raw_median = float(np.median(raw))
    domain_median = {n: float(np.median(v)) for n, v in per_domain.items()}
    ratio_median = {n: float(np.median(v)) for n, v in ratios.items()}
    mean_domain = float(np.mean(list(domain_median.values())))
    ratio = float(np.median([x for v in ratios.values() for x in v]))

    collect: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="darla-bench-") as tmp:
        for workers in (1, 2):
            ds = collect_frames(
                fam.name, fam.splits["source"], cfg.collect_frames, seed=cfg.seed, size=cfg.size,
                workers=workers, cache_dir=f"{tmp}/w{workers}",
            )  # fmt: skip
            collect[f"workers_{workers}"] = float(ds.meta["frames_per_second"])
            in_view = float(ds.meta["in_view_fraction"])
    result = {
        "env": fam.name,
        "size": cfg.size,
        "baseline": baseline.name,
        f"{baseline.key}_steps_per_s": round(raw_median, 1),
        "steps_per_s": {n: round(v, 1) for n, v in domain_median.items()},
        "mean_steps_per_s": round(mean_domain, 1),
        "ratio_per_domain": {n: round(v, 3) for n, v in ratio_median.items()},
        "ratio": round(ratio, 3),
        "cpu_ratio": round(float(np.median(cpu_ratios)), 3),
        "collect_frames_per_s": {k: round(v, 1) for k, v in collect.items()},
        "collect_ratio": round(collect["workers_2"] / collect["workers_1"], 3),
        "collect_in_view_fraction": round(in_view, 3),
        "collect_frames": cfg.collect_frames,
        "host": host_info(),
    }
    logger.info(
        "ratio %.2f (%s/%s), collect_ratio %.2f",
        result["ratio"],
        fam.name,
        baseline.name,
        result["collect_ratio"],
    )
    return result


COMMAND = Command(
    words=("bench", "env"),
    config=BenchEnvConfig,
    run=run_bench_env,
    help="benchmark env steps/s and frame collection",
)
