"""A killed or interrupted act resumes as the unbroken run: same weights, same steps, same evaluations.

Each algorithm trains twice on the same seed: once straight through, once killed in the middle of a
rollout (after a checkpoint) and re-run. Their policies must be equal tensor for tensor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_see
from test_act_pipeline import act_config

import darla.pipelines.stages.act as act_mod
from darla.agents import load_agent
from darla.agents.persist import POLICY_PARAMS, load_tensors, read_member
from darla.artifacts import read_json
from darla.pipelines.stages.act import run_act

SETTINGS: dict[str, dict[str, Any]] = {
    # rollouts of 32 env steps (16 per env) for the actor-critics, 4-step train frequency for DQN
    "ppo": {"hparams": {"n_steps": 16, "batch_size": 16, "n_epochs": 2}},
    "a2c": {"hparams": {"n_steps": 16}},
    "dqn": {
        "hparams": {
            "learning_starts": 24,
            "buffer_size": 500,
            "batch_size": 8,
            "target_update_interval": 16,
            "train_freq": 2,
            "exploration_fraction": 0.5,
        }
    },
    "mfec": {"hparams": {"capacity": 200, "k": 3}},
}


@pytest.fixture(scope="module")
def see_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tiny_see(tmp_path_factory.mktemp("see_resume")))


class Killed(Exception):
    """Stands for SIGKILL: the process stops where it is, nothing runs after it."""


def weights(folder: Path, algo: str) -> dict[str, Any]:
    if algo == "mfec":
        with np.load(folder / "policy.zip", allow_pickle=False) as data:
            return {k: data[k] for k in data.files if k != "header"}
    return load_tensors(read_member(folder / "policy.zip", POLICY_PARAMS), "policy")


def assert_same_policy(a: Path, b: Path, algo: str) -> None:
    wa, wb = weights(a, algo), weights(b, algo)
    assert wa.keys() == wb.keys()
    for key in wa:
        if isinstance(wa[key], torch.Tensor):
            assert torch.equal(wa[key], wb[key]), key
        else:
            np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)


def config(out: Path, see: Path, algo: str) -> Any:
    return act_config(
        out,
        see,
        algo,
        timesteps=128,
        checkpoint_freq=40,
        eval_freq=48,
        max_episode_steps=12,  # several episodes, so the kill lands mid-episode with resets behind it
        **SETTINGS[algo],
    )


def kill_act_mid_rollout(cfg: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run act until step 90 (after the checkpoint at 40-64 steps, inside a rollout), then stop it
    as SIGKILL would; returns the act folder it left behind."""
    real_step = act_mod.SourceEvalCallback._on_step

    def die_mid_rollout(self: Any) -> bool:
        if self.num_timesteps >= 90:
            raise Killed
        return real_step(self)

    monkeypatch.setattr(act_mod.SourceEvalCallback, "_on_step", die_mid_rollout)
    with pytest.raises(Killed):
        run_act(cfg)
    monkeypatch.setattr(act_mod.SourceEvalCallback, "_on_step", real_step)
    return act_mod.act_dir(cfg)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn", "mfec"])
