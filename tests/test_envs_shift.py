"""darla.envs shift suites: any env with RGB frames as a family `<base>@<suite>` (tiny frames).

No family is built at import time: test_envs_core parametrises over the registered families
(room families) when it is collected.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import darla.envs as E
from darla.cli import main
from darla.envs.shift import LEVEL_SPLITS, LEVELS, SUITES, ColourShift
from darla.envs.shift_ops import ColourOp, colour_affine
from darla.errors import ConfigError, UnknownNameError


# ---------------------------------------------------------------------------- test envs
class NoPixelsEnv(gymnasium.Env):
    """A vector observation and no rgb_array render mode: nothing a pixel shift could use."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        return np.zeros(4, dtype=np.float32), {}

    def step(self, action: Any) -> Any:
        return np.zeros(4, dtype=np.float32), 0.0, False, False, {}


class MaskedSquareEnv(gymnasium.Env):
    """A red square on a noisy grey background; it exposes its background mask."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.mask = np.ones((48, 48), dtype=np.float32)
        self.mask[16:32, 16:32] = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any) -> Any:
        return np.zeros(1, dtype=np.float32), 0.0, False, False, {}

    def render(self) -> np.ndarray:
        frame = self.np_random.integers(100, 140, size=(48, 48, 3)).astype(np.uint8)
        frame[16:32, 16:32] = (200, 20, 20)
        return frame

    def background_mask(self) -> np.ndarray:
        return self.mask


for _id, _cls in (("darla_test/NoPixels-v0", NoPixelsEnv), ("darla_test/MaskedSquare-v0", MaskedSquareEnv)):
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_cls, max_episode_steps=50)


def _rollout(family: str, domain: str, seed: int, steps: int = 25) -> np.ndarray:
    fam = E.get_family(family)
    env = fam.make(domain, seed=seed, size=32)
    obs, _ = env.reset(seed=seed)
    frames, rng = [obs], np.random.default_rng(seed)
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
            frames.append(obs)
    env.close()
    return np.stack(frames)


# ---------------------------------------------------------------------------- contract
@pytest.mark.parametrize(
    "family",
    ["CartPole-v1@colour", "CartPole-v1@distractors", "CartPole-v1@background", "SeekAvoid@distractors"],
)
def test_same_seed_same_frames(family: str) -> None:
    domain = E.get_family(family).splits["target"][0]
    a, b, c = _rollout(family, domain, 7), _rollout(family, domain, 7), _rollout(family, domain, 8)
    assert a.shape[1:] == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a[: len(c)], c[: len(a)])


@pytest.mark.parametrize(
    "family",
    [
        "CartPole-v1@colour",
        "CartPole-v1@distractors",
        "CartPole-v1@background",
        "SeekAvoid@colour",
        "MiniWorld-OneRoom-v0@distractors",
        "darla_test/MaskedSquare-v0@background",
    ],
)
def test_check_env_passes_on_shifted_envs(family: str) -> None:
    fam = E.get_family(family)
    domain = fam.splits["ood"][0]
    env = gymnasium.make(fam.gym_id, domain=domain, size=32)
    assert env.unwrapped.__class__.__name__ == "ShiftEnv" and env.unwrapped.base_env is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # checker complaints become failures
        check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8 and info["domain"] == domain
    assert info["domain"] == env.step(0)[4]["domain"]
    env.close()


@pytest.mark.parametrize("family", ["CartPole-v1@colour", "SeekAvoid@colour", "SeekAvoid@distractors"])
def test_splits_follow_the_held_out_rule(family: str) -> None:
    fam = E.get_family(family)
    assert fam.split_rule == "held_out" and fam.name == family
    assert len(fam.domains) <= 12
    levels = {split: {LEVELS[fam.domains[d].level] for d in fam.splits[split]} for split in fam.splits}
    assert levels == {split: set(names) for split, names in LEVEL_SPLITS.items()}
    assert all(fam.domains[d].difficulty == 0 for d in fam.splits["source"])
    hardest_target = max(fam.domains[d].difficulty for d in fam.splits["target"])
    assert all(fam.domains[d].difficulty > hardest_target for d in fam.splits["ood"])
    if family.startswith("SeekAvoid"):  # the shift sits on the base's sources, every one of them seen
        base = E.get_family("SeekAvoid")
        used = {fam.domains[d].base_domain for d in fam.domain_names()}
        assert used <= set(base.splits["source"])
        assert {fam.domains[d].base_domain for d in fam.splits["source"]} == set(base.splits["source"])


@pytest.mark.parametrize("family", ["CartPole-v1@colour", "SeekAvoid@distractors"])
def test_source_and_target_pixels_differ(family: str) -> None:
    fam = E.get_family(family)
    mean = {d: _rollout(family, d, 3, steps=10).reshape(-1, 3).mean(axis=0) for d in fam.domain_names()}
    for source in fam.splits["source"]:
        for held in (*fam.splits["target"], *fam.splits["ood"]):
            assert np.abs(mean[source] - mean[held]).max() > 1.0, (source, held)


def _base_frames(family: str, n: int = 24) -> tuple[Any, np.ndarray]:
    env = E.get_family(family).make(E.get_family(family).splits["source"][0], seed=0, size=32).unwrapped
    rng = np.random.default_rng(0)
    domain = env.domain.base_domain
    return env, np.stack([env.random_base_frame(rng, domain)[0] for _ in range(n)])


@pytest.mark.parametrize(
    ("family", "suite"),
    [("CartPole-v1", "colour"), ("CartPole-v1", "distractors"), ("CartPole-v1", "background"),
     ("SeekAvoid", "colour"), ("SeekAvoid", "distractors")],
)  # fmt: skip
def test_levels_are_ordered_by_distance_from_the_source(family: str, suite: str) -> None:
    """The mean absolute pixel change from the unshifted frames grows with the level."""
    env, frames = _base_frames(f"{family}@{suite}")
    distance = []
    for level in LEVELS:
        op = SUITES.get(suite).spec(level, level).make_op(32, env.keyer)
        changes = []
        for episode in range(4):  # random shapes, colours and textures: average a few episodes
            op.reset(np.random.default_rng(episode), len(frames))
            changes.append(np.abs(op.apply(frames).astype(float) - frames).mean())
        distance.append(float(np.mean(changes)))
    env.close()
    assert distance[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(distance)), dict(zip(LEVELS, distance))


def test_colour_op_is_vectorised_over_a_batch() -> None:
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 3)).astype(np.uint8)
    op = ColourOp(*colour_affine(90.0, 1.5, 0.9, 1.2, 0.3, (1.0, 0.8, 0.9)))
    batch = op.apply(frames)
    assert np.array_equal(batch, np.stack([op.apply(f[None])[0] for f in frames]))
    grey = np.full((1, 2, 2, 3), 77, dtype=np.uint8)  # a hue rotation leaves greys grey
    assert np.ptp(ColourOp(*colour_affine(120.0, 1.0, 1.0, 1.0, 0.0, (1, 1, 1))).apply(grey)) <= 1


def test_background_from_an_env_mask_changes_only_the_background() -> None:
    fam = E.get_family("darla_test/MaskedSquare-v0@background")
    clean = fam.make("clean", seed=0, size=24).reset(seed=4)[0]
    shifted = fam.make("extreme", seed=0, size=24).reset(seed=4)[0]
    centre = slice(9, 15)  # inside the square (16:32 of 48 -> 8:16 of 24, edges blended)
    assert np.array_equal(clean[centre, centre], shifted[centre, centre])
    assert np.abs(clean[:6].astype(int) - shifted[:6]).mean() > 20


def test_background_keyed_by_colour_leaves_what_the_env_draws() -> None:
    """CartPole draws on white: the texture replaces the white, never the cart (black)."""
    fam = E.get_family("CartPole-v1@background")
    clean = fam.make("clean", seed=0, size=48).reset(seed=2)[0].astype(int)
    shifted = fam.make("extreme", seed=0, size=48).reset(seed=2)[0].astype(int)
    cart = clean.max(axis=-1) < 30
    white = clean.min(axis=-1) > 250
    assert cart.sum() > 5 and white.mean() > 0.8
    assert np.array_equal(clean[cart], shifted[cart])
    assert np.abs(clean[white] - shifted[white]).mean() > 40


# ---------------------------------------------------------------------------- errors
def test_unknown_suites_levels_and_envs_list_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"did you mean 'colour'.*background, colour, distractors"):
        E.get_family("CartPole-v1@colr")
    fam = E.get_family("CartPole-v1@colour")
    with pytest.raises(UnknownNameError, match=r"strong"):
        fam.domain("stronk")
    with pytest.raises(UnknownNameError, match=r"clean, mild, moderate, strong, severe, extreme"):
        SUITES.get("colour").spec("hard", "hard")
    with pytest.raises(UnknownNameError, match=r"CartPol-v1.*SeekAvoid.*close Gymnasium id: 'CartPole-v1'"):
        E.get_family("CartPol-v1@colour")
    with pytest.raises(ConfigError, match="do not stack"):
        E.get_family("CartPole-v1@colour@distractors")
    with pytest.raises(ConfigError, match=r"hue must be in"):
        fam.domain({"name": "x", "hue": 720.0})
    custom = fam.domain({"name": "x", "hue": 45.0})
    assert isinstance(custom, ColourShift) and custom.hue == 45.0


def test_envs_without_rgb_frames_or_discrete_actions_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"NoPixels-v0 gives no RGB frames.*rgb_array"):
        E.get_family("darla_test/NoPixels-v0@colour")
    with pytest.raises(ConfigError, match=r"Pendulum-v1 has a Box action space.*discrete variant"):
        E.get_family("Pendulum-v1@colour")


@pytest.mark.parametrize("base", ["SeekAvoid", "MiniWorld-OneRoom-v0"])
def test_background_on_an_env_that_cannot_key_it_is_refused(base: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"{base} cannot key its background.*CartPole-v1.*colour, distractors"
    ):
        E.get_family(f"{base}@background")
    assert f"{base}@background" not in E.FAMILIES


# ---------------------------------------------------------------------------- bases
def test_miniworld_task_under_a_colour_shift() -> None:
    fam = E.get_family("MiniWorld-OneRoom-v0@colour")
    assert fam.domain_names() == LEVELS and fam.gym_id in gymnasium.registry
    clean, extreme = _rollout(fam.name, "clean", 1, 5), _rollout(fam.name, "extreme", 1, 5)
    assert clean.shape == extreme.shape and clean.shape[1:] == (32, 32, 3)
    assert clean.std() > 5 and np.abs(clean.astype(float) - extreme).mean() > 10


def test_darla_base_by_gym_id_is_the_same_family() -> None:
    assert E.get_family("darla/SeekAvoid-v0@colour") is E.get_family("SeekAvoid@colour")


def test_ground_truth_is_deterministic_and_honours_factors() -> None:
    fam = E.get_family("CartPole-v1@colour")
    gt = fam.ground_truth(32)
    assert isinstance(gt, E.GroundTruth) and min(gt.factor_sizes) > 1
    assert set(gt.factor_names) == {"hue", "saturation", "brightness", "contrast", "mix", "tint"}
    factors = gt.sample_factors(6, np.random.default_rng(0))
    a = gt.sample_observations_from_factors(factors, np.random.default_rng(1))
    assert a.shape == (6, 32, 32, 3) and np.array_equal(
        a, gt.sample_observations_from_factors(factors, np.random.default_rng(1))
    )
    for name in ("hue", "tint", "brightness"):
        k = gt.factor_names.index(name)
        changed = factors.copy()
        changed[:, k] = (changed[:, k] + 1) % gt.factor_sizes[k]
        c = gt.sample_observations_from_factors(changed, np.random.default_rng(1))
        assert all(not np.array_equal(x, y) for x, y in zip(a, c)), name
    env = fam.make("severe", seed=0, size=32).unwrapped
    env.reset(seed=0)
    row = gt.label(env)
    assert [gt.values(n)[i] for n, i in zip(gt.factor_names, row)] == [
        getattr(env.domain, n) for n in gt.factor_names
    ]
    rows = gt.sample_factors_in_domain("strong", 3, np.random.default_rng(0))
    assert all(gt.spec_for(r).hue == fam.domains["strong"].hue for r in rows)
    with pytest.raises(ConfigError, match="shape"):
        gt.sample_observations_from_factors(factors[:, :-1], np.random.default_rng(0))
    gt.close()


def test_distractor_ground_truth_counts_shapes_over_a_darla_base() -> None:
    gt = E.get_family("SeekAvoid@distractors").ground_truth(32)
    assert gt.factor_names == ("count", "radius", "base_domain")
    rows = np.array([[0, 0, 0], [gt.values("count").index(6), gt.values("radius").index(0.16), 0]])
    clean, crowded = gt.sample_observations_from_factors(rows, np.random.default_rng(0))
    # count 6, radius 0.16: at least a quarter of the frame is saturated shapes
    assert (
        np.mean(np.ptp(crowded.astype(int), axis=-1) > 150)
        > np.mean(np.ptp(clean.astype(int), axis=-1) > 150) + 0.2
    )
    gt.close()


def test_collect_frames_from_a_shifted_gym_env() -> None:
    # the call as a user writes it (conftest points the default cache at a temporary folder)
    ds = E.collect_frames("CartPole-v1@colour", "source", 64, seed=0, size=32, workers=1)
    assert len(ds) == 64 and ds.frames.shape == (64, 32, 32, 3)
    assert ds.domain_names == LEVEL_SPLITS["source"] and (ds.factors >= 0).all()
    means = [ds.frames[ds.domain_ids == d].reshape(-1, 3).mean(axis=0) for d in range(3)]
    assert np.abs(means[0] - means[2]).max() > 3  # clean vs moderate


def test_a_worker_that_only_knows_the_name_rebuilds_the_family(tmp_path: Path) -> None:
    kwargs = {"seed": 0, "size": 32, "policy": "mixed"}
    one = E.collect_frames(
        "CartPole-v1@distractors", ["source"], 60, workers=1, cache_dir=tmp_path / "a", **kwargs
    )
    two = E.collect_frames(
        "CartPole-v1@distractors", ["source"], 60, workers=2, cache_dir=tmp_path / "b", **kwargs
    )
    assert two.meta["workers"] == 2 and np.array_equal(one.frames, two.frames)


# ---------------------------------------------------------------------------- CLI and stages
def test_cli_envs_show_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    out = tmp_path / "grid.png"
    argv = ["envs", "show", "CartPole-v1", "--shift", "distractors", "--out", str(out)]
    assert main([*argv, "--frames", "2", "--size", "32", "--scale", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["env"] == "CartPole-v1@distractors" and result["domains"] == list(LEVELS)
    assert np.asarray(Image.open(out)).shape[0] == len(LEVELS) * (32 + 2)
    assert main(["envs", "list"]) == 0
    text = capsys.readouterr().out
    assert "Shift suites" in text and "distractors" in text and "background" in text


def test_cli_bench_shift_reports_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "shift", "--envs", "CartPole-v1", "SeekAvoid", "--suites", "colour", "background"]
    assert main([*argv, "--steps", "20", "--repeats", "1", "--batch", "4", "--size", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["results"]) == {"CartPole-v1@colour", "CartPole-v1@background", "SeekAvoid@colour"}
    assert "SeekAvoid@background" in result["skipped"] and result["ratio"] > 0
    assert result["results"]["CartPole-v1@colour"]["native_ratio"] > 0
    assert result["results"]["CartPole-v1@colour"]["shift_us_per_frame"] > 0 and result["op_ratio"] > 0


def test_act_and_transfer_on_a_shifted_gym_env(tmp_path: Path) -> None:
    """Pixels PPO on CartPole-v1@colour's sources, then zero-shot on its targets and ood."""
    act = [
        "act", "--env", "CartPole-v1@colour", "--mode", "pixels", "--algo", "ppo", "--timesteps", "256",
        "--n-envs", "2", "--eval-freq", "0", "--checkpoint-freq", "0", "--size", "36", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(act) == 0
    folder = next(tmp_path.glob("act/*/ppo/s0"))
    # a fresh process knows only the family's name (as stage workers do)
    code = f"from darla.cli import main; raise SystemExit(main(['transfer', '--act', {str(folder)!r}, '--episodes', '2', '--n-envs', '1']))"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=600)
    results = json.loads(next(tmp_path.glob("transfer/**/results.json")).read_text())
    text = json.dumps(results)
    assert all(level in text for level in LEVELS)


