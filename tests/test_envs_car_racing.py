"""darla.envs.car_racing: the CarRacing family (gymnasium's CarRacing-v3, LUSR's colour variants).

test_envs_core runs `check_env` and the seeded-determinism test on every registered family and
domain (CarRacing's included); the tests here check what is CarRacing's own. Tiny frames, few steps.
"""

from __future__ import annotations

import math
import warnings
from itertools import combinations

import numpy as np
import pytest
from gymnasium.envs.box2d.car_racing import PLAYFIELD, CarRacing
from gymnasium.utils.env_checker import check_env
from PIL import Image

import darla.envs as E
from darla.envs.car_racing import DOMAINS, SPLITS, CarDomain, CarRacingEnv
from darla.envs.car_racing_policies import DrivePolicy
from darla.envs.domains import check_splits
from darla.envs.policies import RandomPolicy
from darla.errors import ConfigError, UnknownNameError

FAMILY = E.get_family("CarRacing")
GREY = np.array([102, 102, 102])


def _near(frame: np.ndarray, rgb: tuple[float, float, float] | np.ndarray, tol: float = 6.0) -> np.ndarray:
    """Mask of the pixels within `tol` (per channel) of `rgb` (0-255)."""
    return (np.abs(frame.astype(float) - np.asarray(rgb, dtype=float)) <= tol).all(axis=-1)


def _rollout(
    env: CarRacingEnv, seed: int, steps: int, domain: str | None = None
) -> tuple[np.ndarray, list[float]]:
    options = {"domain": domain} if domain else None
    obs, _ = env.reset(seed=seed, options=options)
    rng = np.random.default_rng(seed)
    frames, rewards = [obs], []
    for a in rng.integers(5, size=steps):
        obs, reward, terminated, truncated, _ = env.step(int(a))
        frames.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.stack(frames), rewards


# ---------------------------------------------------------------------------- domains and splits
def test_splits_follow_the_held_out_rule() -> None:
    """Targets show colours the source never does (so `recombine` refuses the split), targets keep
    the road grey, ood recolours it and is the strongest shift."""
    assert FAMILY.split_rule == "held_out" and FAMILY.domain_cls is CarDomain
    check_splits(DOMAINS, SPLITS, "held_out")
    with pytest.raises(ConfigError, match="no source domain has"):
        check_splits(DOMAINS, SPLITS, "recombine")
    source = DOMAINS["default"]
    assert SPLITS["source"] == ("default",) and source.difficulty == 0
    for name in SPLITS["target"]:
        d = DOMAINS[name]
        assert d.road_color == source.road_color and d.factors()["grass"] != source.factors()["grass"]
    hardest_target = max(DOMAINS[n].difficulty for n in SPLITS["target"])
    for name in SPLITS["ood"]:
        assert DOMAINS[name].road_color != source.road_color
        assert DOMAINS[name].difficulty > hardest_target
    combos = [d.combination() for d in DOMAINS.values()]
    assert len(set(combos)) == len(combos)


def test_check_env_on_the_source_and_the_most_shifted_domain() -> None:
    for domain in ("default", "teal_slate"):
        env = FAMILY.make(domain, size=32).unwrapped
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            check_env(env, skip_render_check=True)
        assert env.unwrapped is env and env.observation_space.shape == (32, 32, 3)
        env.close()


def test_same_seed_same_tracks_frames_and_rewards() -> None:
    a = FAMILY.make("default", seed=3, size=32).unwrapped
    b = FAMILY.make("default", seed=3, size=32).unwrapped
    fa, ra = _rollout(a, 3, 40)
    fb, rb = _rollout(b, 3, 40)
    assert np.array_equal(fa, fb) and ra == rb
    fc, _ = _rollout(a, 4, 40)
    assert not np.array_equal(fa[:5], fc[:5])  # another seed, another track
    # the constructor's seed fixes the first episode when reset() names none
    c = FAMILY.make("default", seed=3, size=32).unwrapped
    first, _ = c.reset()
    assert np.array_equal(first, fa[0])


