"""The worked plug-in example (examples/darla-plugin-example): pip installs it the way a user would,
darla's CLI finds its model and env family through entry points and runs them end to end, bad
plug-ins are refused by name, and its `Dots` family meets darla's env contract (step 1's checks).

The example is installed with `pip install --no-deps --target <tmp>` and made visible to darla
subprocesses with PYTHONPATH, so the test environment itself never changes.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from itertools import combinations
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from darla.envs.domains import check_splits
from darla.envs.frames import FrameDataset
from darla.errors import ConfigError, UnknownNameError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "darla-plugin-example"


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example built and installed by pip into a folder of its own (from a copy, so no build
    files land in the repository)."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = root / "site"
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(src)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site / "darla_plugin_example-0.1.0.dist-info" / "entry_points.txt").is_file()
    return site


def darla(args: list[str], *sites: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`darla <args>` in a fresh process that sees the plug-ins installed in `sites`."""
    paths = [*map(str, sites), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    argv = [sys.executable, "-m", "darla", *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def last_json(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def fake_plugin(site: Path, dist: str, module: str, source: str, group: str, entry: str) -> Path:
    """A one-module plug-in laid out as pip installs one: the module and a dist-info folder whose
    entry_points.txt is what importlib.metadata (and so darla) reads."""
    site.mkdir(parents=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    return site


@pytest.fixture(scope="module")
def dots() -> ModuleType:
    """The example's env module, imported straight from the examples folder (in this process the
    family is not registered with darla: the env needs no registry)."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        return importlib.import_module("darla_plugin_example.env")
    finally:
        sys.path.remove(str(EXAMPLE))


# ----------------------------------------------------------------------------- through darla's CLI
def test_darla_lists_shows_and_makes_the_plugin_family(plugin_site: Path, tmp_path: Path) -> None:
    listed = last_json(darla(["envs", "list", "--json"], plugin_site, cwd=tmp_path))["envs"]
    assert listed["Dots"] == {
        "id": "darla_plugin_example/Dots-v0",
        "source": ["navy_greenred", "navy_blueyellow", "tan_greenred"],
        "target": ["tan_blueyellow"],
        "ood": ["plum_greenred", "navy_cyanorange"],
    }
    assert "SeekAvoid" in listed  # darla's own families are still there
    text = darla(["envs", "list"], plugin_site, cwd=tmp_path).stdout
    assert "Dots  (darla_plugin_example/Dots-v0)" in text and "tan_blueyellow             target  1" in text
    # the test environment itself has no plug-in: only PYTHONPATH brought it in
    assert "Dots" not in last_json(darla(["envs", "list", "--json"], cwd=tmp_path))["envs"]

    shown = last_json(
        darla(
            ["envs", "show", "Dots", "--preset", "smoke", "--out", "grid.png", "--json"],
            plugin_site,
            cwd=tmp_path,
        )
    )
    assert shown["domains"] == [*listed["Dots"]["source"], *listed["Dots"]["target"], *listed["Dots"]["ood"]]
    assert (tmp_path / "grid.png").stat().st_size > 0

    script = (
        "import darla.envs, gymnasium\n"
        "env = gymnasium.make('darla_plugin_example/Dots-v0', domain='tan_blueyellow', size=32)\n"
        "obs, info = env.reset(seed=0)\n"
        "print(obs.shape, obs.dtype, info['domain'], type(env.unwrapped).__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(plugin_site)}
    made = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert made.stdout.strip() == "(32, 32, 3) uint8 tan_blueyellow DotsEnv", made.stderr[-2000:]


def test_smoke_run_trains_the_plugin_model_on_the_plugin_env(
    plugin_site: Path, dots: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    argv = ["run", "--env", "Dots", "--models", "sparse_ae", "--preset", "smoke", "--out", str(out)]
    result = last_json(darla([*argv, "--no-oracle", "--json"], plugin_site, cwd=tmp_path))

    assert {row["method"] for row in result["table"]} == {"sparse_ae/frozen/ppo", "pixels/ppo"}
    report = Path(result["report"]).read_text()
    assert "Env family **Dots**" in report and "| sparse_ae | goal_x |" in report
    stages = {(e["stage"], e["name"]): e["status"] for e in map(json.loads, (out / "run_log.jsonl").open())}
    assert stages == {
        ("see", "sparse_ae"): "ran",
        ("probe", "sparse_ae"): "ran",
        ("act", "pixels/ppo/s0"): "ran",
        ("act", "sparse_ae/frozen/ppo/s0"): "ran",
        ("transfer", "pixels/ppo/s0"): "ran",
        ("transfer", "sparse_ae/frozen/ppo/s0"): "ran",
    }
    # the see stage trained the plug-in's own loss on frames of the plug-in's source domains
    metrics = json.loads((out / "see" / "sparse_ae" / "metrics.json").read_text())
    assert metrics["env"] == "Dots" and tuple(metrics["domains"]) == dots.FAMILY.splits["source"]
    assert set(metrics["final_train_terms"]) == {"loss", "recon", "l1"}
    (frames_dir,) = (Path(os.environ["DARLA_CACHE"]) / "frames").glob("Dots-*")
    frames = FrameDataset.open(frames_dir)
    assert frames.image_shape == (48, 48, 3) and frames.factor_names[-2:] == ("bad_x", "bad_y")
    assert (np.asarray(frames.factors) >= 0).all()  # every collected frame is labelled
    # the probe read the family's own task factors, in every split
    probe = json.loads((out / "probe" / "sparse_ae" / "probe.json").read_text())
    assert set(probe["accuracy"]) == {"goal_x", "goal_y"}
    assert set(probe["split"].values()) == {"source", "target", "ood"}
    # transfer evaluated both policies zero-shot in every domain of the family
    for policy in ("pixels/ppo/s0", "sparse_ae/ppo/s0"):
        transfer = json.loads((out / "transfer" / policy / "results.json").read_text())
        assert transfer["env"] == "Dots" and list(transfer["domains"]) == list(probe["split"])


def test_a_plugin_reusing_a_darla_name_is_refused(plugin_site: Path, tmp_path: Path) -> None:
    source = (
        "from dataclasses import dataclass\n"
        "from darla.vision import ModelConfig, VisionModel\n\n"
        "@dataclass\nclass Config(ModelConfig):\n    pass\n\n"
        "class Mine(VisionModel):\n    name = 'beta_vae'\n    config_cls = Config\n\n"
        "    def loss(self, batch, step=0):\n        raise NotImplementedError\n"
    )
    clash = fake_plugin(
        tmp_path / "clash",
        "darla-clash",
        "clash_model",
        source,
        "darla.models",
        "beta_vae = clash_model:Mine",
    )
    argv = ["run", "--env", "Dots", "--models", "sparse_ae", "--preset", "smoke", "--out", "run"]
    done = darla(argv, plugin_site, clash, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "darla: error: model 'beta_vae' is already registered (by darla.vision.models.vae); plug-in "
        "beta_vae = clash_model:Mine (package darla-clash) registers it again: choose another name"
    )
    assert not (tmp_path / "run" / "see").exists()  # refused before any stage


@pytest.mark.parametrize(
    ("group", "entry", "argv", "message"),
    [
        (
            "darla.models",
            "fancy_net = fancy_model:Fancy",
            ["see", "--env", "SeekAvoid", "--model", "fancy_net", "--preset", "smoke", "--out", "run"],
            "model 'fancy_net' must be a subclass of darla.vision.VisionModel, got <class "
            "'fancy_model.Fancy'> (plug-in fancy_net = fancy_model:Fancy (package darla-bad))",
        ),
        (
            "darla.envs",
            "Dots2 = darla_plugin_example.env:DotsEnv",
            ["envs", "list"],
            "env 'Dots2' must be a darla.envs.EnvFamily instance, got the class "
            "darla_plugin_example.env.DotsEnv (plug-in Dots2 = darla_plugin_example.env:DotsEnv "
            "(package darla-bad))",
        ),
    ],
    ids=["model-not-a-VisionModel", "env-class-not-a-family"],
)
def test_a_plugin_that_misses_the_interface_is_refused_naming_itself(
    plugin_site: Path, tmp_path: Path, group: str, entry: str, argv: list[str], message: str
) -> None:
    source = "import torch\n\nclass Fancy(torch.nn.Module):\n    name = 'fancy_net'\n"
    bad = fake_plugin(tmp_path / "bad", "darla-bad", "fancy_model", source, group, entry)
    done = darla(argv, plugin_site, bad, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"darla: error: {message}"
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- the env contract
def test_check_env_in_every_domain(dots: ModuleType) -> None:
    for domain in dots.FAMILY.domain_names():
        env = dots.DotsEnv(domain=domain, size=32)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # checker complaints become failures
            check_env(env, skip_render_check=True)
        obs, info = env.reset(seed=0)
        assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8 and info["domain"] == domain
        assert env.unwrapped is env and env.domain is dots.FAMILY.domains[domain]
        assert env.step(0)[4]["domain"] == domain


def test_same_seed_same_frames_and_rewards(dots: ModuleType) -> None:
    def rollout(seed: int) -> tuple[np.ndarray, list[float]]:
        env = dots.FAMILY.make("navy_greenred", size=32, seed=seed, max_episode_steps=50)
        obs, _ = env.reset(seed=seed)
        frames, rewards = [obs], []
        rng = np.random.default_rng(seed)
        for _ in range(300):
            obs, reward, terminated, truncated, _ = env.step(int(rng.integers(4)))
            frames.append(obs)
            rewards.append(reward)
            if terminated or truncated:
                obs, _ = env.reset()
        return np.stack(frames), rewards

    f1, r1 = rollout(7)
    f2, r2 = rollout(7)
    f3, _ = rollout(8)
    assert np.array_equal(f1, f2) and r1 == r2
    assert not np.array_equal(f1, f3)
    assert max(r1) > 0.5 and min(r1) < -0.5  # even a random walk meets both dots


def test_goal_and_bad_dot_reward_then_respawn_and_episodes_truncate(dots: ModuleType) -> None:
    env = dots.FAMILY.make("navy_greenred", size=32, seed=0, max_episode_steps=3, shaping=0.0)
    env.reset(seed=0)
    raw = env.unwrapped
    raw.agent, raw.goal, raw.bad = np.array([3, 3]), np.array([4, 3]), np.array([3, 4])
    obs, reward, terminated, truncated, _ = env.step(dots.ACTIONS.index("right"))
    assert (reward, terminated, truncated) == (1.0, False, False)
    assert not np.array_equal(raw.goal, raw.agent) and np.array_equal(obs, raw.render_obs())
    raw.goal = np.array([5, 5])
    _, reward, *_ = env.step(dots.ACTIONS.index("left"))
    assert reward == 0.0
    _, reward, _, truncated, _ = env.step(dots.ACTIONS.index("down"))
    assert reward == -1.0 and truncated and not np.array_equal(raw.bad, raw.agent)
    with pytest.raises(ConfigError, match=r"invalid action 4; valid: 0..3"):
        raw.step(4)


def test_every_step_towards_the_goal_pays_the_shaping_reward(dots: ModuleType) -> None:
    env = dots.DotsEnv(size=32, seed=0)
    env.reset(seed=0)
    env.agent, env.goal, env.bad = np.array([0, 0]), np.array([3, 0]), np.array([5, 5])
    rewards = [env.step(dots.ACTIONS.index(a))[1] for a in ("right", "left", "down", "up", "up")]
    assert rewards == pytest.approx([0.1, -0.1, -0.1, 0.1, 0.0])  # the last "up" hits the edge: no move
    rewards = [env.step(dots.ACTIONS.index("right"))[1] for _ in range(3)]
    assert rewards == pytest.approx([0.1, 0.1, 1.1])  # the last step reaches the goal


def test_reset_switches_the_domain_like_a_fresh_env(dots: ModuleType) -> None:
    env = dots.DotsEnv(domain="navy_greenred", size=32, seed=0)
    switched, info = env.reset(seed=5, options={"domain": "navy_cyanorange"})
    fresh, _ = dots.DotsEnv(domain="navy_cyanorange", size=32, seed=0).reset(seed=5)
    assert np.array_equal(switched, fresh) and info["domain"] == "navy_cyanorange"


def test_splits_follow_darlas_recombine_rule(dots: ModuleType) -> None:
    fam = dots.FAMILY
    check_splits(fam.domains, fam.splits, "recombine")
    sources = [fam.domains[n] for n in fam.splits["source"]]
    seen = {f: {s.factors()[f] for s in sources} for f in sources[0].factors()}
    for name in fam.splits["target"]:
        target = fam.domains[name]
        assert target.combination() not in {s.combination() for s in sources}
        assert all(v in seen[f] for f, v in target.factors().items())  # a new combination of seen values
    for name in fam.splits["ood"]:
        assert any(v not in seen[f] for f, v in fam.domains[name].factors().items())  # a new colour
    assert {fam.domains[n].difficulty for n in fam.splits["source"]} == {0}
    assert all(fam.domains[n].difficulty > 0 for s in ("target", "ood") for n in fam.splits[s])
    with pytest.raises(ConfigError, match=r"'plum_greenred' shows .* that no source domain has"):
        check_splits(
            fam.domains,
            {**fam.splits, "target": ("tan_blueyellow", "plum_greenred"), "ood": ("navy_cyanorange",)},
        )


def test_source_and_target_pixels_differ(dots: ModuleType) -> None:
    """The same episode start in every domain: only the colours change, never the agent."""
    env = dots.DotsEnv(size=32, seed=0)
    frames = {d: env.reset(seed=1, options={"domain": d})[0] for d in dots.FAMILY.domain_names()}
    agent = np.all(frames["navy_greenred"] == dots.rgb(dots.AGENT_COLOR), axis=-1)
    assert agent.sum() > 0
    for a, b in combinations(frames, 2):
        assert not np.array_equal(frames[a], frames[b]), (a, b)
        assert np.array_equal(frames[a][agent], frames[b][agent])
    target = frames["tan_blueyellow"]
    for source in dots.FAMILY.splits["source"]:
        changed = np.any(frames[source] != target, axis=-1)
        assert changed.sum() > 0 and not (changed & agent).any()


def test_ground_truth_renders_what_its_factors_say(dots: ModuleType) -> None:
    gt = dots.FAMILY.ground_truth(48)
    assert gt.factor_names == (
        "background", "goal_color", "bad_color", "agent_x", "agent_y", "goal_x", "goal_y", "bad_x", "bad_y",
    )  # fmt: skip
    assert gt.factor_sizes == (3, 3, 3, 6, 6, 6, 6, 6, 6) and gt.num_factors == 9
    factors, frames = gt.sample(64, np.random.default_rng(0))
    assert frames.shape == (64, 48, 48, 3) and frames.dtype == np.uint8

    def pixel(frame: np.ndarray, cell: tuple[int, int]) -> tuple[int, ...]:
        return tuple(frame[cell[1] * 8 + 4, cell[0] * 8 + 4])  # 8 pixels per cell at 48 / 6

    for row, frame in zip(factors, frames):
        background, goal_color, bad_color = (gt.values(n)[row[i]] for i, n in enumerate(gt.factor_names[:3]))
        agent, goal, bad = (tuple(int(v) for v in row[i : i + 2]) for i in (3, 5, 7))
        assert pixel(frame, agent) == tuple(dots.rgb(dots.AGENT_COLOR))
        if goal != agent:
            assert pixel(frame, goal) == tuple(dots.rgb(goal_color))
        if bad not in (agent, goal):
            assert pixel(frame, bad) == tuple(dots.rgb(bad_color))
        empty = next((x, y) for x in range(6) for y in range(6) if (x, y) not in (agent, goal, bad))
        assert pixel(frame, empty) == tuple(dots.rgb(background))

    in_plum = gt.sample_factors_in_domain("plum_greenred", 16, np.random.default_rng(1))
    assert (in_plum[:, :3] == [gt.values("background").index(dots.PLUM), 0, 0]).all()
    assert len(np.unique(in_plum[:, 3:], axis=0)) > 1
    with pytest.raises(UnknownNameError, match=r"goal_z.*goal_x"):
        gt.values("goal_z")
    with pytest.raises(ConfigError, match="out of range"):
        gt.sample_observations_from_factors(np.full((1, 9), 6), np.random.default_rng(0))


def test_ground_truth_labels_redraw_the_env_frames_exactly(dots: ModuleType) -> None:
    gt = dots.FAMILY.ground_truth(48)
    env = dots.DotsEnv(domain="tan_blueyellow", size=48, seed=3)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(3)
    for _ in range(40):
        row = gt.label(env)
        assert (row >= 0).all()
        assert np.array_equal(gt.sample_observations_from_factors(row[None], rng)[0], obs)
        obs, *_ = env.step(int(rng.integers(4)))
    custom = dots.DotsEnv(domain={"name": "grey", "background": (0.5, 0.5, 0.5)}, size=48, seed=0)
    custom.reset(seed=0)
    assert gt.label(custom)[0] == -1 and (gt.label(custom)[1:] >= 0).all()  # an unseen colour is unknown


def test_mixed_collection_policy_seeks_the_goal(dots: ModuleType) -> None:
    fam = dots.FAMILY
    assert {"random", "mixed"} <= set(fam.collect_policies)

    def goals(policy_name: str) -> int:
        env = fam.make("navy_greenred", size=16, seed=0, max_episode_steps=50)
        raw = env.unwrapped  # what collection policies read (privileged state)
        policy, rng = fam.collect_policy(policy_name), np.random.default_rng(0)
        env.reset(seed=0)
        policy.reset(raw, rng)
        count = 0
        for _ in range(1000):
            _, reward, _, truncated, _ = env.step(policy.act(raw, rng))
            count += int(reward > 0.5)
            if truncated:
                env.reset()
                policy.reset(raw, rng)
        return count

    random_goals, mixed_goals, seek_goals = goals("random"), goals("mixed"), goals("seek")
    assert random_goals < mixed_goals < seek_goals, (random_goals, mixed_goals, seek_goals)


def test_bad_domains_and_params_are_clear_errors(dots: ModuleType) -> None:
    fam = dots.FAMILY
    with pytest.raises(UnknownNameError, match=r"did you mean 'tan_blueyellow'.*navy_greenred"):
        dots.DotsEnv(domain="tan_bluyellow")
    with pytest.raises(ConfigError, match=r"background, goal, bad and agent .* colours must all differ"):
        fam.domain({"name": "x", "goal_color": (0.9, 0.15, 0.15)})  # the bad dot's red
    with pytest.raises(ConfigError, match=r"background: expected 3 numbers in \[0, 1\]"):
        fam.domain({"name": "x", "background": (1.5, 0.0, 0.0)})
    with pytest.raises(ConfigError, match="grid must be an integer"):
        dots.DotsEnv(grid=2)
