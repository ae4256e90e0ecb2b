"""The Ray backend, run for real on a local Ray instance of 2 CPUs (one per module: starting Ray
takes seconds): a plan of real stages gives the local backend's numbers; a stage that raises or
whose worker is killed is recorded and retried while the others go on; Ctrl-C and SIGTERM stop
every stage (each saving its checkpoint first) and leave nothing running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from darla import locks
from darla.cli import main
from darla.config import build_config
from darla.envs import get_family
from darla.errors import ConfigError, TrainingError
from darla.pipelines.analysis.probe import can_probe
from darla.pipelines.orchestrate.local import LocalBackend, RunLog, read_run_log
from darla.pipelines.orchestrate.plan import plan_run
from darla.pipelines.orchestrate.ray_backend import RayBackend
from darla.pipelines.orchestrate.ray_cluster import INSTALL_HINT, check_reachable
from darla.pipelines.orchestrate.run import RunConfig
from darla.pipelines.orchestrate.tasks import StageKind, Task

# test_run_pipeline's TINY budgets, with sampled actions over 60 steps so that returns are not all 0
TINY: dict[str, Any] = {
    "env": "SeekAvoid",
    "models": ["beta_vae"],
    "modes": ["frozen"],
    "seeds": [0],
    "probe_frames": 8,
    "see": {
        "size": 32,
        "frames": 64,
        "workers": 1,
        "threads": 1,
        "params": {"latent_dim": 4, "channels": [8, 8], "hidden": 16},
        "train": {"steps": 2, "batch_size": 16, "image_every": 0},
    },
    "act": {
        "timesteps": 16,
        "n_envs": 1,
        "vec": "dummy",
        "max_episode_steps": 8,
        "eval_freq": 0,
        "eval_episodes": 3,
        "checkpoint_freq": 0,
        "threads": 1,
        "hparams": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
    },
    "transfer": {
        "episodes": 2,
        "n_envs": 1,
        "vec": "dummy",
        "device": "cpu",
        "deterministic": False,
        "max_episode_steps": 60,
    },
}

# stages that fail in the ways a real one can (workers import them by name, as darla's stages)
STAGE_MODULE = textwrap.dedent(
    """
    import os, signal, time
    from pathlib import Path

    from darla.errors import TrainingError


    def work(cfg: dict) -> Path:
        folder = Path(cfg["folder"])
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "attempts", "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        if cfg.get("wait_for"):
            while not Path(cfg["wait_for"]).exists():
                time.sleep(0.05)
        how = cfg.get("how", "ok")
        if how == "nan":  # as the see and act stages report a non-finite loss
            raise TrainingError("loss is nan at step 3")
        if how == "die_once" and not (folder / "died").exists():
            (folder / "died").write_text("")
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies (killed, out of memory)
        if how in ("sleepy", "stubborn"):  # a stage that would run for hours
            (folder / "pid").write_text(str(os.getpid()))
            while True:
                try:
                    (folder / "beat").write_text(str(time.time()))
                    time.sleep(0.1)
                except KeyboardInterrupt:
                    if how == "stubborn":  # one that does not stop
                        continue
                    (folder / "checkpoint").write_text("saved")  # as act and see do
                    raise
        (folder / "DONE.json").write_text("{}")
        return folder


    def done(cfg: dict) -> bool:
        return (Path(cfg["folder"]) / "DONE.json").is_file()
    """
)
KIND = StageKind("act", "ray_test_stages:work", "ray_test_stages:done")


def stage(out: Path, name: str, how: str = "ok", needs: tuple[str, ...] = (), **extra: Any) -> Task:
    folder = out / name
    config = {"folder": str(folder), "how": how, **extra}
    return Task(KIND, name, folder, config, needs=tuple(out / n for n in needs))


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed (pip install -e '.[ray]'; '.[test]' has it)"
    )
    stages = tmp_path_factory.mktemp("ray_stages")
    (stages / "ray_test_stages.py").write_text(STAGE_MODULE)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(stages), saved) if p)  # Ray's workers
    sys.path.insert(0, str(stages))  # the driver predicts whether a stage is done
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm)
        sys.path.remove(str(stages))
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _plan(out: Path) -> list[Task]:
    cfg = build_config(RunConfig, preset="smoke", section="run", overrides={**TINY, "out": str(out)})
    family = get_family(cfg.env)
    return plan_run(cfg, threads=1, probe_factors=family.probe_factors if can_probe(family) else ())


def _numbers(path: Path, out: Path, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    data = json.loads(path.read_text().replace(str(out), "<out>"))
    return {k: v for k, v in data.items() if k not in drop}


def _statuses(out: Path) -> list[tuple[str, str, int | None]]:
    return [(e["name"], e["status"], e.get("attempt")) for e in read_run_log(out)]


def test_ray_runs_a_plan_as_the_local_backend_does(ray_session: Any, tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "ray"
    LocalBackend(RunLog(local)).execute(_plan(local))
    tasks = _plan(remote)
    assert [t.kind for t in tasks] == ["see", "probe", "oracle", "act", "transfer"]
    locks.hold(remote)  # as `darla run` holds its folder: the stages on Ray write inside its lock
    try:
        outcomes = RayBackend(RunLog(remote), retries=1, keep_going=True).execute(tasks)
        assert {(o.task.label, o.status, o.attempts) for o in outcomes.values()} == {
            (t.label, "ran", 1) for t in tasks
        }  # in an order of Ray's (oracle and act run side by side)
        assert sorted((e["stage"], e["status"]) for e in read_run_log(remote)) == sorted(
            (t.kind, "ran") for t in tasks
        )
        results = Path("transfer/beta_vae/ppo/s0/results.json")
        assert _numbers(remote / results, remote) == _numbers(local / results, local)
        returns = [
            r for d in _numbers(remote / results, remote)["domains"].values() for r in d["agent"]["returns"]
        ]
        assert any(returns)  # numbers worth comparing
        timing = ("training_seconds", "images_per_s", "seconds")
        see = Path("see/beta_vae")
        assert _numbers(remote / see / "metrics.json", remote, timing) == _numbers(
            local / see / "metrics.json", local, timing
        )
        weights = [
            torch.load(out / see / "model.pt", weights_only=True)["state_dict"] for out in (local, remote)
        ]
        assert weights[0].keys() == weights[1].keys()
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
        probe = Path("probe/beta_vae/probe.json")  # its model_hash hashes a file that names its folder
        drop = (*timing, "model_hash")
        assert _numbers(remote / probe, remote, drop) == _numbers(local / probe, local, drop)
        # a re-run finds every stage done
        again = RayBackend(RunLog(remote)).execute(_plan(remote))
        assert {o.status for o in again.values()} == {"skipped"}
    finally:
        locks.release(remote)


def test_failures_are_recorded_and_retried_while_the_others_go_on(ray_session: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    tasks = [
        stage(out, "nan", "nan"),
        stage(out, "after_nan", needs=("nan",)),
        stage(out, "killed", "die_once"),
        stage(out, "after_killed", needs=("killed",)),
        stage(out, "fine"),
    ]
    log = RunLog(out)
    outcomes = RayBackend(log, retries=2, keep_going=True).execute(tasks)
    assert {o.task.label: (o.status, o.attempts) for o in outcomes.values()} == {
        "nan": ("failed", 3),
        "after_nan": ("blocked", 0),
        "killed": ("ran", 2),
        "after_killed": ("ran", 1),
        "fine": ("ran", 1),
    }
    assert "TrainingError: loss is nan at step 3" in outcomes[out / "nan"].error
    assert (
        'raise TrainingError("loss is nan at step 3")' in outcomes[out / "nan"].error
    )  # the worker's frames
    assert log.counts == {"ran": 3, "skipped": 0, "failed": 1}
    entries = read_run_log(out)
    assert sorted(_statuses(out), key=str) == sorted(
        [
            ("nan", "failed", 1),
            ("nan", "failed", 2),
            ("nan", "failed", 3),
            ("killed", "failed", 1),
            ("killed", "ran", None),
            ("after_killed", "ran", None),
            ("fine", "ran", None),
        ],
        key=str,
    )
    for entry in entries:
        if entry["name"] == "nan":
            assert entry["error"] == ["darla.errors.TrainingError: loss is nan at step 3"]
            assert "ray_test_stages.py" in entry["traceback"]
        if entry["name"] == "killed" and entry["status"] == "failed":
            assert entry["error"][0].startswith("WorkerCrashedError: ")
    assert len((out / "nan" / "attempts").read_text().split()) == 3
    assert len((out / "killed" / "attempts").read_text().split()) == 2  # the first worker died
    assert not (out / "after_nan").exists()


def test_a_failure_stops_the_plan_without_keep_going(ray_session: Any, tmp_path: Path) -> None:
    """The stage's own error comes back (darla's CLI reports a ConfigError or TrainingError as
    such); what else runs is interrupted, with a checkpoint, not left to run on."""
    out = tmp_path / "run"
    beat = out / "long" / "beat"
    tasks = [
        stage(out, "long", "sleepy"),
        stage(out, "nan", "nan", wait_for=str(beat)),
        stage(out, "after", needs=("nan",)),
    ]
    with pytest.raises(TrainingError, match="loss is nan at step 3"):
        RayBackend(RunLog(out), retries=2).execute(tasks)
    assert (out / "long" / "checkpoint").read_text() == "saved"
    assert _statuses(out) == [("nan", "failed", 1), ("long", "interrupted", 1)]
    assert not (out / "after").exists()


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_interrupts_every_stage_then_kills_what_does_not_stop(
    ray_session: Any, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    tasks = [
        stage(out, "polite", "sleepy"),
        stage(out, "stubborn", "stubborn"),
        stage(out, "queued", needs=("polite",)),
    ]

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 60
        while not all((out / n / "beat").is_file() for n in ("polite", "stubborn")):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        RayBackend(RunLog(out), grace=2.0).execute(tasks)
    assert time.monotonic() - started < 60
    assert (out / "polite" / "checkpoint").read_text() == "saved"
    assert not (out / "stubborn" / "checkpoint").exists()
    assert not _pid_alive(int((out / "stubborn" / "pid").read_text()))  # killed after the grace period
    beats = [(out / n / "beat").stat().st_mtime_ns for n in ("polite", "stubborn")]
    time.sleep(0.5)
    assert [(out / n / "beat").stat().st_mtime_ns for n in ("polite", "stubborn")] == beats
    assert sorted(_statuses(out)) == [("polite", "interrupted", 1), ("stubborn", "interrupted", 1)]
    assert not (out / "queued").exists()  # cancelled before it started


DRIVER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from darla.pipelines.orchestrate.local import RunLog
    from darla.pipelines.orchestrate.ray_backend import RayBackend
    from darla.pipelines.orchestrate.tasks import StageKind, Task
    from darla.runtime import sigterm_as_interrupt


    if __name__ == "__main__":
        out = Path(sys.argv[1])
        kind = StageKind("act", "ray_test_stages:work", "ray_test_stages:done")
        tasks = [Task(kind, n, out / n, {"folder": str(out / n), "how": "sleepy"}) for n in "ab"]
        try:
            with sigterm_as_interrupt():
                RayBackend(RunLog(out), num_cpus=2).execute(tasks)  # its own local Ray instance
        except KeyboardInterrupt:
            sys.exit(130)
    """
)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_stops_a_run_on_its_own_ray_instance(ray_session: Any, tmp_path: Path) -> None:
    """A command that started its own Ray instance: SIGTERM checkpoints every stage, and Ray and
    its workers end with the command."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER_SCRIPT)
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    proc = subprocess.Popen([sys.executable, str(script), str(out)], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 120
        while not all((out / n / "beat").is_file() for n in "ab"):
            assert proc.poll() is None, "the driver exited before its stages started"
            assert time.monotonic() < deadline, "the stages did not start"
            time.sleep(0.2)
        pids = [int((out / n / "pid").read_text()) for n in "ab"]
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130
    assert [(out / n / "checkpoint").read_text() for n in "ab"] == ["saved", "saved"]
    assert sorted(_statuses(out)) == [("a", "interrupted", 1), ("b", "interrupted", 1)]
    deadline = time.monotonic() + 15
    while any(_pid_alive(p) for p in pids):  # the Ray instance, workers included, ended with it
        assert time.monotonic() < deadline, f"Ray workers {pids} outlived the command"
        time.sleep(0.2)


def test_what_no_node_can_run_is_refused_before_anything_runs(ray_session: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    gpu = Task(KIND, "gpu", out / "gpu", SimpleNamespace(device="cuda", folder=str(out / "gpu")))
    with pytest.raises(
        ConfigError, match="stage gpu asks for a GPU \\(device 'cuda'\\) and the Ray cluster has none"
    ):
        RayBackend(RunLog(out)).execute([gpu])
    big = Task(KIND, "big", out / "big", {"folder": str(out / "big")}, cpus=3)
    with pytest.raises(ConfigError, match="stage big asks for 3 CPUs; the largest Ray node has 2"):
        RayBackend(RunLog(out)).execute([big])
    assert read_run_log(out) == []


def test_folders_outside_the_storage_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    elsewhere = tmp_path / "elsewhere"
    tasks = [stage(out, "a"), stage(elsewhere, "b")]
    with pytest.raises(ConfigError) as err:
        RayBackend(RunLog(out)).execute(tasks)
    assert f"stage b uses {elsewhere / 'b'}, outside the Ray storage folder {out.resolve()}" in str(err.value)
    with pytest.raises(ConfigError, match="outside the Ray storage folder"):
        RayBackend(RunLog(out), storage=tmp_path / "shared").execute(tasks[:1])


def test_without_ray_the_backend_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does where Ray is missing
    with pytest.raises(ConfigError) as err:
        RayBackend(RunLog(tmp_path)).execute([stage(tmp_path, "a")])
    assert str(err.value) == INSTALL_HINT
    assert "pip install -e '.[ray]'" in INSTALL_HINT


def test_a_wrong_cluster_address_is_refused_at_once() -> None:
    """Ray itself would retry an address where nothing answers for many minutes."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]'; '.[test]' has it)")
    with pytest.raises(ConfigError, match=re.escape("nothing answers at the Ray address '127.0.0.1:1'")):
        check_reachable("127.0.0.1:1", timeout=2.0)
    with pytest.raises(ConfigError, match="the Ray address 'head-node' is not 'auto' or HOST:PORT"):
        check_reachable("head-node")


def test_darla_compare_on_ray_gives_the_local_sweeps_numbers(
    ray_session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`darla compare --backend ray` (on the session's instance) and the local backend: the same
    stages, the same results.json numbers, a report from each."""
    config = tmp_path / "tiny.yaml"
    tiny = {**TINY, "see": {**TINY["see"], "size": 36}}  # the pixel baseline's NatureCNN needs 36 px
    config.write_text(
        json.dumps({**tiny, "oracle": False, "disentanglement": False, "baselines": ["pixels"]})
    )
    sweeps = {}
    for backend in ("local", "ray"):
        out = tmp_path / backend
        argv = [
            "compare",
            "--preset",
            "smoke",
            "--config",
            str(config),
            "--backend",
            backend,
            "--out",
            str(out),
        ]
        assert main([*argv, "--json"]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["failed"] == {} and result["blocked"] == []
        assert (out / "report" / "report.md").is_file()
        sweeps[backend] = {
            str(p.relative_to(out)): _numbers(p, out)
            for p in sorted((out / "transfer").rglob("results.json"))
            if ".episodes" not in p.parts
        }
    assert sweeps["ray"] == sweeps["local"] and len(sweeps["ray"]) == 2  # beta_vae frozen and pixels