def test_domain_switch_at_reset_matches_a_fresh_env() -> None:
    env = FAMILY.make("default", seed=0, size=32).unwrapped
    switched, info = env.reset(seed=5, options={"domain": "peach"})
    assert info["domain"] == "peach" and env.domain is DOMAINS["peach"]
    fresh, _ = FAMILY.make("peach", seed=0, size=32).unwrapped.reset(seed=5)
    assert np.array_equal(switched, fresh)
    # the colours change, the world does not: same seed, same track in every domain
    track = list(env.sim.track)
    env.reset(seed=5, options={"domain": "sage"})
    assert list(env.sim.track) == track


def test_source_and_target_pixels_differ() -> None:
    """The same episodes (seed and actions) in every domain: only the colours differ."""
    env = FAMILY.make("default", seed=0, size=32).unwrapped
    stats, frames = {}, {}
    for name in FAMILY.domain_names():
        frames[name], _ = _rollout(env, 1, 12, domain=name)
        stats[name] = frames[name].reshape(-1, 3).astype(float).mean(axis=0)
    for a, b in combinations(stats, 2):
        assert np.abs(stats[a] - stats[b]).max() > 2.0, (a, b)
    # the road: grey in the source and every target, slate blue in ood, at the same pixels
    road = _near(frames["default"], GREY, 4)
    assert road.mean() > 0.05
    for name in SPLITS["target"]:
        assert _near(frames[name], GREY, 4)[road].mean() > 0.9, name
    for name in SPLITS["ood"]:
        slate = np.array(DOMAINS[name].road_color) * 255
        assert _near(frames[name], slate, 4)[road].mean() > 0.9, name


def test_observation_is_gymnasiums_view_cropped() -> None:
    """darla draws the frames itself (fast); they must match gymnasium's own rendering of the same
    state, cropped to the top 84 of 96 rows and resized to 64x64."""
    env = FAMILY.make("default", seed=0, size=64).unwrapped
    env.reset(seed=2)
    policy, rng = DrivePolicy(epsilon=0.0), np.random.default_rng(0)
    policy.reset(env, rng)
    diffs = []
    for _ in range(3):
        for _ in range(15):
            env.step(policy.act(env, rng))
        env.sim.t = 5.0  # past gymnasium's zoom-in animation (darla's view is always at full zoom)
        ref = CarRacing._render(env.sim, "state_pixels")[:84]
        ref = np.asarray(Image.fromarray(ref).resize((64, 64), Image.Resampling.BOX))
        diffs.append(np.abs(env.render_obs().astype(float) - ref).mean())
    assert max(diffs) < 5.0, diffs


# ---------------------------------------------------------------------------- task
def test_frame_skip_repeats_the_action_and_sums_rewards() -> None:
    one = FAMILY.make("default", seed=0, size=32, frame_skip=1).unwrapped
    four = FAMILY.make("default", seed=0, size=32, frame_skip=4).unwrapped
    one.reset(seed=9)
    four.reset(seed=9)
    actions = [3, 3, 2, 3, 1]  # gas, steer: the car moves and crosses tiles
    rewards_one = [one.step(a)[1] for a in actions for _ in range(4)]
    rewards_four = [four.step(a)[1] for a in actions]
    assert sum(rewards_four) == pytest.approx(sum(rewards_one))
    assert sum(rewards_four) > 0  # tiles were collected
    assert tuple(one.car.hull.position) == pytest.approx(tuple(four.car.hull.position))
    assert FAMILY.max_episode_steps == 250  # CarRacing-v3's 1000 frames at frame skip 4, via TimeLimit


