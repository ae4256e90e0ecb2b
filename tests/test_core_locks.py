"""One writer per folder: a second `darla run` (or a lone stage) on a folder in use refuses at once,
naming the holder's PID, or waits with `--wait`; a lock dies with its process.

The API tests hold locks in this process and try them from a small Python subprocess; the CLI
tests run real `darla run` / `darla see` processes at test scale (32x32 frames, a see stage long
enough to be caught running).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from darla import locks
from darla.errors import DarlaError

TRY = textwrap.dedent(
    """
    import sys
    from darla import locks
    from darla.errors import DarlaError

    path, mode = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        locks.inherit([sys.argv[3]])
    try:
        locks.hold(path, shared=mode == "shared")
    except DarlaError as exc:
        print(exc)
        sys.exit(2)
    print("held")
    """
)


def _try(path: Path, mode: str = "exclusive", inside: Path | None = None) -> tuple[int, str]:
    """Whether another process can lock `path` now: (exit code, what it printed)."""
    argv = [sys.executable, "-c", TRY, str(path), mode, *([str(inside)] if inside else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


def test_exclusive_and_shared_locks_across_processes(tmp_path: Path) -> None:
    run, stage, other = tmp_path / "run", tmp_path / "run" / "see" / "m", tmp_path / "run" / "see" / "n"
    with locks.session():
        locks.hold(run, shared=True)  # as a lone stage does: its run folder shared, its own folder not
        locks.hold(stage)
        locks.hold(stage)  # again in the same process: no deadlock on itself
        code, text = _try(run, "shared")
        assert code == 0, text  # another lone stage of the same run folder may start
        assert _try(other)[0] == 0  # ... on another stage folder
        code, text = _try(stage)
        assert code == 2 and f"pid {os.getpid()}" in text and "--wait" in text and str(stage) in text
        code, text = _try(run)  # a `darla run` on the folder may not
        assert code == 2 and f"pid {os.getpid()}" in text
    # the session is over: its locks are gone
    assert _try(run)[0] == 0 and _try(stage)[0] == 0


def test_a_run_holds_its_folder_and_its_workers_run_inside_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with locks.session():
        locks.hold(run)
        assert (run / locks.LOCK_FILE).is_file()
        assert _try(run, "shared")[0] == 2  # a lone stage on the run folder refuses
        # a worker of this run (told so) does not wait for the lock its own run holds
        assert _try(run, "shared", inside=run) == (0, "held\n")
    assert _try(run)[0] == 0


def test_a_stage_outside_any_session_holds_its_folder_until_it_is_done(tmp_path: Path) -> None:
    """Library use (`run_see(cfg)` in a notebook): the lock ends with the stage, not the process."""
    from dataclasses import dataclass

    from darla.artifacts import StageDir

    @dataclass
    class Cfg:
        out: Path

    stage = StageDir(tmp_path / "exp" / "see" / "m", Cfg(tmp_path / "exp"))
    stage.prepare()
    assert _try(stage.path)[0] == 2 and _try(tmp_path / "exp")[0] == 2  # a run may not start
    stage.mark_done()
    assert _try(stage.path)[0] == 0 and _try(tmp_path / "exp")[0] == 0


def test_waiting_for_a_lock_and_a_lock_dying_with_its_process(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from darla import locks; locks.hold({str(folder)!r}); print('ok', flush=True); "
         "import time; time.sleep(600)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ok\n"
        with pytest.raises(DarlaError, match=f"pid {holder.pid}"):
            locks.hold(folder)
        start = time.monotonic()
        with locks.session(wait=True):
            killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {holder.pid}"])
            locks.hold(folder)  # waits until the holder is gone (killed: no clean-up ran)
            assert time.monotonic() - start >= 0.9
            killer.wait()
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- the CLI
SEE_FIELDS = {
    "size": "32",
    "frames": "64",
    "workers": "1",
    "threads": "1",
    "train.batch-size": "16",
    "train.image-every": "0",
    "train.checkpoint-every": "50",
}
PARAMS = ["latent_dim=4", "channels=[8,8]", "hidden=16"]
LONG = "1000000"  # see steps: a stage caught running


def _see_fields(prefix: str, steps: str) -> list[str]:
    args = [x for k, v in SEE_FIELDS.items() for x in (f"--{prefix}{k}", v)]
    return [*args, f"--{prefix}params", *PARAMS, f"--{prefix}train.steps", steps]


def _see(out: Path, *extra: str, steps: str = LONG) -> list[str]:
    """A lone `darla see` of beta_vae into <out>/see/beta_vae (or `--name`)."""
    return [
        "see",
        "--env",
        "SeekAvoid",
        "--model",
        "beta_vae",
        *_see_fields("", steps),
        "--out",
        str(out),
        *extra,
    ]


def _run(out: Path) -> list[str]:
    """A `darla run` whose see stage (the same folder as `_see(out)`'s) trains for long."""
    return [
        "run",
        "--env",
        "SeekAvoid",
        "--models",
        "beta_vae",
        "--modes",
        "frozen",
        "--seeds",
        "0",
        "--no-oracle",
        "--no-report",
        "--probe-frames",
        "0",
        *_see_fields("see.", LONG),
        "--out",
        str(out),
    ]


def _darla(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "darla", *args], capture_output=True, text=True, timeout=timeout
    )


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "darla", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def test_a_second_run_refuses_and_a_lone_stage_refuses_or_waits(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = _start(*_run(out))
    try:
        _wait_for(out / "see" / "beta_vae" / "model.pt", holder)  # training, its first checkpoint written
        stamp = (out / "run.yaml").stat().st_mtime_ns
        second = _darla(*_run(out))
        assert second.returncode == 2, second.stderr[-2000:]
        assert "darla: error:" in second.stderr and f"pid {holder.pid}" in second.stderr
        assert "--wait" in second.stderr and "Traceback" not in second.stderr
        assert (out / "run.yaml").stat().st_mtime_ns == stamp  # nothing written
        # a lone see of the stage the run is training: refused, it would write the run's folder
        lone = _darla(*_see(out))
        assert lone.returncode == 2 and f"pid {holder.pid}" in lone.stderr, lone.stderr[-2000:]
        # with --wait, a lone stage starts once the run is gone (here: stopped by Ctrl-C)
        waiter = _start(*_see(out, "--name", "other", "--wait", steps="2"))
        time.sleep(8)
        assert waiter.poll() is None, waiter.communicate()[1][-2000:]
        assert not (out / "see" / "other" / "DONE.json").exists()
        assert _stop(holder) == 130
        _, stderr = waiter.communicate(timeout=180)
        assert waiter.returncode == 0, stderr[-2000:]
        assert f"pid {holder.pid}" in stderr and "waiting" in stderr
        assert (out / "see" / "other" / "DONE.json").is_file()
    finally:
        _stop(holder)


def test_a_lone_stage_holds_its_folder_against_a_run_and_a_twin(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    holder = _start(*_see(out))
    try:
        _wait_for(out / "see" / "beta_vae" / "model.pt", holder)
        twin = _darla(*_see(out))
        assert twin.returncode == 2 and f"pid {holder.pid}" in twin.stderr, twin.stderr[-2000:]
        run = _darla(*_run(out))
        assert run.returncode == 2 and f"pid {holder.pid}" in run.stderr, run.stderr[-2000:]
        assert not (out / "run.yaml").exists()
        # another stage folder of the same experiment is free
        other = _darla(*_see(out, "--name", "b", steps="2"))
        assert other.returncode == 0, other.stderr[-2000:]
    finally:
        assert _stop(holder) == 130
    # the lock died with the holder: the same folder can be written again
    assert _try(out / "see" / "beta_vae")[0] == 0
