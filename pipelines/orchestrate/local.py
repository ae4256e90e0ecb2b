"""The local backend: a plan's tasks in this process or in worker processes on this machine.

A task starts as soon as the tasks it needs are finished, so no core waits at a barrier (pixel
policies train while the vision models do). Each outcome (ran, skipped, failed, interrupted) is
appended to `<out>/run_log.jsonl`. A task that fails is retried up to `retries` times; with
`keep_going` the others go on (what needs the failed one is left out) and the outcomes say what
failed, else the first failure stops the plan as its error. Ctrl-C or SIGTERM interrupt the running
stages (each checkpoints and stops), and no worker outlives the command.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darla import locks
from darla.artifacts import DONE
from darla.errors import ConfigError
from darla.log import setup_logging
from darla.pipelines.orchestrate.tasks import Task, run_task
from darla.runtime import Terminated, exit_with_parent

logger = logging.getLogger(__name__)

RUN_LOG = "run_log.jsonl"


@dataclass
class Outcome:
    """What became of one task."""

    task: Task
    status: str
    """ran, skipped, failed (after its retries), blocked (a task it needs failed), interrupted"""
    seconds: float = 0.0
    attempts: int = 0
    error: str = ""
    """the last failure's traceback"""


@dataclass
class RunLog:
    """`run_log.jsonl`: one line per stage outcome, oldest first."""

    out: Path
    counts: dict[str, int] = field(default_factory=lambda: {"ran": 0, "skipped": 0, "failed": 0})

    def record(self, entry: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / RUN_LOG, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


def read_run_log(out: Path) -> list[dict[str, Any]]:
    """Every stage outcome logged in a run folder, oldest first."""
    path = Path(out) / RUN_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def done_mtime(folder: Path) -> int | None:
    marker = folder / DONE
    return marker.stat().st_mtime_ns if marker.is_file() else None


def check_order(tasks: list[Task]) -> None:
    """Every task comes after the planned tasks it needs (a planner bug otherwise)."""
    names = {t.folder for t in tasks}
    earlier: set[Path] = set()
    for task in tasks:
        missing = [n for n in task.needs if n in names and n not in earlier]
        if missing:
            raise ConfigError(f"stage {task.label} needs {missing[0]}, which is planned after it")
        earlier.add(task.folder)


def timed_task(task: Task, pool: Any = None) -> tuple[Path, float]:
    """Run a task with its stage folder locked for its duration; (result folder, seconds)."""
    start = time.perf_counter()
    with locks.session():  # the stage's folder is locked while it runs, free for the next after
        path = run_task(task, pool)
    return path, time.perf_counter() - start


def _stop_workers(running: list[Future[Any]], tell: bool, grace: float = 60.0) -> None:
    """Interrupt the running stages as Ctrl-C does (each saves a checkpoint and stops), give them
    `grace` seconds for it, then terminate every worker. `tell`: the workers have not had the
    interrupt yet (SIGTERM reaches this process only; Ctrl-C in a terminal reaches all of them)."""
    workers = multiprocessing.active_children()
    if tell:
        for proc in workers:
            if proc.pid is not None:
                os.kill(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while any(not f.done() for f in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in workers:
        proc.terminate()


def join_run(level: str, inside: str | None) -> None:
    """For a process that runs stages for a run (a local worker, a Ray task): log at the run's
    `level`; `inside`: the run folder its command holds, so that our stages write inside its lock."""
    setup_logging(level)
    if inside is not None:
        locks.inherit([inside])


def _worker_init(level: str, parent_pid: int, inside: str | None = None) -> None:
    # _stop_workers interrupts a worker with SIGINT, so it must take it even when the command
    # inherited SIGINT ignored (a script's `darla run ... &`): else no stage saves its checkpoint
    signal.signal(signal.SIGINT, signal.default_int_handler)
    exit_with_parent(parent_pid)
    join_run(level, inside)


OnChange = Callable[[dict[Path, Outcome], int], None]
"""Called as outcomes settle: (outcomes so far, tasks running now), e.g. a SweepDisplay."""


class Backend:
    """What every backend shares: the outcome of each task, its run_log.jsonl entries and logs,
    retries, and which tasks a failure blocks. A backend adds `execute(tasks)`."""

    def __init__(
        self, log: RunLog, *, retries: int = 0, keep_going: bool = False, on_change: OnChange | None = None
    ) -> None:
        self.log = log
        self.retries = retries
        self.keep_going = keep_going
        self.on_change = on_change

    # ------------------------------------------------------------------ logging
    def _announce(self, task: Task) -> int | None:
        before = done_mtime(task.folder)
        self._say_running(task, before)
        return before

    def _say_running(self, task: Task, before: int | None) -> None:
        try:
            expect_skip = before is not None and task.is_done()
        except Exception:  # a prediction only decides the log line; the stage itself decides
            expect_skip = False
        if not expect_skip:
            logger.info("[%s] %s: running", task.kind, task.label)

    def _traceback(self, exc: BaseException) -> str:
        """The text recorded for a failure (a backend whose tasks fail elsewhere gives theirs)."""
        return "".join(traceback.format_exception(exc)).strip()

    def _settled(self, task: Task, before: int | None, path: Path, seconds: float, attempts: int) -> Outcome:
        skipped = before is not None and done_mtime(path) == before
        status = "skipped" if skipped else "ran"
        self.log.counts[status] += 1
        if skipped:
            logger.info("[%s] %s: skipped (done, config unchanged)", task.kind, task.label)
        else:
            logger.info("[%s] %s: done in %.1fs", task.kind, task.label, seconds)
        entry = {"stage": task.kind, "name": task.label, "path": str(path), "status": status}
        self.log.record({**entry, "seconds": round(seconds, 3), "time": time.time()})
        return Outcome(task, status, seconds, attempts)

    def _failed(self, task: Task, exc: BaseException, seconds: float, attempts: int) -> Outcome | None:
        """Record a failure; None when it will be retried."""
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        logger.info("[%s] %s: %s after %.1fs", task.kind, task.label, status, seconds)
        error = self._traceback(exc)
        entry = {"stage": task.kind, "name": task.label, "path": str(task.folder), "status": status}
        last = error.splitlines()[-1:]
        summary = last[0] if last else repr(exc)
        self.log.record(
            {**entry, "seconds": round(seconds, 3), "attempt": attempts, "error": last, "traceback": error}
        )
        if status == "interrupted" or not self.keep_going:
            return Outcome(task, status, seconds, attempts, error)
        if attempts <= self.retries:
            logger.warning(
                "[%s] %s failed (attempt %d), retrying: %s", task.kind, task.label, attempts, summary
            )
            return None
        self.log.counts["failed"] += 1
        logger.error("[%s] %s failed after %d attempt(s): %s", task.kind, task.label, attempts, summary)
        return Outcome(task, "failed", seconds, attempts, error)

    def _blocked(self, task: Task, outcomes: dict[Path, Outcome]) -> bool:
        return any(n in outcomes and outcomes[n].status in ("failed", "blocked") for n in task.needs)


class LocalBackend(Backend):
    """Runs a plan here: in this process with `workers` <= 1 (in plan order), else in worker processes."""

    def __init__(
        self,
        log: RunLog,
        workers: int = 1,
        *,
        retries: int = 0,
        keep_going: bool = False,
        pool: Any = None,
        on_change: OnChange | None = None,
    ) -> None:
        super().__init__(log, retries=retries, keep_going=keep_going, on_change=on_change)
        self.workers = workers
        self.pool = pool

    def execute(self, tasks: list[Task]) -> dict[Path, Outcome]:
        """Run every task (a failure raises unless `keep_going`); folder -> outcome."""
        check_order(tasks)
        if self.workers <= 1 or len(tasks) <= 1:
            return self._serial(tasks)
        return self._parallel(tasks)

    def _serial(self, tasks: list[Task]) -> dict[Path, Outcome]:
        outcomes: dict[Path, Outcome] = {}
        for task in tasks:
            if self._blocked(task, outcomes):
                outcomes[task.folder] = Outcome(task, "blocked")
                continue
            attempts = 0
            while True:
                attempts += 1
                before = self._announce(task)
                start = time.perf_counter()
                try:
                    path, seconds = timed_task(task, self.pool)
                except BaseException as exc:
                    outcome = self._failed(task, exc, time.perf_counter() - start, attempts)
                    if outcome is None:
                        continue
                    if outcome.status == "interrupted" or not self.keep_going:
                        raise
                    outcomes[task.folder] = outcome
                    break
                outcomes[task.folder] = self._settled(task, before, path, seconds, attempts)
                break
            if self.on_change is not None:
                self.on_change(outcomes, 0)
        return outcomes

    def _parallel(self, tasks: list[Task]) -> dict[Path, Outcome]:
        names = {t.folder for t in tasks}
        outcomes: dict[Path, Outcome] = {}
        attempts: dict[Path, int] = {}
        pending = list(tasks)
        running: dict[Future[tuple[Path, float]], tuple[Task, int | None, float]] = {}
        level = logging.getLevelName(logging.getLogger("darla").getEffectiveLevel())
        inside = str(self.log.out) if locks.holds(self.log.out) else None
        pool = self._pool(len(tasks), level, inside)
        changed = False  # tell on_change once the freed workers have their next stages
        try:
            while pending or running:
                for task in list(pending):
                    if self._blocked(task, outcomes):
                        pending.remove(task)
                        outcomes[task.folder] = Outcome(task, "blocked")
                        continue
                    ready = all(n in outcomes or n not in names for n in task.needs)
                    if not ready or len(running) >= self.workers:
                        continue
                    pending.remove(task)
                    attempts[task.folder] = attempts.get(task.folder, 0) + 1
                    before = self._announce(task)
                    running[pool.submit(timed_task, task)] = (task, before, time.perf_counter())
                if changed and self.on_change is not None:
                    self.on_change(outcomes, len(running))
                changed = False
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    task, before, start = running.pop(future)
                    n = attempts[task.folder]
                    try:
                        path, seconds = future.result()
                    except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                        pool = self._recover(pool, running, pending, len(tasks), level, inside)
                        outcome = self._failed(task, exc, time.perf_counter() - start, n)
                        if outcome is None:
                            pending.insert(0, task)
                            continue
                        if not self.keep_going:
                            raise
                        outcomes[task.folder] = outcome
                        continue
                    except BaseException as exc:
                        outcome = self._failed(task, exc, time.perf_counter() - start, n)
                        if outcome is None:
                            pending.insert(0, task)
                            continue
                        if outcome.status == "interrupted" or not self.keep_going:
                            raise
                        outcomes[task.folder] = outcome
                        continue
                    outcomes[task.folder] = self._settled(task, before, path, seconds, n)
                changed = True
            if changed and self.on_change is not None:
                self.on_change(outcomes, 0)
        except (KeyboardInterrupt, SystemExit) as exc:
            # stop now, not when the running stages end (possibly an hour): each resumes from its
            # checkpoint on the next run, and no worker may write into the run after we return
            _stop_workers(list(running), tell=isinstance(exc, (Terminated, SystemExit)))
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # running stages finish, nothing new starts
            raise
        pool.shutdown()
        return outcomes

    def _pool(self, n_tasks: int, level: str, inside: str | None) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            min(self.workers, n_tasks),
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_worker_init,
            initargs=(str(level), os.getpid(), inside),
        )

    def _recover(
        self,
        pool: ProcessPoolExecutor,
        running: dict[Future[tuple[Path, float]], tuple[Task, int | None, float]],
        pending: list[Task],
        n_tasks: int,
        level: str,
        inside: str | None,
    ) -> ProcessPoolExecutor:
        """A dead worker breaks the whole pool: requeue what was running on it, start a new one."""
        for future, (task, _, _) in list(running.items()):
            running.pop(future)
            pending.insert(0, task)
        pool.shutdown(wait=False, cancel_futures=True)
        return self._pool(n_tasks, level, inside)
