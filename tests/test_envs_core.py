"""darla.envs: env families, domains, rules and ground truth (tiny frames, few steps)."""

from __future__ import annotations

import math
import warnings
from itertools import combinations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import darla.envs as E
from darla.config import from_dict, to_dict
from darla.envs.base import DomainRoomEnv
from darla.envs.domains import DomainSpec, ObjectSpec, check_splits
from darla.errors import ConfigError, UnknownNameError

FAMILY_DOMAINS = [(f, d) for f in E.FAMILIES.names() for d in E.get_family(f).domain_names()]
# checks written for rooms (agent bearing, room and object factors); other families (CarRacing, Reaching, shifts) test
# their equivalents in their own files
ROOM_FAMILIES = [f for f in E.FAMILIES.names() if issubclass(E.get_family(f).env_class, DomainRoomEnv)]


def _place(env, ent, distance: float) -> None:
    """Put `ent` straight ahead of the agent at `distance` metres (x forward, z = -sin)."""
    a = env.agent
    ent.pos = np.array([a.pos[0] + distance * math.cos(a.dir), 0.0, a.pos[2] - distance * math.sin(a.dir)])


def _clear_room(env) -> None:
    """Agent in the middle facing +x; every object parked in a far corner, out of reach."""
    env.agent.pos = np.array([2.0, 0.0, 3.0])
    env.agent.dir = 0.0
    for i, o in enumerate(env.objects):
        o.pos = np.array([0.6 + 0.01 * i, 0.0, 0.6 if i % 2 else 5.4])


@pytest.mark.parametrize(("family", "domain"), FAMILY_DOMAINS)
def test_check_env_every_registered_env_and_domain(family: str, domain: str) -> None:
    env = gymnasium.make(E.get_family(family).gym_id, domain=domain, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # checker complaints become failures
        check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    assert info["domain"] == domain
    _, _, _, _, info = env.step(2)
    assert info["domain"] == domain
    env.close()


@pytest.mark.parametrize("family", E.FAMILIES.names())
def test_the_time_limit_is_gymnasiums_not_the_envs(family: str) -> None:
    """Every family's episodes end by Gymnasium's TimeLimit at its registered `max_episode_steps`;
    the env class itself never truncates (run past the limit, unwrapped, it goes on)."""
    fam = E.get_family(family)
    limit = fam.max_episode_steps
    assert limit is not None and gymnasium.spec(fam.gym_id).max_episode_steps == limit
    env = fam.make(fam.splits["source"][0], seed=0, size=32, max_episode_steps=3)
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]
    raw = fam.make(fam.splits["source"][0], seed=0, size=32).unwrapped
    raw.reset(seed=0)
    assert not any(raw.step(0)[3] for _ in range(limit + 2))
    env.close()
    raw.close()


@pytest.mark.parametrize("family", E.FAMILIES.names())
def test_same_seed_same_frames_and_rewards(family: str) -> None:
    fam = E.get_family(family)

    def rollout(seed: int) -> tuple[np.ndarray, list[float]]:
        env = fam.make(fam.splits["source"][0], seed=seed, size=32)
        obs, _ = env.reset(seed=seed)
        frames, rewards = [obs], []
        rng = np.random.default_rng(seed)
        for _ in range(60):
            obs, reward, terminated, truncated, _ = env.step(int(rng.integers(3)))
            frames.append(obs)
            rewards.append(reward)
            if terminated or truncated:
                obs, _ = env.reset()
        env.close()
        return np.stack(frames), rewards

    f1, r1 = rollout(7)
    f2, r2 = rollout(7)
    f3, _ = rollout(8)
    assert np.array_equal(f1, f2) and r1 == r2
    assert not np.array_equal(f1, f3)


@pytest.mark.parametrize("family", ROOM_FAMILIES)
def test_domains_differ_in_pixel_statistics(family: str) -> None:
    fam = E.get_family(family)
    env = fam.make(fam.splits["source"][0], seed=0, size=32).unwrapped
    stats = {}
    for name in fam.domain_names():
        frames = []
        for seed in range(3):
            env.reset(seed=seed, options={"domain": name})
            angle, _ = env.bearing(env.objects[0].pos)  # face an object: its colour must show
            env.agent.dir += angle
            frames.append(env.render_obs())
        # same three scenes (same poses) in every domain: only the appearance differs
        stats[name] = np.stack(frames).reshape(-1, 3).astype(float).mean(axis=0)
    env.close()
    for a, b in combinations(stats, 2):
        assert np.abs(stats[a] - stats[b]).max() > 2.0, (a, b, stats[a], stats[b])