def test_step_limit_truncates_and_leaving_the_playfield_ends_with_minus_100() -> None:
    env = FAMILY.make("default", seed=0, size=32, max_episode_steps=3)
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]
    env.reset(seed=0)
    env.unwrapped.car.hull.transform = ((PLAYFIELD + 5.0, 0.0), 0.0)
    _, reward, terminated, truncated, info = env.step(0)
    assert terminated and not truncated and reward == pytest.approx(-100.0)
    assert info["lap_finished"] is False and info["domain"] == "default"


def test_drive_policy_follows_the_track_and_random_does_not() -> None:
    env = FAMILY.make("default", seed=0, size=32).unwrapped
    returns = {}
    for name, policy in (("drive", DrivePolicy(epsilon=0.0)), ("random", RandomPolicy())):
        env.reset(seed=4)
        rng = np.random.default_rng(0)
        policy.reset(env, rng)
        returns[name] = sum(env.step(policy.act(env, rng))[1] for _ in range(80))
        assert env.in_view()
    # 80 steps of a random walk collect almost nothing; the driver collects a tile every step or so
    assert returns["drive"] > 100 and returns["random"] < 10, returns


def test_in_view_means_road_in_the_frame() -> None:
    env = FAMILY.make("default", seed=0, size=32).unwrapped
    obs, _ = env.reset(seed=0)
    assert env.in_view() and _near(obs, GREY, 4).mean() > 0.05
    centre = env.renderer.centre
    far = next(
        (x, y)
        for x in np.linspace(-PLAYFIELD + 60, PLAYFIELD - 60, 15)
        for y in np.linspace(-PLAYFIELD + 60, PLAYFIELD - 60, 15)
        if np.hypot(*(centre - (x, y)).T).min() > 80
    )
    env.car.hull.transform = (far, 0.0)
    assert not env.in_view() and _near(env.render_obs(), GREY, 4).mean() == 0.0


def test_mixed_collection_shows_road_in_most_frames(tmp_path) -> None:
    ds = E.collect_frames(
        "CarRacing", ["source"], 48, seed=0, size=32, policy="mixed", workers=1,
        cache_dir=tmp_path, episode_steps=40,
    )  # fmt: skip
    road = np.array([_near(f, GREY, 6).mean() for f in ds.frames])
    assert (road > 0.03).mean() > 0.9 and ds.meta["in_view_fraction"] > 0.9
    gt = FAMILY.ground_truth(32)
    assert ds.factor_names == gt.factor_names
    offset = ds.factors[:, gt.factor_names.index("offset")]
    assert (offset >= 0).mean() > 0.5  # most frames near the road are labelled


