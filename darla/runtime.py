"""Device and thread setup shared by every stage (torch is imported lazily)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

logger = logging.getLogger(__name__)


def num_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; anything else is checked by torch."""
    import torch

    from darla.errors import ConfigError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}. Valid: auto, cpu, cuda, cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return device


def setup_torch(threads: int = 0) -> None:
    """Use every core for intra-op parallelism (threads=0 means all cores)."""
    import torch

    n = threads if threads > 0 else num_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt. Unlike Ctrl-C in a terminal, it reached this process only,
    not its workers: whoever owns workers has to pass it on."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM (`kill`, a scheduler's time limit) stops a command as Ctrl-C does, so stages
    stop their workers and a re-run resumes, instead of the process vanishing and leaving workers
    behind. The previous handler comes back on exit; off the main thread this does nothing (only
    the main thread may own a signal handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopRequest:
    """Set by a deferred SIGINT/SIGTERM: the work should stop at its next safe point."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def interrupt(self) -> KeyboardInterrupt:
        """The exception to stop with: Terminated for SIGTERM (its owner passes it on), else Ctrl-C's."""
        return Terminated(f"signal {self.signum}") if self.signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[StopRequest]:
    """Inside, the first SIGINT or SIGTERM only sets the yielded request, so the work can stop at a
    point where its checkpoint is exact (act: the next rollout boundary, seconds away); a second
    signal interrupts at once. Leaving the block with a request pending raises it, so a command that
    was asked to stop does stop. Off the main thread this defers nothing."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            raise stop.interrupt()
        stop.signum = signum
        logger.warning("stopping at the next checkpoint (signal %d again to stop at once)", signum)

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop.requested:
        raise stop.interrupt()


def exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """For worker processes: end this process once `parent_pid` is gone, even when the parent was
    SIGKILLed and could not stop it, so that no orphan goes on writing into a run folder its command
    has left (stages write atomically and resume from checkpoints, so an abrupt end is safe)."""

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(143)
            except PermissionError:  # pragma: no cover - pid reused by another user's process
                os._exit(143)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
