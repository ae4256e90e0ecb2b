"""Reaching (MuJoCo arm): determinism, checker, DARLA split, appearance in place, ground truth,
policies, frame collection and a missing GL backend (tiny frames, few steps)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import darla.envs as E
from darla.envs.domains import check_splits
from darla.envs.reaching import ReachingEnv
from darla.envs.reaching_domains import DOMAINS, SPLITS, ReachDomain, Surface
from darla.envs.reaching_gl import GL_LIBRARIES, _loadable
from darla.envs.reaching_model import ELBOW_RANGE, REACH
from darla.envs.reaching_policies import ReachPolicy, inverse_kinematics
from darla.envs.reaching_truth import POSE_GRIDS
from darla.errors import ConfigError, UnknownNameError

FAMILY = E.get_family("Reaching")
SOURCE = SPLITS["source"][0]


@pytest.fixture(scope="module")
def env() -> ReachingEnv:
    made = FAMILY.make(SOURCE, seed=0, size=32).unwrapped
    yield made
    made.close()


@pytest.fixture(scope="module")
def gt():  # type: ignore[no-untyped-def]
    truth = FAMILY.ground_truth(size=32)
    yield truth
    truth.close()


def _rollout(seed: int, domain: str = SOURCE) -> tuple[np.ndarray, list[float]]:
    env = FAMILY.make(domain, seed=seed, size=32)
    obs, _ = env.reset(seed=seed)
    frames, rewards = [obs], []
    rng = np.random.default_rng(seed)
    for _ in range(60):  # crosses one episode end (50 steps)
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(frames), rewards


def test_same_seed_same_frames_and_rewards() -> None:
    f1, r1 = _rollout(7)
    f2, r2 = _rollout(7)
    f3, _ = _rollout(8)
    assert np.array_equal(f1, f2) and r1 == r2
    assert not np.array_equal(f1, f3)


def test_gymnasium_checker_and_registered_id() -> None:
    env = gymnasium.make("darla/Reaching-v0", domain="tiles_yellow", size=32)
    assert isinstance(env.unwrapped, ReachingEnv)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8 and info["domain"] == "tiles_yellow"
    env.close()


def test_episode_is_50_steps_and_bad_inputs_are_clear(env: ReachingEnv) -> None:
    limited = FAMILY.make(SOURCE, seed=0, size=32)  # the limit is Gymnasium's TimeLimit (the family's)
    limited.reset(seed=0)
    flags = [limited.step(0)[3] for _ in range(50)]
    assert flags == [False] * 49 + [True] and FAMILY.max_episode_steps == 50
    assert gymnasium.spec("darla/Reaching-v0").max_episode_steps == 50
    limited.close()
    with pytest.raises(ConfigError, match=r"invalid action 9; valid: 0\.\.4"):
        env.step(9)
    with pytest.raises(UnknownNameError, match="tiles_yellow"):
        env.reset(options={"domain": "tiles_yelow"})
    with pytest.raises(UnknownNameError, match="cartesian, axes, grid"):
        FAMILY.make(SOURCE, size=32, actions="diagonal")
    with pytest.raises(ConfigError, match="pattern"):
        FAMILY.make({"name": "x", "table": {"pattern": "zebra"}}, size=32)


def test_split_is_darla_recombination() -> None:
    source = [DOMAINS[n] for n in SPLITS["source"]]
    seen: dict[str, set[object]] = {}
    for d in source:
        for factor, value in d.factors().items():
            seen.setdefault(factor, set()).add(value)
    combos = {d.combination() for d in source}
    for name in SPLITS["target"]:  # held-out combinations of seen values, graded difficulty
        d = DOMAINS[name]
        assert d.combination() not in combos and d.difficulty > 0
        assert all(v in seen[f] for f, v in d.factors().items()), name
    assert [DOMAINS[n].difficulty for n in SPLITS["target"]] == [1, 2, 3]
    for name in SPLITS["ood"]:  # something no source shows
        assert any(v not in seen[f] for f, v in DOMAINS[name].factors().items()), name
    assert any(DOMAINS[n].distractors for n in SPLITS["ood"])
    assert all(d.difficulty == 0 for d in source)
    check_splits(DOMAINS, SPLITS, "recombine")
    with pytest.raises(ConfigError, match="no source domain has"):
        moved = {**SPLITS, "target": (*SPLITS["target"], "metal_blue"), "ood": SPLITS["ood"][::2]}
        check_splits(DOMAINS, moved)


def test_colour_sets_are_balanced() -> None:
    """Arm and target always differ in colour; within the sources each colour set and each scene
    appears with both values of the other factor (DARLA's 2x2 minus the held-out cell)."""
    for d in DOMAINS.values():
        assert d.arm_color != d.target_color
    cells = {(DOMAINS[n].table, DOMAINS[n].arm_color) for n in SPLITS["source"]}
    target = DOMAINS[SPLITS["target"][0]]
    assert len(cells) == 3 and (target.table, target.arm_color) not in cells


def test_domain_switch_is_in_place_and_changes_pixels(env: ReachingEnv) -> None:
    model = env.scene.model
    source, _ = env.reset(seed=3, options={"domain": SOURCE})
    target, info = env.reset(seed=3, options={"domain": "tiles_yellow"})
    assert env.scene.model is model and info["domain"] == "tiles_yellow"
    assert np.abs(source.astype(int) - target.astype(int)).mean() > 20
    fresh_env = FAMILY.make("tiles_yellow", seed=0, size=32)
    fresh, _ = fresh_env.reset(seed=3)
    fresh_env.close()
    assert np.array_equal(fresh, target)  # switching at reset == a fresh env in that domain
    again, _ = env.reset(seed=3, options={"domain": SOURCE})
    assert np.array_equal(again, source)  # textures re-uploaded, nothing left over


def test_every_domain_looks_different(env: ReachingEnv) -> None:
    frames = {}
    for name in FAMILY.domain_names():
        frames[name], _ = env.reset(seed=1, options={"domain": name})  # same pose in every domain
    names = list(frames)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            changed = (np.abs(frames[a].astype(int) - frames[b].astype(int)) > 30).any(axis=-1)
            assert changed.sum() >= 5, (a, b)


def _pose(env: ReachingEnv, target_offset: tuple[float, float]) -> None:
    """Arm at (shoulder 0, elbow 1 rad), the ball `target_offset` (m) from the fingertip."""
    env.reset(seed=0)
    env.scene.set_state(np.array([0.0, 1.0]), np.zeros(2))
    env.scene.set_state(np.array([0.0, 1.0]), env.fingertip + np.array(target_offset))


def test_reward_pays_the_reach_bonus_and_progress_only(env: ReachingEnv) -> None:
    _pose(env, (0.0, 0.0))  # fingertip on the ball
    _, reward, _, _, info = env.step(0)  # no-op: the arm stays, no progress
    assert info["reached"] and reward == pytest.approx(1.0, abs=1e-6)
    _pose(env, (-0.2, 0.0))
    _, reward, _, _, info = env.step(0)
    assert not info["reached"] and reward == pytest.approx(0.0, abs=1e-6)


def test_progress_term_credits_moving_towards_the_target(env: ReachingEnv) -> None:
    """Cartesian actions: away (+y) towards a ball further away earns, towards the camera pays."""
    rewards = {}
    for action in (3, 4):  # fingertip +y, -y
        _pose(env, (0.0, 0.12))
        before, start = env.scene.distance(), env.fingertip
        _, rewards[action], _, _, info = env.step(action)
        moved = env.fingertip - start
        assert abs(moved[1]) > 0.01 and abs(moved[0]) < 0.5 * abs(moved[1])  # along y
        assert rewards[action] == pytest.approx(5.0 * (before - info["distance"]) / REACH)
    assert rewards[3] > 0.2 and rewards[4] < -0.2


def test_cartesian_action_slides_along_the_edge_of_reach(env: ReachingEnv) -> None:
    """Stretched out (elbow at its limit), a partly outward command still moves the fingertip,
    along the edge, instead of stalling against the joint limit."""
    env.reset(seed=0)
    env.scene.set_state(np.array([2.38, ELBOW_RANGE[0]]), np.zeros(2))  # pointing up-left
    start = env.fingertip
    for _ in range(3):
        env.step(3)  # +y: partly out of reach
    assert np.linalg.norm(env.fingertip - start) > 0.03
    assert env.joint_angles[1] > ELBOW_RANGE[0] - 0.05


def test_reacher_reward_is_negative_distance(env: ReachingEnv) -> None:
    reacher = FAMILY.make(SOURCE, seed=0, size=32, distance_weight=1.0, progress_weight=0.0)
    reacher.reset(seed=0)
    _, reward, _, _, info = reacher.step(3)
    assert reward == pytest.approx(-info["distance"] / REACH) and not info["reached"]
    reacher.close()


@pytest.mark.parametrize("actions", ["cartesian", "axes"])
def test_scripted_reach_beats_random(actions: str) -> None:
    env = FAMILY.make(SOURCE, seed=0, size=32, actions=actions).unwrapped

    def mean_return(policy: object) -> float:
        rng, total = np.random.default_rng(0), 0.0
        for ep in range(3):
            env.reset(seed=100 + ep)
            policy.reset(env, rng)  # type: ignore[attr-defined]
            total += sum(env.step(policy.act(env, rng))[1] for _ in range(50))  # type: ignore[attr-defined]
        return total / 3

    reach, rand = mean_return(ReachPolicy(epsilon=0.0)), mean_return(FAMILY.collect_policy("random"))
    env.close()
    assert reach > 25 and rand < 5  # measured over 30 episodes: about 41 and 0.4-0.9


def test_inverse_kinematics_puts_the_fingertip_on_the_target(env: ReachingEnv) -> None:
    env.reset(seed=0)
    for target in ([0.15, 0.1], [-0.1, -0.2], [0.0, 0.26]):
        q = inverse_kinematics(np.array(target), np.array([3.0, 0.5]))
        env.scene.set_state(q, np.array(target))
        assert env.scene.distance() < 1e-6 and ELBOW_RANGE[0] <= q[1] <= ELBOW_RANGE[1]


# ---------------------------------------------------------------------------- ground truth
def test_ground_truth_factors_and_determinism(gt) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(gt, E.GroundTruth)
    assert gt.factor_names[-4:] == tuple(POSE_GRIDS)
    assert {"table", "floor", "arm_color", "target_color", "light", "distractors"} <= set(gt.factor_names)
    assert min(gt.factor_sizes) > 1
    factors = gt.sample_factors(5, np.random.default_rng(0))
    a = gt.sample_observations_from_factors(factors, np.random.default_rng(1))
    b = gt.sample_observations_from_factors(factors, np.random.default_rng(1))
    assert a.shape == (5, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    for name in gt.factor_names:  # every factor changes the picture
        k = gt.factor_names.index(name)
        changed = factors.copy()
        changed[:, k] = (changed[:, k] + 1) % gt.factor_sizes[k]
        c = gt.sample_observations_from_factors(changed, np.random.default_rng(1))
        assert all(not np.array_equal(x, y) for x, y in zip(a, c)), name
    with pytest.raises(ConfigError, match="shape"):
        gt.sample_observations_from_factors(factors[:, :-1], np.random.default_rng(0))


def _row(gt, **values: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A factor row in the first domain's appearance (blue arm, red target), pose from `values`."""
    row = gt.sample_factors_in_domain(SOURCE, 1, np.random.default_rng(0))[0]
    for name, index in {"shoulder": 4, "elbow": 4, "target_x": 3, "target_y": 3, **values}.items():
        row[gt.factor_names.index(name)] = index
    return row


def _red_centroid(frame: np.ndarray) -> np.ndarray:
    """(column, row) of the red target's pixels."""
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    rows, cols = np.nonzero((r > 150) & (r > 2.5 * g) & (r > 2.5 * b))
    assert len(rows) > 0
    return np.array([cols.mean(), rows.mean()])


def test_ground_truth_target_factors_move_the_target_in_the_image(gt) -> None:  # type: ignore[no-untyped-def]
    rows = np.stack([_row(gt, target_x=0, shoulder=12), _row(gt, target_x=7, shoulder=12)])
    rows = np.concatenate(
        [rows, np.stack([_row(gt, target_y=1, shoulder=0), _row(gt, target_y=7, shoulder=0)])]
    )
    frames = gt.sample_observations_from_factors(rows, np.random.default_rng(0))
    left, right, near, far = (_red_centroid(f) for f in frames)
    assert right[0] - left[0] > 8  # +x is to the right in the image
    assert near[1] - far[1] > 5  # +y is further away: higher up in the image


def test_ground_truth_colour_factor_changes_the_arm_colour(gt) -> None:  # type: ignore[no-untyped-def]
    k = gt.factor_names.index("arm_color")
    base = _row(gt)
    other = base.copy()
    other[k] = gt.values("arm_color").index((0.95, 0.8, 0.15))  # yellow
    blue, yellow = gt.sample_observations_from_factors(np.stack([base, other]), np.random.default_rng(0))
    changed = (np.abs(blue.astype(int) - yellow.astype(int)) > 40).any(axis=-1)  # the arm's pixels
    assert changed.sum() > 10
    b_r, b_b = (blue[changed][:, i].astype(int) for i in (0, 2))
    y_r, y_g, y_b = (yellow[changed][:, i].astype(int) for i in range(3))
    assert (b_b > b_r).mean() > 0.9 and ((y_r > y_b) & (y_g > y_b)).mean() > 0.9


def test_label_reads_the_env_and_renders_back_the_same_frame(env, gt) -> None:  # type: ignore[no-untyped-def]
    env.reset(seed=0, options={"domain": "tiles_yellow"})
    row = gt.sample_factors_in_domain("tiles_yellow", 1, np.random.default_rng(3))[0]
    na = len(gt.appearance)
    pose = [POSE_GRIDS[n][int(i)] for n, i in zip(POSE_GRIDS, row[na:])]
    env.scene.set_state(np.array(pose[:2]), np.array(pose[2:]))
    assert np.array_equal(gt.label(env), row)
    frame = gt.sample_observations_from_factors(row[None], np.random.default_rng(0))[0]
    assert np.array_equal(frame, env.scene.render())
    env.scene.set_state(np.array([0.0, 0.0]), np.array([0.4, 0.4]))  # off the grid: unknown
    assert (gt.label(env)[na + 2 :] == -1).all()


def test_custom_domain_out_of_the_factor_grid_is_labelled_unknown(gt) -> None:  # type: ignore[no-untyped-def]
    custom = ReachDomain("custom", table=Surface("plain", (0.2, 0.2, 0.2), (0.2, 0.2, 0.2)))
    env = FAMILY.make(custom, seed=0, size=32)
    env.reset(seed=0)
    label = gt.label(env)
    assert label[gt.factor_names.index("table")] == -1 and label[gt.factor_names.index("floor")] == 0
    env.close()


# ---------------------------------------------------------------------------- frames and GL
def test_mixed_collection_policy_gives_frames(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ds = E.collect_frames(
        "Reaching", ["source"], 40, seed=0, size=32, policy="mixed", workers=1, cache_dir=tmp_path
    )
    assert ds.frames.shape == (40, 32, 32, 3) and ds.frames.dtype == np.uint8
    assert set(ds.domain_names) == set(SPLITS["source"]) and len(set(ds.domain_ids.tolist())) == 5
    assert len({f.tobytes() for f in ds.frames}) > 30
    assert ds.in_view.all()  # the camera sees the whole table
    pose = ds.factors[:, -4:-2]  # shoulder and elbow are always on their grids
    assert (pose >= 0).all()
    with pytest.raises(UnknownNameError, match="reach"):
        E.collect_frames("Reaching", ["source"], 4, seed=0, policy="seek", cache_dir=tmp_path)


def _darla(args: list[str], mujoco_gl: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MUJOCO_GL": mujoco_gl}
    code = "import sys; from darla.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_missing_gl_backend_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "x.png")
    bad = _darla(["envs", "show", "Reaching", "--frames", "1", "--domain", SOURCE, "--out", out], "vulkan")
    assert bad.returncode == 2, bad.stderr
    assert "MUJOCO_GL" in bad.stderr and "'vulkan'" in bad.stderr and "egl, osmesa" in bad.stderr
    assert "Traceback" not in bad.stderr
    # the MiniWorld families do not need MuJoCo's GL: a bad MUJOCO_GL leaves them alone
    ok = _darla(["envs", "list", "--env", "SeekAvoid"], "vulkan")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.skipif(_loadable("osmesa"), reason="OSMesa is installed here")
def test_requested_backend_without_its_library_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "x.png")
    bad = _darla(["envs", "show", "Reaching", "--frames", "1", "--domain", SOURCE, "--out", out], "osmesa")
    assert bad.returncode == 2, bad.stderr
    assert "libOSMesa" in bad.stderr and "apt-get install" in bad.stderr
    assert set(GL_LIBRARIES) == {"egl", "osmesa", "glfw"}


def test_bench_baseline_renders_reacher_frames_beside_a_reaching_env(env: ReachingEnv) -> None:
    """`darla bench env --env Reaching` times Gymnasium's Reacher-v5 with rgb frames; with darla's
    GL context in the same process its frames must still be real (not black) ones."""
    from darla.pipelines.bench.env import BASELINES, REACHER

    assert BASELINES["Reaching"] is REACHER
    reacher = REACHER.make(32)
    frame, _ = reacher.reset(seed=0)
    env.reset(seed=0)  # darla's renderer makes its own context current
    actions = REACHER.actions(np.random.default_rng(0), 3)
    frames = [frame] + [reacher.step(a)[0] for a in actions]
    reacher.close()
    assert all(f.shape == (32, 32, 3) and f.mean() > 20 for f in frames)