# ---------------------------------------------------------------------------- ground truth
def test_ground_truth_is_deterministic_and_honours_factors() -> None:
    gt = FAMILY.ground_truth(size=32)
    assert gt.factor_names == ("grass", "road", "car", "marks", "progress", "offset", "heading")
    factors = gt.sample_factors(5, np.random.default_rng(0))
    a = gt.sample_observations_from_factors(factors, np.random.default_rng(1))
    b = gt.sample_observations_from_factors(factors, np.random.default_rng(1))
    assert a.shape == (5, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    for name in gt.factor_names:
        k = gt.factor_names.index(name)
        changed = factors.copy()
        changed[:, k] = (changed[:, k] + 1) % gt.factor_sizes[k]
        c = gt.sample_observations_from_factors(changed, np.random.default_rng(1))
        assert all(not np.array_equal(x, y) for x, y in zip(a, c)), name
    with pytest.raises(ConfigError, match="shape"):
        gt.sample_observations_from_factors(factors[:, :-1], np.random.default_rng(0))
    with pytest.raises(ConfigError, match="out of range"):
        gt.sample_observations_from_factors(factors + 10, np.random.default_rng(0))
    gt.close()


def test_ground_truth_renders_what_its_factors_say() -> None:
    """Colours show where the factors put them, and the pose read back from the rendered scene
    is the pose the factors asked for."""
    gt = FAMILY.ground_truth(size=64)
    rng = np.random.default_rng(0)
    for domain in ("default", "peach", "teal_slate"):
        spec = DOMAINS[domain]
        for row in gt.sample_factors_in_domain(domain, 4, rng):
            frame = gt.sample_observations_from_factors(row[None], rng)[0]
            env = gt.renderer()
            pose = env.track_pose()
            na = len(gt.appearance)
            assert gt.values("offset")[row[na + 1]] == pytest.approx(pose.offset, abs=1e-3)
            assert gt.values("heading")[row[na + 2]] == pytest.approx(math.degrees(pose.heading), abs=1e-3)
            assert np.array_equal(gt.label(env)[na + 1 :], row[na + 1 :])
            car = np.array(spec.car_color) * 255
            bottom = frame[int(64 * 0.75) :, 16:48]  # the car sits at 3/4 of the height, centred
            assert _near(bottom, car, 12).sum() >= 2, (domain, row)
            assert _near(frame, np.array(spec.road_color) * 255, 4).mean() > 0.03, (domain, row)
            bars = frame[:, :3]
            assert (bars.max() < 10) == spec.side_bars, (domain, row)
    gt.close()


def test_ground_truth_labels_env_frames() -> None:
    gt = FAMILY.ground_truth(size=32)
    env = FAMILY.make("sky", seed=0, size=32).unwrapped
    env.reset(seed=0)
    row = gt.label(env)
    assert gt.values("grass")[row[0]] == DOMAINS["sky"].factors()["grass"]
    assert gt.values("car")[row[2]] == DOMAINS["sky"].car_color
    assert gt.values("marks")[row[3]] == (False, True)
    # the car starts on the centreline, aligned with the track; progress names the reference track only
    progress, offset, heading = row[4:]
    assert progress == -1 and gt.values("offset")[offset] == 0.0 and gt.values("heading")[heading] == 0.0
    env.place_car(10, 30.0, 0.0)  # far off the road: no offset bin applies
    assert gt.label(env)[5] == -1


def test_sample_factors_in_domain_fixes_the_look() -> None:
    gt = FAMILY.ground_truth(size=32)
    for row in gt.sample_factors_in_domain("teal", 6, np.random.default_rng(0)):
        drawn = gt.spec_for(row)
        assert drawn.combination() == DOMAINS["teal"].combination()
    with pytest.raises(UnknownNameError, match="teal"):
        gt.sample_factors_in_domain("teel", 2, np.random.default_rng(0))


# ---------------------------------------------------------------------------- errors
def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(UnknownNameError, match="teal_slate"):
        FAMILY.domain("teal_slat")
    with pytest.raises(ConfigError, match="road_color"):
        FAMILY.domain({"name": "x", "road_color": [1.5, 0.0, 0.0]})
    with pytest.raises(ConfigError, match="road_colour"):
        FAMILY.domain({"name": "x", "road_colour": [0.5, 0.0, 0.0]})
    with pytest.raises(ConfigError, match="frame_skip"):
        FAMILY.make("default", size=32, frame_skip=0)
    with pytest.raises(ConfigError):
        FAMILY.make("default", size=32, frame_skipp=2)
    with pytest.raises(UnknownNameError, match="drive"):
        FAMILY.collect_policy("driv")
    env = FAMILY.make("default", size=32).unwrapped
    with pytest.raises(ConfigError, match="reset"):
        env.speed()
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="invalid action"):
        env.step(5)


def test_custom_domain_makes_an_env() -> None:
    spec = FAMILY.domain({"name": "red_road", "road_color": [0.6, 0.2, 0.2], "side_bars": True})
    assert isinstance(spec, CarDomain) and spec.road_color == (0.6, 0.2, 0.2)
    env = FAMILY.make(spec.to_dict(), seed=0, size=32).unwrapped
    obs, info = env.reset(seed=0)
    assert info["domain"] == "red_road" and _near(obs, (153, 51, 51), 4).mean() > 0.03
    assert obs[:, :2].max() < 10  # the bars
