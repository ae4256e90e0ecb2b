"""`darla act` end to end on real MiniWorld frames and a real (tiny) see stage.

Budgets are tiny (32x32 frames, 16-step episodes, ~100 env steps): the tests check plumbing,
artifacts, resumption and errors, not learning.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_see
from stable_baselines3 import PPO

import darla.pipelines.stages.act as act_mod
import darla.vision
from darla.agents import load_agent, parameter_hash
from darla.agents.features import FeatureMapCNN, LayerEncoder, StandardizedEncoder, feature_moments
from darla.artifacts import file_hash, read_json
from darla.cli import main
from darla.config import from_dict, hash_dict, load_yaml
from darla.errors import ArtifactError, ConfigError
from darla.pipelines.stages.act import ActConfig, run_act

SMALL = {
    "ppo": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
    "a2c": {"n_steps": 8},
    "dqn": {"learning_starts": 32, "buffer_size": 500, "batch_size": 16, "target_update_interval": 32},
}


@pytest.fixture(scope="module")
def see_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, finished see stage: a tiny beta_vae on 64 source frames at 32x32."""
    return Path(tiny_see(tmp_path_factory.mktemp("see_run")))


def act_config(
    out: Path, see: Path | None, algo: str = "ppo", mode: str = "frozen", **extra: Any
) -> ActConfig:
    data: dict[str, Any] = {
        "see": None if see is None else str(see),
        "env": "SeekAvoid",
        "algo": algo,
        "mode": mode,
        "out": str(out),
        "timesteps": 64,
        "n_envs": 2,
        "vec": "dummy",
        "max_episode_steps": 16,
        "eval_freq": 0,
        "eval_episodes": 3,
        "checkpoint_freq": 0,
        "threads": 1,
        "hparams": SMALL.get(algo, {}),
    }
    data.update(extra)
    return from_dict(ActConfig, data)


