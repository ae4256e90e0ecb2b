"""Device and thread setup shared by every stage (torch is imported lazily)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)


def num_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def free_cores() -> int:
    """Cores not busy with other work right now (this machine's cores minus its 1-minute load), at
    least one: how many worker processes a sweep starts without oversubscribing the machine."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Unix
        load = 0.0
    return max(1, min(num_cores(), round(num_cores() - load)))


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


@contextlib.contextmanager
def sigint_as_interrupt() -> Iterator[None]:
    """Inside, SIGINT raises KeyboardInterrupt even when the process started with it ignored (a
    shell starts a script's background job `darla run ... &` so): `kill -INT` and a terminal's
    Ctrl-C must stop a command the way they stop it in the foreground. Off the main thread this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class HeldInterrupt:
    """A SIGINT or SIGTERM received inside `held_interrupts()`, not yet raised."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.handlers: dict[int, Callable[[int, FrameType | None], Any]] = {}

    @property
    def pending(self) -> bool:
        return self.signum is not None

    def deliver(self) -> None:
        """Raise the held signal as its own handler does (KeyboardInterrupt, `Terminated`)."""
        if self.signum is not None:
            signum, self.signum = self.signum, None
            self.handlers[signum](signum, None)


@contextlib.contextmanager
def held_interrupts() -> Iterator[HeldInterrupt]:
    """Inside, SIGINT and SIGTERM wait for the loop's next `deliver()`, so that a training loop
    stops between two steps, in a state it can checkpoint and resume bit for bit, instead of in
    the middle of an optimiser update. A second signal raises at once (a stuck step still stops);
    one still held on a normal exit is raised then. Signals whose handler is not Python's (ignored,
    or the OS default) and code off the main thread are left as they are."""
    held = HeldInterrupt()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum: int, frame: FrameType | None) -> None:
        if held.pending:
            held.handlers[signum](signum, frame)
            return
        held.signum = signum
        logger.warning(
            "%s received: stopping after this step (send it again to stop at once)",
            signal.Signals(signum).name,
        )

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if callable(previous):
            held.handlers[sig] = previous
            signal.signal(sig, hold)
    try:
        yield held
    finally:
        for number, handler in held.handlers.items():
            signal.signal(number, handler)
    held.deliver()


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