def test_domain_switch_at_reset_matches_a_fresh_env() -> None:
    fam = E.get_family("SeekAvoid")
    env = fam.make("brick_greenred", seed=0, size=32)
    switched, _ = env.reset(seed=5, options={"domain": "slime_blueyellow"})
    fresh_env = fam.make("slime_blueyellow", seed=0, size=32)
    fresh, _ = fresh_env.reset(seed=5)
    assert np.array_equal(switched, fresh)
    # and the first env still renders its own room: display lists are per env, not shared
    again, _ = env.reset(seed=5, options={"domain": "brick_greenred"})
    first = fam.make("brick_greenred", seed=0, size=32)
    ref, _ = first.reset(seed=5)
    assert np.array_equal(again, ref)


@pytest.mark.parametrize(("role", "expected"), [("good", 1.0), ("bad", -1.0)])
def test_contact_reward_and_respawn(role: str, expected: float) -> None:
    env = E.get_family("SeekAvoid").make("brick_greenred", seed=0, size=32).unwrapped
    env.reset(seed=0)
    _clear_room(env)
    target = next(o for o in env.objects if o.role == role)
    _place(env, target, env.touch_radius(target) + 0.5 * env.forward_step)
    _, reward, _, _, _ = env.step(env.action_names.index("turn_left"))
    assert reward == 0.0  # turning in place does not reach it
    env.agent.dir = 0.0
    _place(env, target, env.touch_radius(target) + 0.5 * env.forward_step)
    obs, reward, terminated, _, _ = env.step(env.action_names.index("move_forward"))
    assert reward == expected and not terminated
    dist = np.hypot(*(target.pos - env.agent.pos)[[0, 2]])
    assert dist > env.touch_radius(target)  # respawned out of reach
    assert np.array_equal(obs, env.render_obs())  # the frame shows the world after the respawn


def test_no_respawn_removes_objects_and_ends_when_good_are_gone() -> None:
    env = E.get_family("SeekAvoid").make("brick_greenred", seed=0, size=32, n_good=1, n_bad=1, respawn=False)
    raw = env.unwrapped
    raw.reset(seed=1)
    _clear_room(raw)
    bad = next(o for o in raw.objects if o.role == "bad")
    _place(raw, bad, raw.touch_radius(bad) + 0.1)
    obs, reward, terminated, _, _ = raw.step(2)
    assert reward == -1.0 and not terminated and bad not in raw.entities
    assert np.array_equal(obs, raw.render_obs())
    good = next(o for o in raw.objects if o.role == "good")
    raw.agent.pos = np.array([2.0, 0.0, 3.0])
    _place(raw, good, raw.touch_radius(good) + 0.1)
    _, reward, terminated, _, _ = raw.step(2)
    assert reward == 1.0 and terminated


def test_fetch_object_goal_gives_reward_and_ends_distractor_does_not() -> None:
    env = E.get_family("FetchObject").make("planks_orange", seed=0, size=32).unwrapped
    env.reset(seed=0)
    _clear_room(env)
    distractor = next(o for o in env.objects if o.role == "bad")
    _place(env, distractor, env.touch_radius(distractor) + 0.1)
    _, reward, terminated, _, _ = env.step(2)
    assert reward == 0.0 and not terminated
    _clear_room(env)
    goal = next(o for o in env.objects if o.role == "good")
    _place(env, goal, env.touch_radius(goal) + 0.1)
    _, reward, terminated, _, _ = env.step(2)
    assert reward == 1.0 and terminated


def test_step_limit_truncates() -> None:
    env = E.get_family("SeekAvoid").make("brick_greenred", seed=0, size=32, max_episode_steps=4)
    env.reset(seed=0)
    flags = [env.step(0)[3] for _ in range(4)]
    assert flags == [False, False, False, True]


@pytest.mark.parametrize("family", ROOM_FAMILIES)
def test_source_and_target_are_disjoint_combinations(family: str) -> None:
    fam = E.get_family(family)
    source = [fam.domains[n] for n in fam.splits["source"]]
    held_out = [fam.domains[n] for s in ("target", "ood") for n in fam.splits[s]]
    assert {d.combination() for d in source}.isdisjoint({d.combination() for d in held_out})
    assert set(fam.splits["source"]).isdisjoint(fam.splits["target"])
    # DARLA's target recombines seen values: its room and its objects each appear in a source
    target = fam.domains[fam.splits["target"][0]]
    assert target.room in {d.room for d in source} and target.objects in {d.objects for d in source}
    assert all(fam.domains[n].difficulty == 0 for n in fam.splits["source"])
    assert all(fam.domains[n].difficulty > 0 for s in ("target", "ood") for n in fam.splits[s])
    # ood domains show some factor value no source has
    for name in fam.splits["ood"]:
        d = fam.domains[name]
        seen_rooms = {x for s in source for x in s.room[:3]}
        seen_kinds = {o.kind for s in source for o in s.objects}
        seen_colors = {o.color for s in source for o in s.objects}
        new = set(d.room[:3]) - seen_rooms or {o.kind for o in d.objects} - seen_kinds
        assert new or {o.color for o in d.objects} - seen_colors, name