def test_a_process_that_rendered_cartpole_still_dies_on_sigterm() -> None:
    """SDL (pygame) turns SIGTERM into a quit event unless told not to; darla.envs tells it."""
    code = (
        "import os, signal, time, darla.envs as E\n"
        "env = E.get_family('CartPole-v1@colour').make('mild', size=16); env.reset(seed=0); env.step(0)\n"
        "os.kill(os.getpid(), signal.SIGTERM); time.sleep(5); print('survived')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == -15 and "survived" not in result.stdout


@pytest.mark.parametrize("env", ["CartPole-v1", "MiniWorld-OneRoom-v0"])
def test_darla_run_smoke_on_a_shifted_env(tmp_path: Path, env: str) -> None:
    """The issue's command, as a user runs it: a classic-control env rendered to pixels and a
    MiniWorld task, each under the colour suite, through see -> act -> transfer -> report."""
    out = tmp_path / "run"
    assert main(["run", "--env", env, "--shift", "colour", "--preset", "smoke", "--out", str(out)]) == 0
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert set(summary["methods"]) == {"beta_vae_dae/frozen/ppo", "pixels/ppo"}
    rows = (out / "report" / "results.csv").read_text().splitlines()[1:]
    assert {row.split(",")[5] for row in rows} == set(LEVELS)  # every level of the suite evaluated
    assert {row.split(",")[6] for row in rows} == {"source", "target", "ood"}
