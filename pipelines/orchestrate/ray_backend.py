"""The Ray backend: a plan's tasks as Ray tasks, on a local Ray instance or a Ray cluster.

Every task becomes one Ray task that reserves the task's CPUs (and a GPU when its config asks for
a CUDA device), with the results of the tasks it needs as its arguments, so Ray starts it as soon
as they have finished, on whichever node has room. The whole plan is submitted at once. Ray's own
retries are off: a task that raises (a stage's error, `TrainingError` on a non-finite loss) or whose
worker dies (killed, out of memory, its node lost) is recorded in `run_log.jsonl` with its
traceback and submitted again, with what depends on it, up to `retries` times, exactly as the
local backend records and retries. The stages write their own folders, so every node must reach
them at the same path: `storage` is that shared folder (NFS or another cluster filesystem),
checked on every node before a stage starts. Ctrl-C or SIGTERM interrupt the running stages as
Ctrl-C interrupts a local one (each saves a checkpoint), kill what still runs after a grace period,
and a re-run resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from darla import locks
from darla.errors import ConfigError
from darla.pipelines.orchestrate.local import (
    Backend,
    OnChange,
    Outcome,
    RunLog,
    check_order,
    done_mtime,
    join_run,
    timed_task,
)
from darla.pipelines.orchestrate.ray_cluster import (
    check_cluster,
    check_storage,
    connect,
    gpus_for,
    import_ray,
)
from darla.pipelines.orchestrate.tasks import Task

logger = logging.getLogger(__name__)

GRACE = 60.0
"""seconds an interrupted stage has to save its checkpoint before its worker is killed"""
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class StageInterrupted(KeyboardInterrupt):
    """A stage stopped by an interrupt on its Ray worker (recorded as 'interrupted')."""


def run_on_worker(task: Task, level: str, inside: str | None, cwd: str, *upstream: Any) -> tuple[Path, float]:
    """The body of every Ray task: the stage in the run's lock, logging at the run's level, as a
    local worker runs it; `upstream` are the results of the tasks it needs (Ray's ordering only).
    Relative folders mean what they mean to the command: from its working folder."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    join_run(level, inside)
    return timed_task(task)


class RayBackend(Backend):
    """Runs a plan on Ray. `address`: '' starts a local instance of `num_cpus` CPUs (default: every
    core) and stops it after; 'auto' or 'HOST:PORT' joins a running cluster (`ray start --head`),
    left running. A process already connected to Ray (`ray.init` before) uses that connection.
    `storage`: the folder every node shares (default: the run folder)."""

    def __init__(
        self,
        log: RunLog,
        *,
        address: str = "",
        storage: Path | None = None,
        retries: int = 0,
        keep_going: bool = False,
        num_cpus: int | None = None,
        on_change: OnChange | None = None,
        grace: float = GRACE,
    ) -> None:
        super().__init__(log, retries=retries, keep_going=keep_going, on_change=on_change)
        self.address = address
        self.storage = Path(storage) if storage is not None else None
        self.num_cpus = num_cpus
        self.grace = grace
        self._ray: Any = None

    def execute(self, tasks: list[Task]) -> dict[Path, Outcome]:
        """Run every task (a failure raises unless `keep_going`); folder -> outcome."""
        check_order(tasks)
        storage = check_storage(tasks, self.storage or self.log.out)
        if not tasks:
            return {}
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"num_cpus must be >= 1 (or unset: every core), got {self.num_cpus}")
        ray = self._ray = import_ray()
        started = connect(ray, self.address, self.num_cpus)
        try:
            check_cluster(ray, tasks, storage)
            return _Execution(self, tasks).run()
        finally:
            if started:
                ray.shutdown()

    def _traceback(self, exc: BaseException) -> str:
        """A stage's own traceback as its worker printed it; for a lost worker or node, Ray's word."""
        ray = self._ray
        if isinstance(exc, StageInterrupted):
            return f"KeyboardInterrupt: {exc}"
        if ray is not None and isinstance(exc, ray.exceptions.RayTaskError):
            return _ANSI.sub("", str(exc)).strip()
        if ray is not None and isinstance(exc, ray.exceptions.RayError):
            return f"{type(exc).__name__}: {' '.join(_ANSI.sub('', str(exc)).split())}"
        return super()._traceback(exc)


