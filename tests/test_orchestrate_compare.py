"""`darla compare`: one planner for a sweep over envs, shared stages, faults, resume, the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import darla.pipelines.stages.act as act_mod
from darla.cli import main
from darla.pipelines.orchestrate.local import LocalBackend, Outcome, RunLog, read_run_log
from darla.pipelines.orchestrate.tasks import StageKind, Task

TINY = [
    "--see.size", "36",  # the pixel baseline's NatureCNN needs 36 px
    "--see.frames", "64",
    "--see.workers", "1",
    "--see.threads", "1",
    "--see.params", "latent_dim=4", "channels=[8,8]", "hidden=16",
    "--see.model-params", "dae={latent_dim: 4, channels: [8, 8], hidden: 16}",
    "--see.model-train", "dae={steps: 2}",
    "--see.train.steps", "2",
    "--see.train.batch-size", "16",
    "--see.train.image-every", "0",
    "--act.timesteps", "16",
    "--act.n-envs", "2",
    "--act.vec", "dummy",
    "--act.max-episode-steps", "8",
    "--act.eval-freq", "0",
    "--act.eval-episodes", "2",
    "--act.checkpoint-freq", "0",
    "--act.threads", "1",
    "--act.hparams", "n_steps=8", "batch_size=16", "n_epochs=1",
    "--transfer.episodes", "1",
    "--transfer.n-envs", "1",
    "--transfer.vec", "dummy",
    "--no-oracle",
    "--probe-frames", "0",
    "--metrics-point-scale", "0.002",
    "--jobs", "1",
]  # fmt: skip


def _compare(out: Path, *extra: str) -> list[str]:
    return ["compare", *TINY, "--models", "beta_vae", "dae", "--seeds", "0", "--out", str(out), *extra]


def _results(folder: Path) -> dict[str, Any]:
    found = {}
    for path in sorted((folder / "transfer").rglob("results.json")):
        if ".episodes" not in path.parts:
            data = json.loads(path.read_text())
            found[str(path.relative_to(folder))] = (data["domains"], data["policies"])
    return found


def test_a_sweep_over_two_envs_equals_its_runs_one_by_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each env of a sweep gets its own run folder and report; its results are those of `darla run`
    with the same seeds (a sweep only decides where and when stages run)."""
    out = tmp_path / "cmp"
    assert main([*_compare(out, "--env", "SeekAvoid", "FetchObject", "--json")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["failed"] == {} and result["blocked"] == []
    for env in ("SeekAvoid", "FetchObject"):
        sweep = out / env
        assert (sweep / "report" / "report.md").is_file() and (
            sweep / "report" / "sweep" / "summary.json"
        ).is_file()
        single = tmp_path / f"run-{env}"
        run_argv = ["run", *TINY, "--env", env, "--models", "beta_vae", "dae", "--modes", "frozen", "pixels"]
        assert main([*run_argv, "--seeds", "0", "--disentanglement", "--out", str(single)]) == 0
        assert _results(sweep) == _results(single) and _results(sweep)
        # every backbone is trained once and scored once (the DAE serves dae, not a second copy)
        stages = [(e["stage"], e["name"]) for e in read_run_log(out) if e["status"] == "ran"]
        assert stages.count(("see", "dae")) == 2 and stages.count(("metrics", "dae")) == 2  # two envs
    report = (out / "SeekAvoid" / "report" / "report.md").read_text()
    assert (
        "DARLA's Table 1" in report and "DARLA_DAE" in report and "Disentanglement against transfer" in report
    )
    assert (out / "SeekAvoid" / "tb" / "hparams").is_dir()


def test_a_failing_trial_is_retried_recorded_and_the_others_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = act_mod.run_act
    attempts: list[str] = []

    def flaky(cfg: Any) -> Path:
        if cfg.mode == "frozen" and Path(str(cfg.see)).name == "dae":
            attempts.append(str(cfg.see))
            raise FloatingPointError("loss became NaN (made up by the test)")
        return real(cfg)

    monkeypatch.setattr(act_mod, "run_act", flaky)
    out = tmp_path / "cmp"
    assert main([*_compare(out, "--retries", "2")]) == 2
    err = capsys.readouterr().err
    assert "1 task(s) failed after 3 attempt(s)" in err and "dae/frozen/ppo/s0" in err and "NaN" in err
    assert len(attempts) == 3
    log = read_run_log(out)
    failed = [e for e in log if e["status"] == "failed"]
    assert len(failed) == 3 and all("FloatingPointError" in e["traceback"] for e in failed)  # tracebacks kept
    done = {(e["stage"], e["name"]) for e in log if e["status"] == "ran"}
    assert {
        ("act", "beta_vae/frozen/ppo/s0"),
        ("transfer", "beta_vae/frozen/ppo/s0"),
        ("act", "pixels/ppo/s0"),
    } <= done
    assert ("transfer", "dae/frozen/ppo/s0") not in done  # it needs the failed policy
    assert "dae/frozen/ppo" not in (out / "report" / "report.md").read_text().split("## Backbone sweep")[0]


def test_a_killed_sweep_rerun_redoes_only_what_was_unfinished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = act_mod.run_act
    calls: list[str] = []

    def killed_on_third(cfg: Any) -> Path:
        calls.append(cfg.mode)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(cfg)

    monkeypatch.setattr(act_mod, "run_act", killed_on_third)
    out = tmp_path / "cmp"
    assert main(_compare(out)) == 130
    monkeypatch.setattr(act_mod, "run_act", real)
    first = read_run_log(out)
    finished = {(e["stage"], e["name"]) for e in first if e["status"] == "ran"}
    assert ("see", "beta_vae") in finished and any(e["status"] == "interrupted" for e in first)
    assert main(_compare(out)) == 0
    second = read_run_log(out)[len(first) :]
    assert {(e["stage"], e["name"]) for e in second if e["status"] == "skipped"} == finished
    assert all(e["status"] == "ran" for e in second if (e["stage"], e["name"]) not in finished)


@pytest.mark.parametrize(
    ("flag", "bad", "valid"),
    [
        ("--models", "beta_vea", "beta_vae_dae"),
        ("--algos", "ppp", "a2c, dqn"),
        ("--backend", "slurm", "local, ray"),
    ],
)
def test_unknown_names_fail_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, bad: str, valid: str
) -> None:
    out = tmp_path / "cmp"
    assert main([*_compare(out), flag, bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("darla: error:") and repr(bad) in err and valid in err
    assert not out.exists()


def test_the_display_counts_a_freed_workers_next_stage_as_running(tmp_path: Path) -> None:
    """While stages are left, a change is reported once the freed worker has its next stage: the
    live line never shows an idle worker that is in fact busy."""
    kind = StageKind("probe", "pathlib:Path", "os.path:exists")  # instant stages, in worker processes
    tasks = [Task(kind, f"t{i}", tmp_path / f"t{i}", str(tmp_path / f"t{i}")) for i in range(5)]
    seen: list[tuple[int, int]] = []

    def record(outcomes: dict[Path, Outcome], running: int) -> None:
        seen.append((len(outcomes), running))

    outcomes = LocalBackend(RunLog(tmp_path), 2, on_change=record).execute(tasks)
    assert len(outcomes) == 5 and all(o.status == "ran" for o in outcomes.values())
    assert seen and seen[-1] == (5, 0)
    for done, running in seen[:-1]:
        assert running == min(2, 5 - done), seen
