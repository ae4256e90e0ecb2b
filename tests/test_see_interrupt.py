"""Ctrl-C (or SIGTERM) during `darla see` checkpoints the step it reached, and the re-run ends with the
weights of a run that never stopped, bit for bit; a script's background `darla see ... &` (SIGINT
ignored) still stops on SIGINT."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

STEPS, EVERY = 150, 20
ARGS = [
    "see", "--preset", "smoke", "--model", "beta_vae",
    "--size", "32", "--frames", "64", "--threads", "1", "--workers", "1",
    "--train.steps", str(STEPS), "--train.checkpoint-every", str(EVERY),
    "--train.log-every", "10", "--train.image-every", "0", "--json",
]  # fmt: skip


def _see(out: Path, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "darla", *ARGS, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a signal for this process does not reach pytest
        **popen,  # type: ignore[call-overload]
    )


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same see stage, never interrupted."""
    proc = _see(tmp_path_factory.mktemp("unbroken"))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    return Path(json.loads(stdout.strip().splitlines()[-1])["see_dir"])


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell does for `cmd &` in a script


# `background`: SIGINT (Ctrl-C, kill -INT) to a command started with SIGINT ignored, as a script's
# `darla see ... &` is; the foreground case takes the same path once main has installed the handler
@pytest.mark.parametrize("how", ["background", "sigterm"])
def test_interrupted_see_checkpoints_where_it_stopped_and_resumes_bit_exactly(
    tmp_path: Path, unbroken: Path, how: str
) -> None:
    proc = _see(tmp_path, preexec_fn=_ignore_sigint if how == "background" else None)
    folder = tmp_path / "see" / "beta_vae"
    try:
        deadline = time.monotonic() + 300
        while not (folder / "model.pt").is_file():  # the first scheduled checkpoint (step 20)
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # on between two scheduled checkpoints
        proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "re-run the same command to resume" in stderr and "Traceback" not in stderr
    found = re.search(r"interrupted at step (\d+)", stderr)
    assert found, stderr[-2000:]
    reached = int(found.group(1))
    assert EVERY <= reached < STEPS
    payload = torch.load(folder / "model.pt", weights_only=True)
    assert payload["train_state"]["step"] == reached  # the step it reached, not the last scheduled one
    assert not (folder / "DONE.json").exists()

    rerun = _see(tmp_path)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-2000:]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == reached and metrics["steps"] == STEPS
    resumed, straight = _weights(folder), _weights(unbroken)
    assert resumed.keys() == straight.keys()
    for name in straight:
        assert torch.equal(resumed[name], straight[name]), name