def test_killed_mid_rollout_resumes_bit_exactly(
    algo: str, see_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unbroken = run_act(config(tmp_path / "a", see_dir, algo))
    cfg = config(tmp_path / "b", see_dir, algo)
    folder = kill_act_mid_rollout(cfg, monkeypatch)
    assert not (folder / "DONE.json").exists()
    saved = read_json(folder / "checkpoint.json")
    assert 40 <= saved["num_timesteps"] < 90 and saved["exact"]

    resumed = run_act(cfg)
    done, reference = read_json(resumed / "DONE.json"), read_json(unbroken / "DONE.json")
    assert done["resumed_from"] == saved["num_timesteps"] and done["exact"]
    assert done["num_timesteps"] == reference["num_timesteps"]
    assert done["eval_mean_reward"] == reference["eval_mean_reward"]
    assert_same_policy(unbroken, resumed, algo)
    with np.load(unbroken / "evaluations.npz") as a, np.load(resumed / "evaluations.npz") as b:
        np.testing.assert_array_equal(a["timesteps"], b["timesteps"])
        np.testing.assert_array_equal(a["results"], b["results"])
    assert not (resumed / "checkpoint.json").exists() and not (resumed / "checkpoints").exists()


def test_ctrl_c_checkpoints_at_the_next_boundary_and_resumes_exactly(
    see_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT mid-rollout: act stops at the next rollout boundary with a checkpoint there (not at
    the last scheduled one), and the re-run equals the unbroken run."""
    unbroken = run_act(config(tmp_path / "a", see_dir, "ppo"))
    real_step = act_mod.SourceEvalCallback._on_step
    sent: list[int] = []

    def interrupt_once(self: Any) -> bool:
        if self.num_timesteps >= 70 and not sent:
            sent.append(self.num_timesteps)
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self)

    monkeypatch.setattr(act_mod.SourceEvalCallback, "_on_step", interrupt_once)
    cfg = config(tmp_path / "b", see_dir, "ppo")
    with pytest.raises(KeyboardInterrupt):
        run_act(cfg)
    folder = act_mod.act_dir(cfg)
    saved = read_json(folder / "checkpoint.json")
    assert saved["num_timesteps"] == 96  # the rollout boundary after step 70 (rollouts of 32 steps)
    monkeypatch.setattr(act_mod.SourceEvalCallback, "_on_step", real_step)
    resumed = run_act(cfg)
    assert read_json(resumed / "DONE.json")["resumed_from"] == 96
    assert_same_policy(unbroken, resumed, "ppo")


def test_a_resume_that_cannot_replay_its_envs_says_it_is_not_exact(
    see_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path, see_dir, "ppo")
    folder = kill_act_mid_rollout(cfg, monkeypatch)
    state = folder / read_json(folder / "checkpoint.json")["state"] / "state.json"
    meta = read_json(state)
    meta["envs"][0]["digest"] = "0" * 16  # as if the env had replayed into another state
    state.write_text(json.dumps(meta))
    done = read_json(run_act(cfg) / "DONE.json")
    assert done["exact"] is False
    assert "env 0" in done["resumes"][0]["notes"][0]
    assert load_agent(folder).predict(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1,)


def _act_argv(see: Path, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "darla", "act", "--see", str(see), "--out", str(out), "--timesteps", "1536"]
    argv += ["--n-envs", "2", "--vec", "dummy", "--max-episode-steps", "12", "--eval-freq", "512"]
    argv += ["--eval-episodes", "2", "--checkpoint-freq", "128", "--threads", "1", "--no-progress"]
    return [*argv, "--hparams", "n_steps=16", "batch_size=16", "n_epochs=2"]


def test_kill_9_mid_act_then_rerun_equals_the_unbroken_run(see_dir: Path, tmp_path: Path) -> None:
    """The issue's reproduction, as a user runs it: `darla act` killed with SIGKILL after its first
    checkpoint, then the same command again."""
    subprocess.run(_act_argv(see_dir, tmp_path / "a"), check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(_act_argv(see_dir, tmp_path / "b"), stderr=subprocess.DEVNULL)
    folder = tmp_path / "b" / "act" / "beta_vae" / "ppo" / "s0"
    deadline = time.monotonic() + 240
    while not (folder / "checkpoint.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the next rollouts
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = read_json(folder / "checkpoint.json")["num_timesteps"]
    subprocess.run(_act_argv(see_dir, tmp_path / "b"), check=True, capture_output=True, timeout=300)
    done = read_json(folder / "DONE.json")
    assert done["resumed_from"] >= killed_at and done["exact"] and done["num_timesteps"] == 1536
    assert_same_policy(tmp_path / "a" / "act" / "beta_vae" / "ppo" / "s0", folder, "ppo")
