"""`darla act --expert`: behaviour cloning onto a vision model's features, on real tiny stages.

The expert is a real (tiny) frozen PPO policy whose action head is then set by hand to a sharp,
frame-dependent rule, so a clone can only agree with it by learning that rule from the frames.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_see
from test_act_pipeline import act_config

from darla.agents import encode_batch, load_agent
from darla.agents.imitate import Demonstrations, fit_policy
from darla.artifacts import ActArtifact, check_zero_shot, read_json
from darla.cli import main
from darla.config import hash_dict
from darla.envs import get_family
from darla.errors import ArtifactError, ConfigError
from darla.pipelines.analysis.report_runs import method_label
from darla.pipelines.stages.act import act_stage, resolve_act_config, run_act


@pytest.fixture(scope="module")
def see_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tiny_see(tmp_path_factory.mktemp("see_run")))


def sample_frames(n_per_domain: int = 8) -> np.ndarray:
    """Frames of every source domain along a fixed random walk (not the clone's training frames)."""
    family = get_family("SeekAvoid")
    out = []
    for i, domain in enumerate(family.splits["source"]):
        env = family.make(domain, seed=900 + i, size=32)
        obs, _ = env.reset()
        rng = np.random.default_rng(i)
        for _ in range(n_per_domain):
            out.append(np.asarray(obs))
            obs, *_ = env.step(int(rng.integers(3)))
        env.close()
    return np.stack(out)


@pytest.fixture(scope="module")
def expert_dir(see_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished frozen PPO act stage with a linear action head set to: action 0 when latent 0 is
    above its median over sample frames, else action 1 (action 2 never), sharply."""
    out = tmp_path_factory.mktemp("expert_run")
    hparams = {
        "n_steps": 32,
        "batch_size": 32,
        "n_epochs": 1,
        "policy_kwargs": {"net_arch": {"pi": [], "vf": [8]}},
    }
    folder = run_act(act_config(out, see_dir, name="expert", hparams=hparams))
    agent = load_agent(folder)
    assert agent.vision is not None
    z = encode_batch(agent.vision, sample_frames())
    k = int(np.argmax(z.std(0)))  # the latent that varies most over frames
    mid = float(np.median(z[:, k]))
    scale = 8.0 / float(z[:, k].std())
    head = agent.model.policy.action_net
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[0, k], head.bias[0] = scale, -scale * mid
        head.weight[1, k], head.bias[1] = -scale, scale * mid
        head.bias[2] = -20.0
    agent.model.save(folder / "policy.zip")
    return folder


def test_clone_learns_the_experts_rule_and_transfer_sees_it(
    see_dir: Path, expert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["act", "--see", str(see_dir), "--expert", str(expert_dir), "--out", str(tmp_path)]
    argv += ["--name", "clone", "--timesteps", "480", "--n-envs", "4", "--max-episode-steps", "16"]
    argv += ["--imitate-epochs", "100", "--eval-episodes", "3", "--threads", "1"]
    # the tiny model's latents barely vary: standardised, the rule is visible to the clone's MLP
    argv += ["--feature-norm", "standardize", "--feature-norm-frames", "256"]
    argv += ["--hparams", "n_steps=32", "batch_size=32"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = tmp_path / "act" / "clone" / "ppo" / "s0"
    assert Path(result["path"]) == folder and result["num_timesteps"] == 480
    for name in ("policy.zip", "config.yaml", "evaluations.npz", "imitation.json", "DONE.json"):
        assert (folder / name).is_file(), name
    fit = read_json(folder / "imitation.json")
    assert fit["steps"] == 480 and len(fit["train_cross_entropy"]) == 100
    assert fit["train_cross_entropy"][-1] < fit["train_cross_entropy"][0] - 0.3
    assert fit["heldout_agreement"] >= 0.9 and fit["expert_episodes"] > 0
    # on frames it never trained on, the clone's greedy action is the expert's far above chance
    # (the rule splits frames at a median, so a constant guess agrees about half the time)
    obs = sample_frames()
    expert, clone = load_agent(expert_dir), load_agent(folder)
    want = expert.action_probabilities(obs).argmax(1)
    assert 0.3 < (want == 0).mean() < 0.7
    assert (clone.predict(obs) == want).mean() >= 0.85
    probs = clone.action_probabilities(obs)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert probs[:, 2].max() < 0.2  # the action the expert never takes
    # the config names the expert by path and content hash; a re-run is skipped
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    assert Path(cfg["expert"]) == expert_dir and cfg["expert_hash"] and cfg["imitate_epochs"] == 100
    finished = read_json(folder / "DONE.json")["finished_at"]
    assert main(argv) == 0
    assert read_json(folder / "DONE.json")["finished_at"] == finished
    # transfer and the report name it as a clone
    described = ActArtifact.read(folder).describe()
    assert described["expert"] == str(expert_dir) and described["act_name"] == "clone"
    assert method_label(described) == "beta_vae[clone]/frozen/ppo clone"  # named by --name
    assert method_label({**described, "act_name": None}) == "beta_vae/frozen/ppo clone"
    assert method_label({**described, "act_name": None, "expert": None}) == "beta_vae/frozen/ppo"
    pixels = {**described, "mode": "pixels", "vision": "pixels", "expert": None}
    assert method_label({**pixels, "act_name": None}) == "pixels/ppo"
    assert method_label({**pixels, "act_name": "cnn2"}) == "pixels[cnn2]/ppo"


def test_a_changed_expert_is_a_new_stage(see_dir: Path, expert_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "act" / "expert2" / "ppo" / "s0"
    shutil.copytree(expert_dir, other)
    a = act_stage(*resolve_act_config(act_config(tmp_path, see_dir, expert=str(expert_dir)))[:2])
    b = act_stage(*resolve_act_config(act_config(tmp_path, see_dir, expert=str(other)))[:2])
    assert a.hash == b.hash  # same policy content, another folder: the same stage
    agent = load_agent(other)
    with torch.no_grad():
        agent.model.policy.action_net.bias[2] = 5.0
    agent.model.save(other / "policy.zip")
    c = act_stage(*resolve_act_config(act_config(tmp_path, see_dir, expert=str(other)))[:2])
    assert c.hash != a.hash
    # a policy trained by RL hashes as it did before cloning existed (finished stages stay valid)
    rl, rl_inputs, _ = resolve_act_config(act_config(tmp_path, see_dir))
    assert not {"expert", "expert_hash", "imitate_epochs", "imitate_lr"} & set(hash_dict(rl))
    assert "expert_hash" not in rl_inputs.identity()
    assert act_stage(rl, rl_inputs).hash != a.hash


def test_bad_expert_is_a_clear_error(
    see_dir: Path, expert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["act", "--see", str(see_dir), "--out", str(tmp_path), "--vec", "dummy", "--expert"]
    assert main([*base, str(expert_dir), "--algo", "dqn"]) == 2
    assert "a2c, ppo" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "nowhere")]) == 2
    assert "act folder not found" in capsys.readouterr().err
    assert main([*base, str(expert_dir), "--imitate-epochs", "0"]) == 2
    assert "imitate_epochs must be >= 1" in capsys.readouterr().err
    # an expert that saw a target domain would leak it into the clone
    leaky = tmp_path / "leaky" / "act" / "x" / "ppo" / "s0"
    shutil.copytree(expert_dir, leaky)
    cfg = yaml.safe_load((leaky / "config.yaml").read_text())
    (leaky / "config.yaml").write_text(yaml.safe_dump({**cfg, "domains": ["marble_blueyellow"]}))
    assert main([*base, str(leaky)]) == 2
    err = capsys.readouterr().err
    assert "marble_blueyellow (target)" in err and "zero-shot" in err
    # transfer follows a clone to its expert: editing the expert after cloning is caught too
    family = get_family("SeekAvoid")
    clone = tmp_path / "clone"
    clone.mkdir()
    clone_raw = {
        "env": "SeekAvoid",
        "algo": "ppo",
        "domains": list(family.splits["source"]),
        "expert": str(leaky),
    }
    (clone / "config.yaml").write_text(yaml.safe_dump(clone_raw))
    with pytest.raises(ConfigError, match=r"expert of .* saw held-out domain\(s\) marble_blueyellow"):
        check_zero_shot(family.name, family.splits, ActArtifact.read(clone, finished=False))
    (clone / "config.yaml").write_text(yaml.safe_dump({**clone_raw, "expert": str(tmp_path / "gone")}))
    with pytest.raises(ArtifactError, match="cloned from is unreadable"):
        check_zero_shot(family.name, family.splits, ActArtifact.read(clone, finished=False))


def test_fit_policy_refuses_too_few_steps_and_non_actor_critic(expert_dir: Path) -> None:
    agent = load_agent(expert_dir)
    demos = Demonstrations(np.zeros((5, 4), np.float32), np.full((5, 3), 1 / 3, np.float32), [])
    with pytest.raises(ConfigError, match="at least 10 expert steps"):
        fit_policy(agent.model.policy, demos, epochs=1, lr=1e-3, seed=0)
    with pytest.raises(ConfigError, match="actor-critic"):
        fit_policy(torch.nn.Linear(2, 2), demos, epochs=1, lr=1e-3, seed=0)
