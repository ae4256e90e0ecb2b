"""`darla compare`: a backbone sweep (vision models x modes x baselines x algorithms x seeds, over one
or more envs) on local worker processes or a Ray cluster, then the report.

    darla compare --env SeekAvoid --models beta_vae_dae beta_vae vae ae dae --modes frozen finetune \\
        --baselines pixels --algos ppo --seeds 0 1 2 3 4 --preset quick --out runs/cmp

One plan (the planner of `darla run`, per env): every trained thing is trained once and shared by
all that read it, finished stages are skipped on a re-run, a changed setting re-runs what depends on
it. A failing task is retried (`--retries`), recorded with its traceback when it keeps failing,
and the others go on; what needs it is left out. The command exits non-zero naming what failed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from darla import locks
from darla.agents.modes import MODES
from darla.artifacts import atomic_write_text
from darla.cli import Command
from darla.config import STAGE_SECTIONS, dump_yaml, from_dict, merge, to_dict
from darla.envs import get_family
from darla.errors import ConfigError, DarlaError
from darla.pipelines.analysis.probe import can_probe
from darla.pipelines.analysis.report import ReportConfig, read_headline, render_table, write_report
from darla.pipelines.orchestrate.display import SweepDisplay
from darla.pipelines.orchestrate.local import LocalBackend, Outcome, RunLog
from darla.pipelines.orchestrate.plan import check_readout_layers, plan_run
from darla.pipelines.orchestrate.ray_backend import RayBackend
from darla.pipelines.orchestrate.run import RUN_CONFIG, RunConfig
from darla.pipelines.orchestrate.tasks import Task
from darla.registry import check_choice
from darla.runtime import free_cores, num_cores

logger = logging.getLogger(__name__)

BACKENDS = ("local", "ray")


class SweepFailed(DarlaError):
    """Some tasks of a sweep failed after their retries (the others finished)."""


@dataclass
class CompareConfig(RunConfig):
    """Sweep vision backbones for RL on equal terms: see -> act -> transfer for every model x mode x
    algorithm x seed (and the baselines), over one or more envs, on local workers or Ray."""

    env: tuple[str, ...] = ("SeekAvoid",)
    """env families (several make one sweep: each gets <out>/<env>/; `shift` applies to all)"""
    models: tuple[str, ...] = ("beta_vae_dae", "beta_vae", "vae", "ae", "dae")
    """vision backbones (zoo models, plug-ins included), each trained once per env"""
    modes: tuple[str, ...] = ("frozen",)
    """how policies read each backbone: frozen (DARLA), finetune (DARLA_FT)"""
    baselines: tuple[str, ...] = ("pixels",)
    """modes without a vision model, run once per algo and seed (pixels: the end-to-end CNN)"""
    disentanglement: bool = True
    """score every backbone's disentanglement on the env family's ground truth, for the report's
    disentanglement-vs-transfer figure"""
    backend: Literal["local", "ray"] = "local"
    """where tasks run: local worker processes, or a Ray cluster (pip install -e '.[ray]')"""
    address: str = ""
    """ray: 'auto' (a running cluster), HOST:PORT, or empty to start a Ray instance on this machine"""
    storage: Path | None = None
    """ray: a folder every node reads and writes (a shared filesystem); default: --out"""
    retries: int = 1
    """times a failing task is tried again before it is recorded as failed"""
    env_settings: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """per-env see/act/transfer settings over the shared ones, e.g. {CarRacing: {act: {n_envs: 8}}}
    (a preset's `envs:` section fills it when a sweep has several envs; your flags still win)"""

    hash_exclude: ClassVar[tuple[str, ...]] = ("out", "jobs", "backend", "address", "storage", "retries")

    def validate(self) -> None:
        if not self.env:
            raise ConfigError("compare needs at least one --env")
        if len(set(self.env)) != len(self.env):
            raise ConfigError(f"compare envs must not repeat, got {list(self.env)}")
        check_choice("backend", self.backend, BACKENDS)
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")
        for mode in self.baselines:
            if MODES.get(mode).needs_vision:
                raise ConfigError(f"baseline {mode!r} needs a vision model: put it in --modes")
        for env in self.env_settings:
            if env not in self.env and env.split("@")[0] not in self.env:
                raise ConfigError(
                    f"env_settings names env {env!r}, which is not swept; envs: {list(self.env)}"
                )
        for env, settings in self.env_settings.items():
            unknown = sorted(set(settings) - set(STAGE_SECTIONS))
            if unknown:
                raise ConfigError(
                    f"env_settings[{env!r}] has {unknown}; per-env settings are {list(STAGE_SECTIONS)}"
                )
        for run in self.runs():
            run.validate()

    def runs(self) -> list[RunConfig]:
        """One `darla run` per env: <out> itself for one env, <out>/<env> for several."""
        fields = {f.name for f in dataclasses.fields(RunConfig)}
        shared = {k: v for k, v in dataclasses.asdict(self).items() if k in fields}
        shared.update(see=self.see, act=self.act, transfer=self.transfer)
        modes = (*self.modes, *(b for b in self.baselines if b not in self.modes))
        out = Path(self.out)
        return [
            RunConfig(
                **{
                    **shared,
                    **self._stage_settings(env),
                    "env": env,
                    "modes": modes,
                    "out": out if len(self.env) == 1 else out / _slug(env),
                }
            )
            for env in self.env
        ]

    def _stage_settings(self, env: str) -> dict[str, Any]:
        """The see/act/transfer settings of `env`: the shared ones under its `env_settings`."""
        own = self.env_settings.get(env) or self.env_settings.get(env.split("@")[0]) or {}
        return {
            section: from_dict(
                type(getattr(self, section)), merge(to_dict(getattr(self, section)), own[section])
            )
            for section in STAGE_SECTIONS
            if section in own
        }


def _slug(env: str) -> str:
    return env.replace("/", "_").replace("@", "-")


def backend_for(cfg: CompareConfig, log: RunLog, display: SweepDisplay) -> Any:
    """The backend that runs the sweep's tasks (local worker processes sized to the free cores)."""
    if cfg.backend == "ray":  # Ray itself is imported when the backend connects (a clear error without it)
        return RayBackend(
            log,
            address=cfg.address,
            storage=Path(cfg.storage) if cfg.storage is not None else Path(cfg.out),
            retries=cfg.retries,
            keep_going=True,
            on_change=display,
        )
    workers = cfg.jobs or free_cores()
    return LocalBackend(log, workers, retries=cfg.retries, keep_going=True, on_change=display)


def plan_compare(cfg: CompareConfig, threads: int) -> tuple[list[RunConfig], list[Task]]:
    runs = cfg.runs()
    tasks: list[Task] = []
    for run in runs:
        check_readout_layers(run)
        family = get_family(run.family)
        tasks += plan_run(
            run, threads=threads, probe_factors=family.probe_factors if can_probe(family) else ()
        )
    return runs, tasks


def run_compare(cfg: CompareConfig) -> tuple[Path, dict[Path, Outcome], list[RunConfig]]:
    """Run (or resume) the sweep and write each env's report; returns the outcomes."""
    out = Path(cfg.out)
    locks.hold(out)
    atomic_write_text(out / "compare.yaml", dump_yaml(cfg))
    jobs = cfg.jobs or (free_cores() if cfg.backend == "local" else num_cores())
    share = max(1, num_cores() // jobs) if jobs > 1 else 0  # torch threads per worker: no oversubscription
    runs, tasks = plan_compare(cfg, share)
    for run in runs:
        Path(run.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(run.out) / RUN_CONFIG, dump_yaml(run))
    logger.info("compare: %d tasks over %d env(s), backend %s", len(tasks), len(runs), cfg.backend)
    log = RunLog(out)
    display = SweepDisplay(tasks)
    started = time.perf_counter()
    try:
        outcomes = backend_for(cfg, log, display).execute(tasks)
    finally:
        display.close()
    if cfg.report:
        for run in runs:
            folders = [t.folder for t in tasks if t.kind == "transfer" and Path(run.out) in t.folder.parents]
            finished = [f for f in folders if outcomes.get(f) and outcomes[f].status in ("ran", "skipped")]
            if finished:
                write_report(ReportConfig(run=Path(run.out)), finished)
    logger.info("compare %s: %s in %.0fs", out, display.line(outcomes, 0), time.perf_counter() - started)
    return out, outcomes, runs


def _command(cfg: CompareConfig) -> dict[str, Any]:
    out, outcomes, runs = run_compare(cfg)
    failed = {
        o.task.label: o.error.splitlines()[-1] if o.error else o.status
        for o in outcomes.values()
        if o.status == "failed"
    }
    blocked = sorted(o.task.label for o in outcomes.values() if o.status == "blocked")
    result: dict[str, Any] = {
        "out": str(out),
        "tasks": len(outcomes),
        "ran": sum(o.status == "ran" for o in outcomes.values()),
        "skipped": sum(o.status == "skipped" for o in outcomes.values()),
        "failed": failed,
        "blocked": blocked,
        "reports": {
            r.family: str(Path(r.out) / "report" / "report.md")
            for r in runs
            if (Path(r.out) / "report").is_dir()
        },
    }
    if cfg.report:
        result["tables"] = {
            r.family: read_headline(Path(r.out) / "report")
            for r in runs
            if (Path(r.out) / "report" / "summary.json").is_file()
        }
    if failed or blocked:
        lines = [f"{label}: {why}" for label, why in failed.items()]
        raise SweepFailed(
            f"{len(failed)} task(s) failed after {cfg.retries + 1} attempt(s) and {len(blocked)} were left out "
            f"(they need a failed one); the rest finished, reports written. "
            f"Failed: {'; '.join(lines)}. Tracebacks: {out / 'run_log.jsonl'}; re-run to retry them."
        )
    return result


def render(result: dict[str, Any]) -> str:
    lines = [f"sweep folder: {result['out']} ({result['ran']} ran, {result['skipped']} skipped)"]
    for env, rows in result.get("tables", {}).items():
        lines += ["", f"{env}:", render_table(rows), f"report: {result['reports'].get(env)}"]
    return "\n".join(lines)


COMMAND = Command(
    words=("compare",),
    config=CompareConfig,
    run=_command,
    help="backbone sweeps on local workers or Ray, with the paper-style report",
    render=render,
)
