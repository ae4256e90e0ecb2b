"""A killed command leaves no worker behind: nothing writes into its run folder after it is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

STAGE_MODULE = textwrap.dedent(
    """
    import os, time
    from pathlib import Path


    def work(folder: str) -> Path:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        (path / "pid").write_text(str(os.getpid()))
        try:
            while True:  # a stage that would write for hours
                (path / "beat").write_text(str(time.time()))
                time.sleep(0.1)
        except KeyboardInterrupt:  # as act and see do: save a checkpoint, then stop
            (path / "checkpoint").write_text("saved")
            raise


    def done(folder: str) -> bool:
        return False
    """
)

WORKER_SCRIPT = textwrap.dedent(
    """
    import signal, sys
    from pathlib import Path

    from darla.pipelines.orchestrate.local import LocalBackend, RunLog
    from darla.pipelines.orchestrate.tasks import StageKind, Task
    from darla.runtime import sigterm_as_interrupt


    if __name__ == "__main__":
        out = Path(sys.argv[1])
        # SIGINT as a terminal's command has it, or ignored as in a script's background job
        # (`darla run ... &`), which the workers inherit
        signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[2] == "background" else signal.default_int_handler)
        kind = StageKind("act", "sleepy_stage:work", "sleepy_stage:done")  # workers import it by name
        tasks = [Task(kind, n, out / n, str(out / n)) for n in "ab"]
        try:
            with sigterm_as_interrupt():
                LocalBackend(RunLog(out), 2).execute(tasks)
        except KeyboardInterrupt:
            sys.exit(130)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has stopped; only its exit status is left to reap


def _beats(out: Path) -> list[int]:
    return [(out / n / "beat").stat().st_mtime_ns for n in "ab"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("how", ["sigterm", "ctrl-c", "sigkill", "sigterm-background"])
def test_killed_run_leaves_no_worker_writing(tmp_path: Path, how: str) -> None:
    """`sigterm-background`: a command started with SIGINT ignored still stops its stages with a
    checkpoint (the workers take the SIGINT the stop sends them)."""
    script = tmp_path / "graph.py"
    script.write_text(WORKER_SCRIPT)
    (tmp_path / "sleepy_stage.py").write_text(STAGE_MODULE)
    out = tmp_path / "run"
    # its own session, so that Ctrl-C (SIGINT to the terminal's process group) reaches only it
    setting = "background" if how == "sigterm-background" else "terminal"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), setting], cwd=tmp_path, start_new_session=True, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not all((out / n / "beat").is_file() for n in "ab"):
            assert proc.poll() is None, "the stage graph exited before its workers started"
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        pids = [int((out / n / "pid").read_text()) for n in "ab"]
        assert all(_alive(p) for p in pids) and os.getpid() not in pids
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # SIGTERM takes Ctrl-C's path (exit 130, workers stopped at once); SIGKILL cannot be handled,
    # so the workers notice their parent is gone and end themselves
    assert rc == (-signal.SIGKILL if how == "sigkill" else 130)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"workers {[p for p in pids if _alive(p)]} outlived the command"
        time.sleep(0.2)
    before = _beats(out)
    time.sleep(0.5)
    assert _beats(out) == before
    # SIGTERM passed each stage the interrupt Ctrl-C gives, so each saved its checkpoint first
    saved = [(out / n / "checkpoint").is_file() for n in "ab"]
    assert saved == ([False, False] if how == "sigkill" else [True, True])
