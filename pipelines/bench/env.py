"""`darla bench env`: env steps/s against raw MiniWorld, and frame-collection scaling.

Everything is measured in one run: OneRoom is timed right before every domain, so load from
other processes hits both sides of each ratio alike. Headline: `ratio` = median over
(domain, round) pairs of SeekAvoid steps/s / OneRoom steps/s at the same resolution;
`collect_ratio` = collection frames/s with 2 workers / with 1. `cpu_ratio` is the same
comparison per CPU second (steadier than wall-clock on a shared machine).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from typing import Any

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
    """Observation size (OneRoom is rendered at the same size)."""
    steps: int = 1000
    """Steps per measurement (random actions, resets included)."""
    repeats: int = 2
    """Rounds; each round times OneRoom right before every domain (paired ratios, medians)."""
    collect_frames: int = 3000
    """Frames per collection measurement (1 worker, then 2)."""
    seed: int = 0
    """Seed of the action sequences and the collection."""

    def validate(self) -> None:
        if self.steps < 10 or self.repeats < 1 or self.collect_frames < 1:
            raise ConfigError("need steps >= 10, repeats >= 1, collect_frames >= 1")


def _steps_per_second(env: Any, steps: int, seed: int) -> tuple[float, float]:
    """(steps per wall-clock second, steps per CPU second of this process incl. GL threads)."""
    rng = np.random.default_rng(seed)
    n_actions = 3  # turn left, turn right, forward: the same for both envs
    env.reset(seed=seed)
    actions = rng.integers(n_actions, size=steps)
    t0, c0 = time.perf_counter(), time.process_time()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(int(a))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - t0), steps / max(time.process_time() - c0, 1e-9)


def run_bench_env(cfg: BenchEnvConfig) -> dict[str, Any]:
    import contextlib
    import io

    from darla.envs import collect_frames, get_family

    fam = get_family(cfg.env)
    names = fam.resolve_domains(list(cfg.domains))
    from miniworld.envs.oneroom import OneRoom

    with contextlib.redirect_stdout(io.StringIO()):
        oneroom = OneRoom(obs_width=cfg.size, obs_height=cfg.size)
    env = fam.make(names[0], seed=cfg.seed, size=cfg.size)
    # Paired measurements: OneRoom right before each domain, so a load spike from other
    # processes hits both sides of a ratio; medians over rounds and pairs.
    raw: list[float] = []
    per_domain: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    cpu_ratios: list[float] = []
    for r in range(cfg.repeats):
        for name in names:
            base, base_cpu = _steps_per_second(oneroom, cfg.steps, cfg.seed + r)
            env.reset(options={"domain": name})
            ours, ours_cpu = _steps_per_second(env, cfg.steps, cfg.seed + r)
            cpu_ratios.append(ours_cpu / base_cpu)
            raw.append(base)
            per_domain[name].append(ours)
            ratios[name].append(ours / base)
    oneroom.close()
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
        "oneroom_steps_per_s": round(raw_median, 1),
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
        "ratio %.2f (SeekAvoid/OneRoom), collect_ratio %.2f", result["ratio"], result["collect_ratio"]
    )
    return result


COMMAND = Command(
    words=("bench", "env"),
    config=BenchEnvConfig,
    run=run_bench_env,
    help="benchmark env steps/s and frame collection",
)
