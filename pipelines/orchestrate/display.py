"""What a sweep shows while it runs: trials done / running / failed / left and the time left.

On a terminal one live line (rich) is redrawn; otherwise (a log file, CI, nohup) a plain line is
logged each time a task settles. The time left assumes the tasks still to run take what the
finished ones took per unit of their cost hint.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from darla.pipelines.orchestrate.local import Outcome
from darla.pipelines.orchestrate.tasks import Task

logger = logging.getLogger(__name__)


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


class SweepDisplay:
    """Counts of a plan's tasks by state, with an estimate of the time left."""

    def __init__(self, tasks: list[Task], live: bool | None = None) -> None:
        self.tasks = tasks
        self.cost = {t.folder: t.cost for t in tasks}
        self.started = time.perf_counter()
        self.live = sys.stderr.isatty() if live is None else live
        self._console: Any = None
        self._live: Any = None

    def line(self, outcomes: dict[Path, Outcome], running: int) -> str:
        done = sum(o.status in ("ran", "skipped") for o in outcomes.values())
        failed = sum(o.status in ("failed", "blocked") for o in outcomes.values())
        left = len(self.tasks) - len(outcomes) - running
        ran_cost = sum(self.cost[f] for f, o in outcomes.items() if o.status == "ran")
        todo_cost = sum(c for f, c in self.cost.items() if f not in outcomes)
        elapsed = time.perf_counter() - self.started
        eta = f", ~{_clock(elapsed / ran_cost * todo_cost)} left" if ran_cost > 0 and todo_cost > 0 else ""
        return (
            f"sweep: {done} done, {running} running, {failed} failed, {max(left, 0)} left "
            f"of {len(self.tasks)} ({_clock(elapsed)}{eta})"
        )

    def __call__(self, outcomes: dict[Path, Outcome], running: int) -> None:
        text = self.line(outcomes, running)
        if not self.live:
            logger.info(text)
            return
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(stderr=True)
            self._live = Live(text, console=self._console, refresh_per_second=2, transient=False)
            self._live.start()
        self._live.update(text)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
