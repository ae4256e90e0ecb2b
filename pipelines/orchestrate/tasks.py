"""A plan is a list of tasks; a task is one stage run: its kind, its config and the folders it reads.

Tasks are plain data (picklable, so a worker process or a Ray task can run them): `run_task` looks
the stage up by kind in `STAGE_KINDS` and runs it on the task's config. A kind names its functions
by module and attribute, imported when a task of that kind runs (a worker imports only the stage it
runs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from darla.registry import Registry


@dataclass(frozen=True)
class StageKind:
    """How to run a kind of task and whether one is done (a prediction for logs and displays):
    `run` and `is_done` name functions as 'module:attribute'."""

    name: str
    run_name: str
    done_name: str

    @staticmethod
    def _attr(ref: str) -> Callable[..., Any]:
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)

    def run(self, config: Any, **extra: Any) -> Path:
        return Path(self._attr(self.run_name)(config, **extra))

    def is_done(self, config: Any) -> bool:
        return bool(self._attr(self.done_name)(config))


STAGE_KINDS: Registry[StageKind] = Registry("stage kind")
for _kind, _run, _done in (
    ("see", "darla.pipelines.stages.see:run_see", "darla.pipelines.stages.see:is_see_done"),
    ("probe", "darla.pipelines.analysis.probe:run_stage", "darla.pipelines.analysis.probe:is_probe_done"),
    ("act", "darla.pipelines.stages.act:run_act", "darla.pipelines.stages.act_inputs:is_act_done"),
    ("oracle", "darla.pipelines.stages.act:run_act", "darla.pipelines.stages.act_inputs:is_act_done"),
    (
        "transfer",
        "darla.pipelines.stages.transfer:run_transfer",
        "darla.pipelines.stages.transfer:is_transfer_done",
    ),
    (
        "metrics",
        "darla.pipelines.analysis.evaluate:run_metrics_stage",
        "darla.pipelines.analysis.evaluate:is_metrics_done",
    ),
):
    STAGE_KINDS.register(_kind, StageKind(_kind, _run, _done))


@dataclass(frozen=True)
class Task:
    """One stage of a plan."""

    stage: StageKind
    """how to run it (a worker imports the stage's module by name)"""
    label: str
    """what the logs call it, e.g. 'beta_vae_dae/frozen/ppo/s0'"""
    folder: Path
    """the stage folder it writes: its identity in the plan"""
    config: Any
    """the stage's config dataclass"""
    needs: tuple[Path, ...] = ()
    """folders of the tasks it reads (they run first)"""
    cost: float = 1.0
    """relative duration, a scheduling hint (long tasks start first)"""
    cpus: float = 1.0
    """CPU cores it keeps busy (what a cluster backend reserves)"""

    @property
    def kind(self) -> str:
        """see, probe, metrics, act, oracle (an act on the target domains) or transfer"""
        return self.stage.name

    def is_done(self) -> bool:
        return self.stage.is_done(self.config)


def task(kind: str, label: str, folder: Path, config: Any, **extra: Any) -> Task:
    """A task of one of darla's stage kinds (`STAGE_KINDS`)."""
    return Task(STAGE_KINDS.get(kind), label, folder, config, **extra)


def run_task(task: Task, pool: Any = None) -> Path:
    """Run a task's stage (skipped inside the stage when it is done); `pool` shares evaluation envs
    between the transfers of one process."""
    if task.kind == "transfer" and pool is not None:
        return task.stage.run(task.config, pool=pool)
    return task.stage.run(task.config)