@pytest.mark.parametrize("family", ROOM_FAMILIES)
def test_every_target_recombines_source_values(family: str) -> None:
    """DARLA's premise: each target value (room, light, objects) was seen in some source."""
    fam = E.get_family(family)
    for name in fam.splits["target"]:
        for factor, value in fam.domains[name].factors().items():
            assert any(fam.domains[s].factors()[factor] == value for s in fam.splits["source"]), (
                name,
                factor,
            )


def test_check_splits_rejects_unseen_target_values_and_seen_only_ood() -> None:
    a = DomainSpec("a")
    b = a.replace(name="b", floor_tex="marble")
    ab = a.replace(name="ab", wall_tex="marble", floor_tex="marble")
    b_wall = a.replace(name="b_wall", wall_tex="marble")
    lit = ab.replace(name="lit", light_color=(0.9, 0.5, 0.3))
    domains = {d.name: d for d in (a, b, b_wall, ab, lit)}
    check_splits(domains, {"source": ("a", "b", "b_wall"), "target": ("ab",), "ood": ("lit",)})
    with pytest.raises(ConfigError, match=r"target domain 'lit' shows .*light.* no source domain has"):
        check_splits(domains, {"source": ("a", "b", "b_wall"), "target": ("ab", "lit"), "ood": ()})
    with pytest.raises(ConfigError, match="ood domain 'ab' only recombines values seen"):
        check_splits(domains, {"source": ("a", "b", "b_wall"), "target": (), "ood": ("ab", "lit")})


def test_check_splits_held_out_rule_wants_new_values_and_ood_strongest() -> None:
    """Shift suites: targets are held-out levels (new values), ood the strongest; the recombine rule
    would refuse the same split."""
    a = DomainSpec("a")
    lit = {
        name: a.replace(name=name, light_color=(v, v, v), difficulty=d)
        for name, v, d in (("l1", 0.6, 1), ("l2", 0.5, 2), ("l3", 0.3, 3))
    }
    marble = a.replace(name="m", wall_tex="marble")
    recombined = lit["l1"].replace(name="m_l1", wall_tex="marble", difficulty=2)
    domains = {"a": a, "m": marble, **lit}
    split = {"source": ("a", "m", "l1"), "target": ("l2",), "ood": ("l3",)}
    check_splits(domains, split, "held_out")
    with pytest.raises(ConfigError, match="no source domain has"):
        check_splits(domains, split)
    with pytest.raises(ConfigError, match="'m_l1' only shows factor values the sources show"):
        check_splits({**domains, "m_l1": recombined}, {**split, "target": ("l2", "m_l1")}, "held_out")
    with pytest.raises(ConfigError, match="ood must be the strongest shift"):
        check_splits(domains, {**split, "target": ("l3",), "ood": ("l2",)}, "held_out")
    with pytest.raises(UnknownNameError, match="recombine"):
        check_splits(domains, split, "combine")


def test_object_sets_are_balanced() -> None:
    """SeekAvoid: within every domain good and bad differ in colour only."""
    fam = E.get_family("SeekAvoid")
    for spec in fam.domains.values():
        assert spec.good.kind == spec.bad.kind and spec.good.color != spec.bad.color


def test_check_splits_rejects_a_target_equal_to_a_source() -> None:
    a = DomainSpec("a")
    with pytest.raises(ConfigError, match="repeats a source"):
        check_splits({"a": a, "b": a.replace(name="b")}, {"source": ("a",), "target": ("b",), "ood": ()})


def test_unknown_names_and_bad_specs_raise_clear_errors() -> None:
    with pytest.raises(UnknownNameError, match=r"did you mean 'SeekAvoid'.*FetchObject"):
        E.get_family("SeekAvoyd")
    fam = E.get_family("SeekAvoid")
    with pytest.raises(UnknownNameError, match="brick_greenred"):
        fam.domain("brick_green")
    with pytest.raises(UnknownNameError, match="brick_greenred"):
        gymnasium.make("darla/SeekAvoid-v0", domain="nope")
    with pytest.raises(UnknownNameError, match="marble"):
        fam.domain({"name": "x", "wall_tex": "marbel"})
    with pytest.raises(ConfigError, match="wall_texture"):
        fam.domain({"name": "x", "wall_texture": "marble"})
    with pytest.raises(ConfigError, match="light_color"):
        fam.domain({"name": "x", "light_color": [2.0, 0.0, 0.0]})
    with pytest.raises(UnknownNameError, match="cube"):
        fam.domain({"name": "x", "good": {"kind": "sphere"}})
    with pytest.raises(ConfigError):
        fam.make("brick_greenred", size=32, n_goood=3)
    with pytest.raises(UnknownNameError, match="move_forward"):
        fam.make("brick_greenred", size=32, actions=("turn_left", "jump"))
    with pytest.raises(UnknownNameError, match="ood"):
        fam.resolve_domains(["sauce"])


