"""Run folders: atomic writes, completion markers and config hashes.

A stage folder is *done* when `DONE.json` exists and records the hash of the config that made
it. The marker is written last and atomically, so a killed stage is never mistaken for a
finished one; a changed config makes the folder stale and the stage runs again. One process at a
time writes a stage folder (`StageDir.lock`, darla.locks).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from darla import locks
from darla.config import config_hash, dump_yaml, hash_dict, to_dict
from darla.errors import ArtifactError, ConfigError

logger = logging.getLogger(__name__)

C = TypeVar("C")

DONE = "DONE.json"
CONFIG = "config.yaml"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(to_dict(data), indent=2, sort_keys=False, default=str) + "\n")


def atomic_save(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Let `writer` fill a temporary file, then move it into place."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_save_figure(fig: Any, path: str | Path, dpi: int = 110) -> None:
    """Write a matplotlib figure as PNG atomically, then close it (pyplot keeps figures alive)."""
    import matplotlib.pyplot as plt

    try:
        atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"corrupt JSON in {path}: {exc}") from None


def stage_hash(config: Any, inputs: dict[str, Any] | None = None) -> str:
    """The identity of a stage: its config's result-deciding fields plus what it resolved from
    upstream stages (`inputs`: e.g. the content hash of the vision model a policy reads)."""
    if not inputs:
        return config_hash(config)
    return config_hash({**hash_dict(config), **to_dict(inputs)})


class StageDir:
    """One stage's folder: its config, its completion marker, and helpers to write into it.

    `inputs`: values the stage resolved from its upstream artifacts that decide its results (hashes
    of what it reads); they join the config in `config.yaml` and in the stage's hash, but are no
    config fields (no flags). `notes`: resolved values recorded in `config.yaml` that do not decide
    results (e.g. the path a hashed checkpoint was read from).
    `root`: the run folder the stage writes into, locked shared beside the stage folder (default:
    the config's `out`, when the folder lies inside it)."""

    def __init__(
        self,
        path: str | Path,
        config: Any,
        root: str | Path | None = None,
        *,
        inputs: dict[str, Any] | None = None,
        notes: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config
        self.inputs = dict(inputs or {})
        self.notes = dict(notes or {})
        self.hash = stage_hash(config, self.inputs)
        out = getattr(config, "out", None) if root is None else root
        self.root = Path(out) if isinstance(out, (str, Path)) else None
        self._locked: list[Path] = []

    def lock(self) -> None:
        """Become the one process writing this folder (see darla.locks): another holder is a clear
        error naming it, or is waited for under `--wait`. `prepare` takes the lock; a stage takes
        it earlier to refuse before any work. It lasts as long as the session (a CLI command, a
        stage of `darla run`); outside any, until `mark_done` (or the process ends)."""
        self._locked += locks.hold_stage(self.path, self.root)

    def is_done(self) -> bool:
        marker = self.path / DONE
        if not marker.is_file():
            return False
        try:
            return json.loads(marker.read_text()).get("config_hash") == self.hash
        except (json.JSONDecodeError, OSError):
            return False

    def prepare(self) -> None:
        """Lock and create the folder and write the config; a marker of another config is removed
        (and said: the finished folder is being replaced)."""
        self.lock()
        marker = self.path / DONE
        if marker.exists() and not self.is_done():
            logger.warning(
                "%s was finished with another config; it is replaced by this one (config.yaml says which)",
                self.path,
            )
            marker.unlink()
        record = to_dict(self.config)
        if self.inputs or self.notes:
            record = {**record, **to_dict(self.inputs), **to_dict(self.notes)}
        atomic_write_text(self.path / CONFIG, dump_yaml(record))

    def mark_done(self, **extra: Any) -> None:
        record = {"config_hash": self.hash, "finished_at": time.time(), "host": host_info(), **extra}
        atomic_write_json(self.path / DONE, record)
        self.unlock()

    def unlock(self) -> None:
        """Release the locks `lock` took outside any session (a session releases its own at its end)."""
        if not locks.in_session():
            for path in reversed(self._locked):
                locks.release(path)
        self._locked = []

    def file(self, name: str) -> Path:
        return self.path / name


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def host_info() -> dict[str, Any]:
    """Where a stage ran. A seed fixes a result bit for bit only on one kind of CPU: torch picks its
    kernels by instruction set (AVX2, AVX-512), which round differently, and training amplifies the
    difference, so every finished folder names its CPU and torch build."""
    from darla.runtime import num_cores

    info: dict[str, Any] = {"cpu": cpu_name(), "cores": num_cores(), "python": platform.python_version()}
    torch = sys.modules.get("torch")  # only when the stage used it: recording must not import it
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["torch_threads"] = torch.get_num_threads()
    return info


def is_done(path: str | Path) -> bool:
    return (Path(path) / DONE).is_file()


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (to name a checkpoint by content in downstream configs)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def check_out(path: str | Path, *, file: bool = False) -> None:
    """Refuse an `--out` that cannot be written, before anything is: one under a file, a file where
    a folder is wanted (or a folder where a file is: `file`), or one in a folder this process cannot
    write into."""
    path = Path(path)
    if file and path.is_dir():
        raise ConfigError(f"--out {path} is a folder; name the file to write, e.g. --out {path / 'out.png'}")
    existing = path.parent if file else path
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = f"--out {path} is a file" if existing == path else f"--out {path}: {existing} is a file"
        raise ConfigError(f"{what}, not a folder; choose another --out")
    if not _writable(existing):
        raise ConfigError(f"--out {path}: folder {existing} is not writable; choose another --out")


def _writable(folder: Path) -> bool:
    """Whether this process can create entries in `folder` (root passes permission checks, so a
    folder on a read-only or virtual file system is tried: a probe folder, removed at once)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        probe = tempfile.mkdtemp(prefix=".darla-probe-", dir=folder)
    except OSError:
        return False
    os.rmdir(probe)
    return True
