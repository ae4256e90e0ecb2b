"""`darla bench shift`: what a pixel shift costs per env step.

For each base env and suite, the unwrapped pipeline and the shifted env take the same actions in
turn, step by step, so a load change on a shared machine hits both sides of each ratio alike:
- unwrapped: the base env producing the same unshifted frames at the same size (a darla family
  renders at that size; a Gymnasium base steps, renders and box-resizes to it);
- wrapped: the shifted family's env at `level` (default the strongest, `extreme`).
Per pair, `ratio` = median over rounds of wrapped / unwrapped steps/s; the headline `ratio` is the
worst pair's (target >= 0.9), `ratio_median` the median pair's. On a loaded host a step is often
preempted (SeekAvoid measured: median step 0.56 ms, 90th percentile 4.6 ms), which makes the mean
noisy; `median_step_ratio` compares median step times instead. `shift_us_per_frame` times the
shift alone on one frame; `op_ratio` = the unwrapped median step time / (that + the shift's): the
same ratio from two low-noise timings. For render bases `native_ratio` compares against the bare step +
render at the native size (what resizing costs on top); `batch_frames_per_s` times the op on a batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from darla.artifacts import host_info
from darla.cli import Command
from darla.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class BenchShiftConfig:
    """Benchmark the pixel shift suites against their unwrapped envs."""

    envs: tuple[str, ...] = ("SeekAvoid", "CartPole-v1")
    """Base envs: darla families or Gymnasium ids with RGB frames."""
    suites: tuple[str, ...] = ("colour", "distractors", "background")
    """Shift suites (a suite the base cannot take, e.g. background on SeekAvoid, is reported as skipped)."""
    level: str = "extreme"
    """Level timed (extreme: the most shapes, the strongest texture)."""
    size: int = 64
    """Frame size."""
    steps: int = 300
    """Steps per round (random actions, resets included)."""
    repeats: int = 5
    """Rounds (ratios are medians over rounds)."""
    batch: int = 256
    """Frames per batch when timing an op alone."""
    seed: int = 0
    """Seed of the action sequences."""

    def validate(self) -> None:
        if self.steps < 10 or self.repeats < 1 or self.size < 8 or self.batch < 1:
            raise ConfigError("need steps >= 10, repeats >= 1, size >= 8, batch >= 1")


class _Unwrapped:
    """The base's own frame pipeline: step (and render + resize for a render base)."""

    def __init__(self, env: Any, render: bool, size: int | None) -> None:
        self.env, self.render, self.size = env, render, size
        self.action_space = env.action_space

    def _frame(self) -> None:
        if self.render:
            from darla.envs.shift_ops import resize_frame

            frame = self.env.render()
            if self.size is not None:
                resize_frame(frame, self.size)

    def reset(self, seed: int | None = None) -> None:
        self.env.reset(seed=seed)
        self._frame()

    def step(self, action: int) -> tuple[Any, ...]:
        out = self.env.step(action)
        self._frame()
        return tuple(out)