def test_custom_spec_round_trips_and_makes_an_env() -> None:
    spec = DomainSpec("custom", wall_tex="stucco", good=ObjectSpec("slab", (0.2, 0.2, 0.9)))
    data = to_dict(spec)
    assert from_dict(DomainSpec, data) == spec
    env = gymnasium.make("darla/SeekAvoid-v0", domain=data, size=32)
    _, info = env.reset(seed=0)
    assert info["domain"] == "custom"
    assert E.get_family("SeekAvoid").split_of("marble_blueyellow") == "target"


def test_extra_actions_are_configurable() -> None:
    env = E.get_family("SeekAvoid").make(
        "brick_greenred", size=32, actions=("turn_left", "turn_right", "move_forward", "move_back")
    )
    assert env.action_space.n == 4
    env.reset(seed=0)
    raw = env.unwrapped
    _clear_room(raw)
    before = raw.agent.pos.copy()
    env.step(3)
    assert raw.agent.pos[0] == pytest.approx(before[0] - raw.forward_step)


# ---------------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("family", ROOM_FAMILIES)
def test_ground_truth_is_deterministic_and_honours_factors(family: str) -> None:
    gt = E.get_family(family).ground_truth(size=32)
    assert isinstance(gt, E.GroundTruth)
    assert len(gt.factor_names) == len(gt.factor_sizes) and min(gt.factor_sizes) > 1
    factors = gt.sample_factors(6, np.random.default_rng(0))
    assert factors.dtype == np.int64 and factors.shape == (6, len(gt.factor_names))
    assert (factors < np.array(gt.factor_sizes)).all()
    a = gt.sample_observations_from_factors(factors, np.random.default_rng(1))
    b = gt.sample_observations_from_factors(factors, np.random.default_rng(1))
    assert a.shape == (6, *gt.image_shape) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    for name in ("wall", "light", "heading", "good_bearing"):
        k = gt.factor_names.index(name)
        changed = factors.copy()
        changed[:, k] = (changed[:, k] + 1) % gt.factor_sizes[k]
        c = gt.sample_observations_from_factors(changed, np.random.default_rng(1))
        assert all(not np.array_equal(x, y) for x, y in zip(a, c)), name
    with pytest.raises(ConfigError):
        gt.sample_observations_from_factors(factors[:, :-1], np.random.default_rng(0))
    gt.close()


@pytest.mark.parametrize("domain", ["marble_blueyellow", "slime_blueyellow", "brick_greenred"])
def test_ground_truth_samples_poses_in_one_domain(domain: str) -> None:
    """`darla probe` compares domains on frames drawn this way: only the pose may vary."""
    fam = E.get_family("SeekAvoid")
    gt = fam.ground_truth(32)
    factors = gt.sample_factors_in_domain(domain, 12, np.random.default_rng(0))
    spec = fam.domains[domain]
    for row in factors:
        drawn = gt.spec_for(row)
        assert (drawn.wall_tex, drawn.floor_tex, drawn.light_color) == (
            spec.wall_tex,
            spec.floor_tex,
            spec.light_color,
        )
        assert (drawn.good.color, drawn.bad.color) == (spec.good.color, spec.bad.color)
    poses = factors[:, len(gt.appearance) :]
    assert len({tuple(r) for r in poses}) > 1  # the poses still vary
    with pytest.raises(ConfigError, match="marble_blueyelow"):
        gt.sample_factors_in_domain("marble_blueyelow", 2, np.random.default_rng(0))


def test_ground_truth_labels_env_frames() -> None:
    fam = E.get_family("SeekAvoid")
    gt = fam.ground_truth(32)
    env = fam.make("marble_blueyellow", seed=0, size=32).unwrapped
    env.reset(seed=0)
    row = gt.label(env)
    assert row[gt.factor_names.index("wall")] == gt.values("wall").index("marble")
    assert 0 <= row[gt.factor_names.index("heading")] < 8
    _clear_room(env)
    good = next(o for o in env.objects if o.role == "good")
    _place(env, good, 2.0)
    row = gt.label(env)
    assert gt.values("good_bearing")[row[gt.factor_names.index("good_bearing")]] == 0.0
