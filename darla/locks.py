"""Folder locks: one darla command writes a folder at a time.

`darla run` holds its run folder exclusively; a lone stage (`darla see`, `act`, `transfer`, ...)
holds its run folder shared and its own stage folder exclusively. So two runs on one `--out`, a run
and a lone stage writing into it, or two lone stages of one folder never write at once (the second
would resume the first's half-written checkpoint): the second refuses at once, naming the holder,
or waits for it (`--wait`), while lone stages of different folders of one experiment run side by
side.

The locks are OS file locks (`fcntl.flock` on `<folder>/.darla.lock`): the kernel drops them when
their process ends, however it ends (Ctrl-C, `kill -9`, a crash), so a stopped command never
leaves a folder locked and there is nothing to clean up. The file names its last holder (PID,
host, command) for the message of whoever finds it taken.

Locks taken inside a `session()` are released when the session ends (the CLI opens one per
command, `darla run` one per stage); outside any session they last until `release` (a StageDir
releases its own when it is done) or the end of the process. A
worker process of `darla run` is told that its parent holds the run folder (`inherit`), so that its
stages do not wait for their own run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from darla.errors import DarlaError

logger = logging.getLogger(__name__)

LOCK_FILE = ".darla.lock"


class FolderInUseError(DarlaError):
    """Another process holds a folder this one would write."""


@dataclass
class _Held:
    fd: int
    shared: bool


@dataclass
class _Session:
    wait: bool
    taken: list[Path] = field(default_factory=list)


_held: dict[Path, _Held] = {}
_inherited: set[Path] = set()
_sessions: list[_Session] = []


def _key(folder: str | os.PathLike[str]) -> Path:
    """One name per folder, however it was spelled (relative, `..`, symlinks)."""
    return Path(folder).resolve()


def hold(folder: str | os.PathLike[str], *, shared: bool = False) -> None:
    """Lock `folder` (created if missing) for this process: exclusively to write it, `shared` to
    write below it beside others that hold it shared. Taking a lock this process holds is a no-op;
    a lock held elsewhere raises FolderInUseError naming its holder, or is waited for inside a
    `session(wait=True)`."""
    path = _key(folder)
    if path in _inherited:
        return
    held = _held.get(path)
    if held is not None:
        if held.shared and not shared:  # upgrade (flock may drop the shared lock meanwhile)
            try:
                _lock(held.fd, Path(folder), shared=False)
            except BaseException:
                _held.pop(path, None)
                os.close(held.fd)
                raise
            held.shared = False
            _describe_self(held.fd, shared=False)
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _lock(fd, Path(folder), shared)
    except BaseException:
        os.close(fd)
        raise
    _held[path] = _Held(fd, shared)
    _describe_self(fd, shared)
    if _sessions:
        _sessions[-1].taken.append(path)


def hold_stage(folder: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Lock a stage folder for writing, and the run folder `root` it lies in shared (first, so
    that a `darla run` on `root` and a lone stage inside it exclude each other). Returns the
    folders newly locked (for `release` by a caller outside any session)."""
    taken = []
    if root is not None and _key(root) in _key(folder).parents:
        fresh = _key(root) not in _held and _key(root) not in _inherited
        hold(root, shared=True)
        taken = [Path(root)] if fresh else []
    fresh = _key(folder) not in _held and _key(folder) not in _inherited
    try:
        hold(folder)
    except BaseException:
        for path in taken:
            release(path)
        raise
    return [*taken, Path(folder)] if fresh else taken


def in_session() -> bool:
    return bool(_sessions)


def holds(folder: str | os.PathLike[str]) -> bool:
    """Whether this process holds `folder` exclusively."""
    held = _held.get(_key(folder))
    return held is not None and not held.shared


def inherit(folders: Iterable[str | os.PathLike[str]]) -> None:
    """For worker processes: the parent holds these folders for us; taking them is a no-op."""
    _inherited.update(_key(f) for f in folders)


def release(folder: str | os.PathLike[str]) -> None:
    held = _held.pop(_key(folder), None)
    if held is not None:
        fcntl.flock(held.fd, fcntl.LOCK_UN)  # also for copies of the descriptor in forked children
        os.close(held.fd)


@contextlib.contextmanager
def session(*, wait: bool | None = None) -> Iterator[None]:
    """Locks taken inside are released on exit. `wait`: wait for a taken lock instead of refusing
    (default: as the enclosing session, else refuse)."""
    outer = _sessions[-1].wait if _sessions else False
    current = _Session(outer if wait is None else wait)
    _sessions.append(current)
    try:
        yield
    finally:
        _sessions.remove(current)
        for path in reversed(current.taken):
            release(path)


def _lock(fd: int, folder: Path, shared: bool) -> None:
    op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    holder = describe_holder(folder)
    if not (_sessions and _sessions[-1].wait):
        raise FolderInUseError(
            f"{folder} is in use by {holder}. Wait for it to end (or stop it), or add --wait to "
            "start as soon as it has"
        )
    logger.warning("waiting for %s to release %s", holder, folder)
    start = time.monotonic()
    fcntl.flock(fd, op)  # blocks; Ctrl-C still interrupts it
    logger.info("%s is free after %.0fs of waiting", folder, time.monotonic() - start)


def _command(argv: list[str]) -> str:
    """A command line as people typed it: `darla run ...`, not `/venv/bin/python -m darla run ...`."""
    if len(argv) > 2 and argv[1:3] == ["-m", "darla"]:
        argv = ["darla", *argv[3:]]
    elif len(argv) > 1 and Path(argv[0]).name.startswith("python") and Path(argv[1]).name == "darla":
        argv = ["darla", *argv[2:]]
    elif argv and Path(argv[0]).name in ("darla", "__main__.py"):
        argv = ["darla", *argv[1:]]
    return shlex.join(argv)


def _describe_self(fd: int, shared: bool) -> None:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(list(sys.argv)),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "shared": shared,
    }
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def describe_holder(folder: str | os.PathLike[str]) -> str:
    """Who holds `folder`: '`darla run ...` (pid N on host H, since T)'. The lock file names its last
    holder; where the kernel lists the live ones (Linux: /proc/locks), a stale name is replaced by
    a live holder's command line."""
    lock_file = Path(folder) / LOCK_FILE
    try:
        record = json.loads(lock_file.read_text())
        named = (
            f"`{record['command']}` (pid {record['pid']} on host {record['host']}, since {record['since']})"
        )
        pid = int(record["pid"])
        here = record["host"] == socket.gethostname()
    except (OSError, ValueError, KeyError, TypeError):
        named, pid, here = "another darla command (its lock file does not say which)", -1, False
    live = _live_holders(lock_file)
    if live is None or (pid in live and here) or not live:
        return named
    others = f" and {len(live) - 1} more" if len(live) > 1 else ""
    return f"`{_command_line(live[0])}` (pid {live[0]} on host {socket.gethostname()}{others})"


def _live_holders(lock_file: Path) -> list[int] | None:
    """PIDs of the other processes holding a flock on `lock_file` (None: the kernel does not say)."""
    try:
        st = os.stat(lock_file)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:  # waiters have "->"
            pid = int(fields[4])
            if pid != os.getpid() and pid not in pids:
                pids.append(pid)
    return pids


def _command_line(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    except OSError:
        return "a process that has ended"
    return _command(argv)