def _interleaved(envs: list[Any], steps: int, seed: int) -> np.ndarray:
    """Seconds of every step of each env (envs x steps, resets included), the envs stepped in
    turn with the same actions: a load change on a shared machine hits all of them alike, which
    back-to-back blocks could not promise."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(min(int(e.action_space.n) for e in envs), size=steps).tolist()
    for env in envs:
        env.reset(seed=seed)
    spent = np.zeros((len(envs), steps))
    clock = time.perf_counter
    for t, a in enumerate(actions):
        for i, env in enumerate(envs):
            t0 = clock()
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
            spent[i, t] = clock() - t0
    return spent


def _unwrapped(family: Any, base_domain: str, size: int, native: bool) -> _Unwrapped:
    """The base env in the same base domain as the shifted domain timed (same scene, same cost)."""
    import contextlib
    import io

    import gymnasium

    from darla.envs.shift_family import shift_info

    base = shift_info(family.name).base
    if base.family is not None:
        return _Unwrapped(base.family.make(base_domain, seed=0, size=size), False, None)
    kwargs = base.size_kwargs(size) if base.size_kwargs else {}
    render = base.frames == "render"
    if render:
        kwargs["render_mode"] = "rgb_array"
    with contextlib.redirect_stdout(io.StringIO()):
        env = gymnasium.make(base.name, disable_env_checker=True, **kwargs)
    if not render:  # RGB observations: resized inside the env when it can render at `size`
        return _Unwrapped(env, False, None)
    return _Unwrapped(env, True, None if native else size)


def _op_costs(spec: Any, env: Any, cfg: BenchShiftConfig) -> tuple[float, float]:
    """(microseconds per frame of the shift alone at batch 1, frames/s at batch `cfg.batch`)."""
    rng = np.random.default_rng(cfg.seed)
    frames = np.stack([env.random_base_frame(rng, spec.base_domain, 5)[0] for _ in range(min(cfg.batch, 32))])
    op = spec.make_op(cfg.size, env.keyer)
    op.reset(rng, 1)
    single = frames[:1]
    blocks = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(100):
            op.apply(single)
        blocks.append((time.perf_counter() - t0) / 100)
    batch = np.resize(frames, (cfg.batch, *frames.shape[1:]))
    op.reset(rng, cfg.batch)
    t0 = time.perf_counter()
    op.apply(batch)
    return 1e6 * float(np.median(blocks)), cfg.batch / (time.perf_counter() - t0)


def _bench_one(name: str, cfg: BenchShiftConfig) -> dict[str, Any]:
    from darla.envs import get_family
    from darla.envs.shift import LEVELS

    family = get_family(name)
    domain = next(d for d in family.domain_names() if family.domains[d].level == LEVELS.index(cfg.level))
    spec = family.domains[domain]
    wrapped = family.make(domain, seed=cfg.seed, size=cfg.size)
    base = _unwrapped(family, spec.base_domain, cfg.size, native=False)
    native = _unwrapped(family, spec.base_domain, cfg.size, native=True) if base.render else None
    envs = [base, wrapped, *([native] if native is not None else [])]
    times = np.array([_interleaved(envs, cfg.steps, cfg.seed + r) for r in range(cfg.repeats)])
    rates = cfg.steps / times.sum(axis=2)  # (rounds, envs): steps/s
    typical = 1.0 / np.median(times, axis=2)  # the same from the median step: no preemption spikes
    op_us, batch_rate = _op_costs(spec, wrapped.unwrapped, cfg)
    unwrapped_us = 1e6 / float(np.median(typical[:, 0]))  # the median step: no preemption in it
    result: dict[str, Any] = {
        "domain": domain,
        "unwrapped_steps_per_s": round(float(np.median(rates[:, 0])), 1),
        "wrapped_steps_per_s": round(float(np.median(rates[:, 1])), 1),
        "ratio": round(float(np.median(rates[:, 1] / rates[:, 0])), 3),
        "median_step_ratio": round(float(np.median(typical[:, 1] / typical[:, 0])), 3),
        "shift_us_per_frame": round(op_us, 1),
        "unwrapped_us_per_median_step": round(unwrapped_us, 1),
        "op_ratio": round(unwrapped_us / (unwrapped_us + op_us), 3),
        "batch_frames_per_s": round(batch_rate, 1),
    }
    if native is not None:
        result["native_ratio"] = round(float(np.median(rates[:, 1] / rates[:, 2])), 3)
    for env in (wrapped, base.env, *([native.env] if native is not None else [])):
        env.close()
    return result


def run_bench_shift(cfg: BenchShiftConfig) -> dict[str, Any]:
    from darla.envs import SUITES
    from darla.envs.shift import LEVELS
    from darla.envs.shift_family import background_keyable, resolve_base
    from darla.registry import check_choice

    check_choice("shift level", cfg.level, list(LEVELS))
    for suite in cfg.suites:
        SUITES.get(suite)
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for env in cfg.envs:
        base = resolve_base(env)
        for suite in cfg.suites:
            name = f"{env}@{suite}"
            if SUITES.get(suite).needs_background and not background_keyable(base):
                skipped[name] = f"{env} cannot key its background"
                continue
            results[name] = _bench_one(name, cfg)
            logger.info("%s: ratio %.2f (%s)", name, results[name]["ratio"], results[name])
    ratios = [v["ratio"] for v in results.values()]
    op_ratios = [v["op_ratio"] for v in results.values()]
    typical = [v["median_step_ratio"] for v in results.values()]
    return {
        "size": cfg.size,
        "level": cfg.level,
        "steps": cfg.steps,
        "repeats": cfg.repeats,
        "results": results,
        "skipped": skipped,
        "ratio": round(float(min(ratios)), 3) if ratios else None,
        "ratio_median": round(float(np.median(ratios)), 3) if ratios else None,
        "median_step_ratio": round(float(min(typical)), 3) if typical else None,
        "op_ratio": round(float(min(op_ratios)), 3) if op_ratios else None,
        "host": host_info(),
    }


COMMAND = Command(
    words=("bench", "shift"),
    config=BenchShiftConfig,
    run=run_bench_shift,
    help="benchmark pixel shift suites: wrapped / unwrapped env steps/s",
)
