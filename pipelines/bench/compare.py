"""`darla bench compare`: what the sweep engine gains from a second worker, and what Ray costs.

N independent trials (each a whole `darla run` of the trial preset with its own run seed: its own
see models, policies and transfers, nothing shared between trials) are planned as one sweep and
run three times from empty folders: by 1 local worker (all torch threads), by 2 local workers (the
threads split between them, as `darla compare` does), and by the Ray backend on a fresh local
instance. Each setting collects its own frames (its own frame cache): no setting reuses another's.
`ratio` = wall with 2 workers / wall with 1 (target <= 0.65: the trials overlap, the process
start-ups and the plan's serial stages do not). `ray_seconds` is Ray's wall on the same trials,
start-up included; `ray_startup_seconds` times `ray.init` + `ray.shutdown` alone.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darla.artifacts import host_info
from darla.cli import Command
from darla.config import build_config, merge, preset_names
from darla.envs import get_family
from darla.errors import ConfigError
from darla.pipelines.analysis.probe import can_probe
from darla.pipelines.orchestrate.local import LocalBackend, Outcome, RunLog
from darla.pipelines.orchestrate.plan import plan_run
from darla.pipelines.orchestrate.ray_backend import RayBackend
from darla.pipelines.orchestrate.ray_cluster import import_ray
from darla.pipelines.orchestrate.run import RunConfig
from darla.pipelines.orchestrate.tasks import Task
from darla.registry import check_choice
from darla.runtime import num_cores

logger = logging.getLogger(__name__)


@dataclass
class BenchCompareConfig:
    """Benchmark sweeps: N independent trials on 1 vs 2 local workers, and on Ray."""

    trials: int = 4
    """independent trials (run seeds seed .. seed+trials-1), planned as one sweep"""
    env: str = "SeekAvoid"
    """env family of every trial"""
    trial_preset: str = "smoke"
    """preset whose `run` section makes one trial"""
    trial: dict[str, Any] = field(default_factory=dict)
    """run settings over the preset's, e.g. act={timesteps: 512} modes=[frozen]"""
    ray: bool = True
    """also time the Ray backend (reported as skipped when ray is not installed)"""
    scratch: Path | None = None
    """folder for the trials' runs (default: a temporary one, deleted after)"""
    seed: int = 0
    """run seed of the first trial"""

    def validate(self) -> None:
        if self.trials < 2:
            raise ConfigError(f"trials must be >= 2 to overlap anything, got {self.trials}")
        check_choice("trial preset", self.trial_preset, preset_names())
        get_family(self.env)
        for key in ("env", "seed", "out", "report"):
            if key in self.trial:
                raise ConfigError(
                    f"trial sets {key!r}, which the benchmark sets per trial; use --{key} if it has one"
                )


def trial_configs(cfg: BenchCompareConfig, root: Path) -> list[RunConfig]:
    """The trials: the preset's run, one per seed, each in its own folder under `root`."""
    runs = []
    for i in range(cfg.trials):
        own = {
            "env": cfg.env,
            "seed": cfg.seed + i,
            "out": str(root / f"trial-{i}"),
            "report": False,
            "see": {"cache_dir": str(root / "frames")},  # each setting collects its own frames
        }
        overrides = merge(cfg.trial, own)
        runs.append(
            build_config(RunConfig, preset=cfg.trial_preset, section="run", overrides=overrides, env=cfg.env)
        )
    return runs


def plan_trials(runs: list[RunConfig], threads: int) -> list[Task]:
    family = get_family(runs[0].family)
    factors = family.probe_factors if can_probe(family) else ()
    return [task for run in runs for task in plan_run(run, threads=threads, probe_factors=factors)]


def _timed(backend: Any, tasks: list[Task]) -> float:
    started = time.perf_counter()
    outcomes: dict[Path, Outcome] = backend.execute(tasks)
    seconds = time.perf_counter() - started
    bad = sorted(o.task.label for o in outcomes.values() if o.status not in ("ran", "skipped"))
    if bad:
        raise ConfigError(f"bench compare: trials failed ({', '.join(bad)}); see the log above")
    return seconds


def _ray_startup() -> float:
    ray = import_ray()
    started = time.perf_counter()
    ray.init(address="local", num_cpus=num_cores(), include_dashboard=False, logging_level=logging.WARNING)
    ray.shutdown()
    return time.perf_counter() - started


def run_bench_compare(cfg: BenchCompareConfig) -> dict[str, Any]:
    cfg.validate()
    cores = num_cores()
    root = (
        Path(cfg.scratch)
        if cfg.scratch is not None
        else Path(tempfile.mkdtemp(prefix="darla-bench-compare-"))
    )
    try:
        walls: dict[str, float] = {}
        for workers in (1, 2):
            runs = trial_configs(cfg, root / f"workers-{workers}")
            threads = 0 if workers == 1 else max(1, cores // workers)
            tasks = plan_trials(runs, threads)
            logger.info(
                "bench compare: %d tasks of %d trials on %d local worker(s)", len(tasks), cfg.trials, workers
            )
            walls[f"workers_{workers}"] = _timed(LocalBackend(RunLog(root), workers, keep_going=True), tasks)
        result: dict[str, Any] = {
            "env": cfg.env,
            "trials": cfg.trials,
            "trial_preset": cfg.trial_preset,
            "tasks": len(tasks),
            "seconds": {k: round(v, 1) for k, v in walls.items()},
            "ratio": round(walls["workers_2"] / walls["workers_1"], 3),
        }
        if cfg.ray and importlib.util.find_spec("ray") is None:
            result["ray"] = "skipped: ray is not installed (pip install -e '.[ray]')"
        elif cfg.ray:
            result["ray_startup_seconds"] = round(_ray_startup(), 1)
            runs = trial_configs(cfg, root / "ray")
            tasks = plan_trials(runs, max(1, cores // 2))
            logger.info("bench compare: the same trials on a local Ray instance (%d CPUs)", cores)
            backend = RayBackend(RunLog(root), storage=root / "ray", keep_going=True, num_cpus=cores)
            result["ray_seconds"] = round(_timed(backend, tasks), 1)
            result["ray_ratio"] = round(result["ray_seconds"] / walls["workers_1"], 3)
        result["host"] = host_info()
        logger.info(
            "ratio %.2f (2 workers / 1: %.0fs / %.0fs)",
            result["ratio"],
            walls["workers_2"],
            walls["workers_1"],
        )
        return result
    finally:
        if cfg.scratch is None:
            shutil.rmtree(root, ignore_errors=True)


COMMAND = Command(
    words=("bench", "compare"),
    config=BenchCompareConfig,
    run=run_bench_compare,
    help="benchmark sweeps: N independent trials on 1 vs 2 local workers, and on Ray",
)