class _Execution:
    """One `execute`: the plan's Ray tasks in flight and what became of each task."""

    def __init__(self, backend: RayBackend, tasks: list[Task]) -> None:
        self.backend = backend
        self.ray = backend._ray
        self.tasks = tasks
        self.planned = {t.folder: t for t in tasks}
        self.remote = self.ray.remote(run_on_worker)
        self.level = logging.getLevelName(logging.getLogger("darla").getEffectiveLevel())
        out = backend.log.out
        self.inside = str(Path(out).resolve()) if locks.holds(out) else None
        self.cwd = os.getcwd()
        self.current: dict[Path, Any] = {}  # folder -> its latest ObjectRef
        self.flying: dict[Any, Path] = {}  # ObjectRefs not yet settled -> folder
        self.before: dict[Path, int | None] = {}
        self.since: dict[Path, float] = {}  # when each task could start (its needs had finished)
        self.failures: dict[Path, int] = {}
        self.outcomes: dict[Path, Outcome] = {}
        self.dropped: list[Any] = []  # Ray tasks given up, whose errors are still to be fetched

    # ------------------------------------------------------------------ the graph
    def _needs_done(self, task: Task) -> bool:
        return all(
            n not in self.planned or (n in self.outcomes and self.outcomes[n].status in ("ran", "skipped"))
            for n in task.needs
        )

    def _downstream(self, task: Task) -> list[Task]:
        """The planned tasks that need `task`, directly or not, in plan order."""
        reached = {task.folder}
        out = []
        for t in self.tasks:
            if any(n in reached for n in t.needs):
                reached.add(t.folder)
                out.append(t)
        return out

    def _submit(self, task: Task) -> None:
        # a need that is not yet finished is passed as an argument, so Ray starts the task after it
        upstream = [self.current[n] for n in task.needs if n in self.planned and n not in self.outcomes]
        self.before[task.folder] = done_mtime(task.folder)  # before the task can start
        ref = self.remote.options(
            num_cpus=task.cpus,
            num_gpus=gpus_for(task),
            max_retries=0,  # darla retries, recording each attempt
            name=f"{task.kind} {task.label}",
        ).remote(task, self.level, self.inside, self.cwd, *upstream)
        self._drop(task)
        self.current[task.folder] = ref
        self.flying[ref] = task.folder
        if not upstream:
            self._startable(task)

    def _drop(self, task: Task) -> None:
        """Forget a task's Ray task (one that waits for a failed need, or was superseded)."""
        old = self.current.pop(task.folder, None)
        if old is not None and self.flying.pop(old, None) is not None:
            self.ray.cancel(old, force=False)
            self.dropped.append(old)

    def _forget(self, timeout: float = 0.0) -> None:
        """Fetch the errors of the Ray tasks given up (cancelled, or failed for want of a need), so
        that Ray does not log them as unhandled."""
        if not self.dropped:
            return
        done, self.dropped = self.ray.wait(self.dropped, num_returns=len(self.dropped), timeout=timeout)
        for ref in done:
            with contextlib.suppress(Exception):  # the error is known: a need failed, or we cancelled it
                self.ray.get(ref)

    def _startable(self, task: Task) -> None:
        self.since[task.folder] = time.perf_counter()
        self.backend._say_running(task, self.before[task.folder])

    # ------------------------------------------------------------------ running
    def run(self) -> dict[Path, Outcome]:
        try:
            for task in self.tasks:
                self._submit(task)
            while self.flying:
                done, _ = self.ray.wait(list(self.flying), num_returns=1, timeout=1.0)
                for ref in done:
                    self._settle(ref)
                self._forget()
                if done and self.backend.on_change is not None:
                    running = sum(
                        folder not in self.outcomes for folder in self.since
                    )  # needs done, not settled
                    self.backend.on_change(self.outcomes, running)
        except BaseException:
            self._stop()  # a failure without keep_going, Ctrl-C, SIGTERM: nothing of ours runs on
            raise
        finally:
            self._forget(timeout=10.0)
        return self.outcomes

    def _settle(self, ref: Any) -> None:
        folder = self.flying.pop(ref)
        task = self.planned[folder]
        attempt = self.failures.get(folder, 0) + 1
        try:
            path, seconds = self.ray.get(ref)
        except Exception as exc:
            if not self._needs_done(task):
                return  # it never ran: a need failed, and is retried or blocks it
            self._failed(task, exc, attempt)
            return
        self.outcomes[folder] = self.backend._settled(task, self.before[folder], path, seconds, attempt)
        for t in self._downstream(task):
            if folder in t.needs and self._needs_done(t):
                self._startable(t)

    def _failed(self, task: Task, exc: Exception, attempt: int) -> None:
        self.failures[task.folder] = attempt
        error: BaseException = self._interruption(exc) or exc
        seconds = time.perf_counter() - self.since.get(task.folder, time.perf_counter())
        outcome = self.backend._failed(task, error, seconds, attempt)
        if outcome is None:  # retried: it and what needs it are submitted again
            for t in [task, *self._downstream(task)]:
                self._submit(t)
            return
        self.outcomes[task.folder] = outcome
        if isinstance(error, KeyboardInterrupt):
            raise error
        if not self.backend.keep_going:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from exc  # the stage's own error (a ConfigError stays one)
            raise exc
        for t in self._downstream(task):
            self._drop(t)
            self.outcomes[t.folder] = Outcome(t, "blocked")
            logger.info("[%s] %s: blocked (%s failed)", t.kind, t.label, task.label)

    def _interruption(self, exc: Exception) -> StageInterrupted | None:
        """An interrupt that stopped the stage (Ray's cancel, a SIGINT on its worker), else None."""
        cause = getattr(exc, "cause", None)
        if isinstance(exc, self.ray.exceptions.TaskCancelledError) or isinstance(cause, KeyboardInterrupt):
            return StageInterrupted("the stage was interrupted on its Ray worker")
        return None

    def _stop(self) -> None:
        """Cancel every task in flight: a queued one never starts, a running one gets the
        KeyboardInterrupt Ctrl-C gives a local stage (it saves a checkpoint); what still runs
        after the grace period (or a second Ctrl-C) is killed."""
        flying, self.flying = self.flying, {}
        for ref in flying:
            self.ray.cancel(ref, force=False)
        pending = list(flying)
        deadline = time.monotonic() + self.backend.grace
        try:
            while pending and time.monotonic() < deadline:
                done, pending = self.ray.wait(pending, num_returns=len(pending), timeout=0.2)
                for ref in done:
                    self._stopped(ref, flying[ref])
        except KeyboardInterrupt:
            logger.warning("interrupted again: killing the running stages")
        for ref in pending:
            self.ray.cancel(ref, force=True)
        if pending:
            self.ray.wait(pending, num_returns=len(pending), timeout=30.0)
            self.dropped.extend(pending)
        for ref in pending:
            task = self.planned[flying[ref]]
            if self.current.get(task.folder) is ref and task.folder in self.since:
                error = StageInterrupted(f"killed: it did not stop within {self.backend.grace:g}s")
                self._record_stop(task, error)

    def _stopped(self, ref: Any, folder: Path) -> None:
        """What became of a cancelled task: finished meanwhile, interrupted, or never started."""
        task = self.planned[folder]
        if self.current.get(folder) is not ref:
            return
        attempt = self.failures.get(folder, 0) + 1
        try:
            path, seconds = self.ray.get(ref)
        except Exception as exc:
            # cancelled before it started: a bare TaskCancelledError (once started, the stage's
            # interrupt comes back as a RayTaskError); a task whose needs did not finish never started
            errors = self.ray.exceptions
            started = isinstance(exc, errors.RayTaskError) or not isinstance(exc, errors.TaskCancelledError)
            if started and self._needs_done(task):
                self._record_stop(task, self._interruption(exc) or exc)
            return
        self.outcomes[folder] = self.backend._settled(task, self.before[folder], path, seconds, attempt)

    def _record_stop(self, task: Task, error: BaseException) -> None:
        attempt = self.failures.get(task.folder, 0) + 1
        seconds = time.perf_counter() - self.since.get(task.folder, time.perf_counter())
        outcome = self.backend._failed(task, error, seconds, attempt)
        if outcome is not None:
            self.outcomes[task.folder] = outcome