def tensorboard_tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in folder.rglob("events.out.tfevents*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags.update(acc.Tags()["scalars"])
    return tags


def frames(n: int = 6, size: int = 32) -> np.ndarray:
    from darla.envs import get_family

    env = get_family("SeekAvoid").make("brick_greenred", seed=123, size=size)
    obs, _ = env.reset()
    out = [obs]
    for _ in range(n - 1):
        obs, *_ = env.step(env.action_space.sample())
        out.append(obs)
    env.close()
    return np.stack(out)


def test_act_cli_end_to_end_frozen(see_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    see = tmp_path / "see" / "beta_vae"
    shutil.copytree(see_dir, see)
    checkpoint = darla.vision.checkpoint_path(see)
    before_file, before_params = file_hash(checkpoint), parameter_hash(darla.vision.load(see))
    argv = ["act", "--see", str(see), "--out", str(tmp_path), "--timesteps", "96", "--n-envs", "2"]
    argv += ["--vec", "dummy", "--max-episode-steps", "16", "--eval-freq", "48", "--eval-episodes", "3"]
    argv += ["--threads", "1", "--hparams", "n_steps=16", "batch_size=32", "n_epochs=1", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = tmp_path / "act" / "beta_vae" / "ppo" / "s0"
    assert Path(result["path"]) == folder and result["num_timesteps"] == 96
    for name in ("policy.zip", "config.yaml", "evaluations.npz", "DONE.json"):
        assert (folder / name).is_file(), name
    tags = tensorboard_tags(folder / "tb")
    assert {"rollout/ep_rew_mean", "eval/mean_reward"} <= tags, tags
    assert not (folder / "checkpoint.zip").exists()
    # the resolved config names the vision checkpoint by path and content hash, the env and its sources
    cfg = load_yaml(folder / "config.yaml")
    assert cfg["vision_hash"] == before_file and Path(cfg["vision_checkpoint"]) == checkpoint.resolve()
    assert cfg["env"] == "SeekAvoid" and cfg["domains"] == list(load_yaml(see / "config.yaml")["domains"])
    assert cfg["hparams"]["n_steps"] == 16 and cfg["hparams"]["learning_rate"] == 3e-4 and cfg["size"] == 32
    with np.load(folder / "evaluations.npz") as ev:
        assert list(ev["timesteps"]) == [48, 96] and ev["results"].shape == (2, 3)
    # the frozen encoder never changed
    assert file_hash(checkpoint) == before_file
    assert parameter_hash(darla.vision.load(see)) == before_params
    # the reloaded agent acts exactly like the policy on the encoder's features
    agent = load_agent(folder)
    obs = frames()
    actions = agent.predict(obs)
    assert actions.shape == (len(obs),) and actions.dtype == np.int64
    manual, _ = PPO.load(folder / "policy.zip", device="cpu").predict(
        darla.vision.load(see).encode(obs).numpy(), deterministic=True
    )
    np.testing.assert_array_equal(actions, manual)
    np.testing.assert_array_equal(load_agent(folder).predict(obs), actions)
    assert agent.config.mode == "frozen" and agent.image_size == 32
    with pytest.raises(ConfigError, match=r"\(n, 32, 32, 3\)"):
        agent.predict(np.zeros((2, 64, 64, 3), np.uint8))
    # a second run with the same config is skipped
    finished = read_json(folder / "DONE.json")["finished_at"]
    assert main([*argv[:-1]]) == 0
    assert read_json(folder / "DONE.json")["finished_at"] == finished
    # a vision checkpoint changed after act is refused by load_agent
    torch.manual_seed(1)
    other = darla.vision.build("beta_vae", image_shape=(32, 32, 3), latent_dim=4, channels=(8, 8), hidden=16)
    darla.vision.save(other, see)
    with pytest.raises(ArtifactError, match="changed since this policy was trained"):
        load_agent(folder)


@pytest.mark.parametrize(
    ("algo", "mode"),
    [
        ("a2c", "frozen"),
        ("dqn", "frozen"),
        ("ppo", "finetune"),
        ("dqn", "finetune"),
        ("ppo", "pixels"),
        ("a2c", "pixels"),
    ],
)
def test_algo_mode_matrix(algo: str, mode: str, see_dir: Path, tmp_path: Path) -> None:
    pixels = mode == "pixels"
    extra: dict[str, Any] = {"size": 40} if pixels else {}
    if (algo, mode) == ("a2c", "frozen"):
        extra["domain_mode"] = "per_worker"  # worker i keeps domain i mod k (the default draws per episode)
    cfg = act_config(tmp_path, None if pixels else see_dir, algo, mode, **extra)
    before = file_hash(darla.vision.checkpoint_path(see_dir))
    folder = run_act(cfg)
    expected = "pixels" if pixels else ("beta_vae" if mode == "frozen" else "beta_vae-finetune")
    assert folder == tmp_path / "act" / expected / algo / "s0"
    done = read_json(folder / "DONE.json")
    assert done["num_timesteps"] >= 64 and done["reload_checked_frames"] > 0
    agent = load_agent(folder)
    obs = frames(size=40 if pixels else 32)
    actions = agent.predict(obs)
    assert actions.shape == (len(obs),) and ((actions >= 0) & (actions < agent.n_actions)).all()
    np.testing.assert_array_equal(load_agent(folder).predict(obs), actions)
    assert agent.inputs.vision_hash == (None if pixels else before)
    assert agent.config.domain_mode == extra.get("domain_mode", "per_episode")
    assert file_hash(darla.vision.checkpoint_path(see_dir)) == before


def test_a_checkpoint_from_another_config_is_not_resumed(see_dir: Path, tmp_path: Path) -> None:
    cfg = act_config(tmp_path, see_dir, "ppo", timesteps=64)
    folder = act_mod.act_dir(cfg)
    (folder / "checkpoints" / "step-32").mkdir(parents=True)
    (folder / "checkpoints" / "step-32" / "tensors.pth").write_bytes(b"not a torch file")
    (folder / "checkpoint.json").write_text(
        json.dumps({"config_hash": "other", "num_timesteps": 32, "state": "checkpoints/step-32"})
    )
    run_act(cfg)
    assert read_json(folder / "DONE.json")["resumed_from"] is None
    assert not (folder / "checkpoints").exists()  # the foreign checkpoint was dropped, not read


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bad_input_is_a_clear_error(
    see_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["act", "--out", str(tmp_path), "--vec", "dummy"]
    err = _cli_error([*base, "--see", str(see_dir), "--algo", "ppp"], capsys)
    assert "unknown algorithm 'ppp'; did you mean 'ppo'?" in err and "a2c, dqn" in err
    err = _cli_error([*base, "--see", str(see_dir), "--mode", "frozn"], capsys)
    assert "did you mean 'frozen'" in err and "finetune, frozen, pixels" in err
    err = _cli_error([*base, "--see", str(see_dir), "--size", "64"], capsys)
    assert "image size mismatch" in err and "32x32" in err and "64" in err
    err = _cli_error([*base, "--see", str(see_dir), "--hparams", "lerning_rate=0.1"], capsys)
    assert "did you mean 'learning_rate'" in err
    err = _cli_error([*base, "--mode", "finetune", "--env", "SeekAvoid"], capsys)
    assert "needs a vision model" in err
    err = _cli_error([*base, "--mode", "pixels", "--env", "SeekAvoid", "--size", "32"], capsys)
    assert "NatureCNN" in err
    err = _cli_error([*base, "--see", str(see_dir), "--domains", "brick_greenredd"], capsys)
    assert "did you mean 'brick_greenred'" in err
    # a see folder that is not finished
    unfinished = tmp_path / "see" / "half"
    shutil.copytree(see_dir, unfinished)
    (unfinished / "DONE.json").unlink()
    err = _cli_error([*base, "--see", str(unfinished)], capsys)
    assert "not finished" in err
    with pytest.raises(ArtifactError, match="act folder not found"):
        load_agent(tmp_path / "act" / "nothing")


def test_bench_act_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "bench",
        "act",
        "--size",
        "48",
        "--n-envs",
        "2",
        "--steps",
        "32",
        "--rounds",
        "1",
        "--vecs",
        "dummy",
    ]
    argv += ["--hparams", "n_steps=16", "batch_size=32", "n_epochs=1", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["vec"] == "dummy" and result["n_envs"] == 2 and "untrained" in result["encoder"]
    for key in ("bare", "frozen", "pixels"):
        assert result[key] > 0
    assert result["ratio"] == pytest.approx(result["frozen"] / result["pixels"], abs=0.01)
    assert result["env_ratio"] == pytest.approx(result["frozen"] / result["bare"], abs=0.01)
    assert result["per_vec"]["dummy"]["per_cpu_second"]["frozen"] > 0
    assert result["host"]["cpu"] and result["host"]["torch_threads"] == result["torch_threads"]


def test_feature_norm_standardizes_the_frozen_features(
    see_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = act_config(tmp_path, see_dir, "ppo")
    cfg = act_config(tmp_path, see_dir, "ppo", feature_norm="standardize", feature_norm_frames=64, name="std")
    # the option at its default leaves finished stages' hashes alone; set, it makes a new stage
    assert "feature_norm" not in hash_dict(plain) and hash_dict(cfg)["feature_norm"] == "standardize"
    wrapped_with: list[Any] = []
    real_wrap = act_mod.wrap_env

    def spy(venv: Any, mode: str, vision: Any) -> Any:
        wrapped_with.append(vision)
        return real_wrap(venv, mode, vision)

    monkeypatch.setattr(act_mod, "wrap_env", spy)
    folder = run_act(cfg)
    # the training env hands the policy standardised features (evaluation plays the Agent on raw
    # frames, through the same encoder: the reload check below compares the two)
    assert len(wrapped_with) == 1 and isinstance(wrapped_with[0], StandardizedEncoder)
    vision = darla.vision.load(see_dir)
    before = parameter_hash(vision)
    with np.load(folder / "feature_stats.npz") as stats:
        mean, std = stats["mean"], stats["std"]
    assert mean.shape == std.shape == (vision.feature_dim,) and (std > 0).all()
    # the statistics are those of the source frames' features, so those come out standardised
    agent = load_agent(folder)
    assert isinstance(agent.vision, StandardizedEncoder)
    obs = frames(32)
    raw = vision.encode(obs).numpy()
    np.testing.assert_allclose(agent.vision.encode(obs).numpy(), (raw - mean) / std, rtol=1e-5, atol=1e-5)
    manual, _ = PPO.load(folder / "policy.zip", device="cpu").predict((raw - mean) / std, deterministic=True)
    np.testing.assert_array_equal(agent.predict(obs), manual)
    assert parameter_hash(darla.vision.load(see_dir)) == before
    # one seed fixes the statistics; a lost statistics file is a clear error, not raw features
    again = run_act(
        act_config(
            tmp_path / "again", see_dir, "ppo", feature_norm="standardize", feature_norm_frames=64, name="std"
        )
    )
    with np.load(again / "feature_stats.npz") as stats:
        np.testing.assert_array_equal(stats["mean"], mean)
    (folder / "feature_stats.npz").unlink()
    with pytest.raises(ArtifactError, match=r"feature_stats\.npz is missing"):
        load_agent(folder)


def test_feature_norm_is_dropped_for_modes_without_frozen_features(see_dir: Path, tmp_path: Path) -> None:
    cfg = act_config(tmp_path, see_dir, "ppo", mode="pixels", feature_norm="standardize")
    resolved, _, _ = act_mod.resolve_act_config(cfg)
    assert resolved.feature_norm == "none" and "feature_norm" not in hash_dict(resolved)
    with pytest.raises(ConfigError, match=r"feature_norm.*standardize"):
        ActConfig(see=see_dir, feature_norm="scale").validate()  # type: ignore[arg-type]


def test_standardized_encoder_checks_its_statistics(see_dir: Path) -> None:
    vision = darla.vision.load(see_dir)
    dim = vision.feature_dim
    with pytest.raises(ConfigError, match="do not fit"):
        StandardizedEncoder(vision, np.zeros(dim + 1), np.ones(dim + 1))
    with pytest.raises(ConfigError, match="positive"):
        StandardizedEncoder(vision, np.zeros(dim), np.zeros(dim))
    mean, std = feature_moments(np.stack([np.zeros(dim), np.ones(dim) * 2]))
    np.testing.assert_allclose(mean, 1.0)
    np.testing.assert_allclose(std, 1.0)
    # a feature that never moves keeps a floor instead of dividing by zero
    assert feature_moments(np.ones((5, dim)))[1].min() == pytest.approx(1e-3)


def test_feature_layer_feeds_the_policy_an_encoder_layer(
    see_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = act_config(tmp_path, see_dir, "ppo")
    cfg = act_config(
        tmp_path, see_dir, "ppo", feature_layer="conv1", feature_norm="standardize", feature_norm_frames=64
    )
    assert "feature_layer" not in hash_dict(plain) and hash_dict(cfg)["feature_layer"] == "conv1"
    vision = darla.vision.load(see_dir)
    before = parameter_hash(vision)
    folder = run_act(cfg)
    # its own folder, so it does not replace the latent policy of the same model
    assert folder.parent.parent.name == "beta_vae@conv1" and act_mod.act_dir(plain).parts[-3] == "beta_vae"
    # the policy reads the ReLU activations of conv1, flattened: 8 channels on an 8x8 grid at 32x32
    layer = LayerEncoder(vision, "conv1")
    assert layer.feature_dim == 8 * 8 * 8
    obs = frames(12)
    x = vision.to_float(vision.as_batch(obs), vision.device)
    expected = torch.relu(vision.layer_output(x, "conv1")).flatten(1).numpy()
    np.testing.assert_allclose(layer.encode(obs).numpy(), expected, rtol=1e-5, atol=1e-6)
    with np.load(folder / "feature_stats.npz") as stats:
        mean, std = stats["mean"], stats["std"]
    assert mean.shape == (512,)
    agent = load_agent(folder)
    assert isinstance(agent.vision, StandardizedEncoder) and isinstance(agent.vision.base, LayerEncoder)
    policy = PPO.load(folder / "policy.zip", device="cpu")
    assert policy.observation_space.shape == (512,)
    manual, _ = policy.predict((expected - mean) / std, deterministic=True)
    np.testing.assert_array_equal(agent.predict(obs), manual)
    assert parameter_hash(darla.vision.load(see_dir)) == before  # still frozen
    # a layer the model lacks names the ones it has; other modes drop the option
    err = _cli_error(
        ["act", "--see", str(see_dir), "--out", str(tmp_path), "--feature-layer", "conv7"], capsys
    )
    assert "conv0, conv1, fc" in err
    resolved, _, _ = act_mod.resolve_act_config(
        act_config(tmp_path, see_dir, "ppo", mode="finetune", feature_layer="fc")
    )
    assert resolved.feature_layer == "" and "feature_layer" not in hash_dict(resolved)


def test_feature_head_cnn_reads_the_layer_as_a_map(
    see_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"feature_layer": "conv1", "feature_norm": "standardize", "feature_norm_frames": 64}
    mlp = act_config(tmp_path, see_dir, "ppo", **extra)
    cfg = act_config(tmp_path, see_dir, "ppo", feature_head="cnn", **extra)
    # the default head leaves finished stages' hashes alone; the cnn head is a new stage
    assert "feature_head" not in hash_dict(mlp) and hash_dict(cfg)["feature_head"] == "cnn"
    vision = darla.vision.load(see_dir)
    before = parameter_hash(vision)
    folder = run_act(cfg)
    assert load_yaml(folder / "config.yaml")["feature_head"] == "cnn"
    agent = load_agent(folder)
    extractor = agent.model.policy.features_extractor
    assert isinstance(extractor, FeatureMapCNN) and extractor.map_shape == (8, 8, 8)
    # the head sees conv1's map in its own layout (channels, height, width), standardised per unit
    obs = frames(12)
    x = vision.to_float(vision.as_batch(obs), vision.device)
    conv1 = torch.relu(vision.layer_output(x, "conv1"))
    with np.load(folder / "feature_stats.npz") as stats:
        mean, std = (torch.as_tensor(stats[k]).reshape(1, 8, 8, 8) for k in ("mean", "std"))
    with torch.no_grad():
        want = extractor.linear(extractor.convs((conv1 - mean) / std))
        got = extractor(torch.as_tensor(agent.vision.encode(obs)))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # the head is trained, the encoder before it is not
    fresh = FeatureMapCNN(extractor._observation_space, [8, 8, 8], features_dim=extractor.features_dim)
    assert parameter_hash(fresh) != parameter_hash(extractor)
    assert parameter_hash(darla.vision.load(see_dir)) == before
    # a reload acts like the policy on the same observations
    np.testing.assert_array_equal(load_agent(folder).predict(obs), agent.predict(obs))
    # transfer and the report say what the policy reads
    from darla.artifacts import ActArtifact
    from darla.pipelines.analysis.report_runs import _with_features, method_label

    described = ActArtifact.read(folder).describe()
    assert method_label(described) == "beta_vae/frozen@conv1+cnn/ppo"
    assert folder.parent.parent.name == "beta_vae@conv1+cnn" and described["act_name"] is None
    plain = {k: v for k, v in described.items() if k not in ("feature_layer", "feature_head", "act")}
    assert method_label(plain) == "beta_vae/frozen/ppo"
    renamed = {**described, "act_name": "b8"}
    assert method_label(renamed) == "beta_vae[b8]/frozen@conv1+cnn/ppo"  # `--name` still shows
    # results written before transfer recorded it get it from the act artifact

    older = {k: v for k, v in described.items() if k not in ("feature_layer", "feature_head")}
    assert method_label(_with_features(older)) == "beta_vae/frozen@conv1+cnn/ppo"
    # the cnn head needs a convolutional layer: none, or the fc vector, is a clear error
    for layer in ("", "fc"):
        with pytest.raises(ConfigError, match="conv layers"):
            act_mod.resolve_act_config(
                act_config(tmp_path, see_dir, "ppo", feature_head="cnn", feature_layer=layer)
            )
    err = _cli_error(["act", "--see", str(see_dir), "--out", str(tmp_path), "--feature-head", "rnn"], capsys)
    assert "rnn" in err and "mlp" in err and "cnn" in err
    # modes without frozen features drop it
    resolved, _, _ = act_mod.resolve_act_config(
        act_config(tmp_path, see_dir, "ppo", mode="pixels", feature_head="cnn")
    )
    assert resolved.feature_head == "mlp" and "feature_head" not in hash_dict(resolved)


def test_feature_map_cnn_refuses_a_map_that_does_not_fit() -> None:
    from gymnasium import spaces

    space = spaces.Box(-np.inf, np.inf, shape=(512,), dtype=np.float32)
    with pytest.raises(ConfigError, match="512 features cannot be a 8x8x4 map"):
        FeatureMapCNN(space, [8, 8, 4])
    with pytest.raises(ConfigError, match="channels, height, width"):
        FeatureMapCNN(space, [512])
