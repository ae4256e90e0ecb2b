"""MFEC: kNN tables, LRU capacity, learning on a tiny deterministic corridor, save/load, seeding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from darla.agents.mfec import MFEC, EpisodicTable
from darla.errors import ArtifactError, ConfigError, UnknownNameError

LENGTH = 8
LIMIT = 24


class Corridor(gym.Env[np.ndarray, int]):
    """Start at cell 0; actions left / stay / right; +1 and the end at the last cell; time limit."""

    def __init__(self, image: bool = False) -> None:
        self.image = image
        if image:
            self.observation_space = spaces.Box(0, 255, (4, LENGTH, 3), np.uint8)
        else:
            self.observation_space = spaces.Box(0.0, 1.0, (LENGTH,), np.float32)
        self.action_space = spaces.Discrete(3)  # type: ignore[assignment]
        self.pos = 0
        self.t = 0

    def _obs(self) -> np.ndarray:
        if self.image:
            img = np.zeros((4, LENGTH, 3), np.uint8)
            img[:, self.pos, 1] = 255
            return img
        one_hot = np.zeros(LENGTH, np.float32)
        one_hot[self.pos] = 1.0
        return one_hot

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos, self.t = 0, 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.pos = int(np.clip(self.pos + int(action) - 1, 0, LENGTH - 1))
        self.t += 1
        done = self.pos == LENGTH - 1
        return self._obs(), float(done), done, self.t >= LIMIT, {}


def make_env(n: int = 2, image: bool = False) -> DummyVecEnv:
    return DummyVecEnv([lambda: Corridor(image) for _ in range(n)])


def mean_return(policy: Any, episodes: int = 10, image: bool = False) -> float:
    env = Corridor(image)
    total = 0.0
    for _ in range(episodes):
        obs, _ = env.reset()
        done = False
        while not done:
            obs, r, term, trunc, _ = env.step(int(policy(obs)))
            total += r
            done = term or trunc
    return total / episodes


# ---------------------------------------------------------------------------- table
def test_table_knn_exact_match_and_capacity_lru() -> None:
    table = EpisodicTable(capacity=3, dim=2, k=2)
    table.update(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32), np.array([1.0, 2.0, 3.0]), now=1)
    assert table.size == 3
    # exact match returns the stored value; max with existing on re-update
    np.testing.assert_allclose(table.query(np.array([[1.0, 0.0]], np.float32), now=None), [2.0])
    table.update(np.array([[1.0, 0.0]], np.float32), np.array([0.5]), now=2)
    np.testing.assert_allclose(table.query(np.array([[1.0, 0.0]], np.float32), now=None), [2.0])
    table.update(np.array([[1.0, 0.0]], np.float32), np.array([5.0]), now=2)
    np.testing.assert_allclose(table.query(np.array([[1.0, 0.0]], np.float32), now=None), [5.0])
    # unseen key: mean of the 2 nearest ([0,0] -> 1 and [1,0] -> 5 for a query near the x axis)
    np.testing.assert_allclose(table.query(np.array([[0.5, -0.1]], np.float32), now=None), [3.0])
    # touch [0,1] so [0,0] is the least recently used; inserting a new key must evict [0,0]
    table.query(np.array([[0.0, 1.0]], np.float32), now=3)
    table.update(np.array([[9.0, 9.0]], np.float32), np.array([7.0]), now=4)
    assert table.size == 3
    stored = {tuple(np.round(k, 5)) for k in table.stored_keys()}
    assert stored == {(1.0, 0.0), (0.0, 1.0), (9.0, 9.0)}
    # a batch larger than the table never overflows it
    table.update(np.arange(20, dtype=np.float32).reshape(10, 2) + 100, np.arange(10.0), now=5)
    assert table.size == 3
    assert sorted(table.values[:3].tolist()) == [7.0, 8.0, 9.0]


def test_exact_match_on_features_with_a_large_offset() -> None:
    """Keys 1e3 away from the origin that differ by 0.1 are distinct; a 1-ulp copy is a match."""
    table = EpisodicTable(capacity=10, dim=3, k=1)
    base = np.full((1, 3), 1000.0, np.float32)
    table.update(base, np.array([1.0]), now=1)
    near = base + np.array([[0.1, 0.0, 0.0]], np.float32)
    table.update(near, np.array([2.0]), now=2)
    assert table.size == 2
    ulp = np.nextafter(base, np.float32(np.inf))
    table.update(ulp, np.array([5.0]), now=3)
    assert table.size == 2
    np.testing.assert_allclose(table.query(np.concatenate([base, near]), now=None), [5.0, 2.0])


def test_deterministic_ties_depend_on_the_state_not_on_action_order() -> None:
    model = MFEC(make_env(1), seed=0)  # empty tables: every action ties at +inf
    obs = np.eye(LENGTH, dtype=np.float32)
    first = model.predict(obs)[0]
    assert len(set(first.tolist())) > 1  # not always action 0
    np.testing.assert_array_equal(model.predict(obs)[0], first)  # but reproducible


def test_table_storage_grows_up_to_capacity() -> None:
    rng = np.random.default_rng(0)
    table = EpisodicTable(capacity=3000, dim=4, k=5)
    assert len(table.keys) == 1024  # nothing big is allocated up front
    keys = rng.standard_normal((3500, 4)).astype(np.float32)
    for i, chunk in enumerate(np.array_split(np.arange(3500), 4)):
        table.update(keys[chunk], chunk.astype(np.float32), now=i + 1)
    assert table.size == 3000 and len(table.keys) == 3000
    # the 500 oldest keys (first update) were evicted; the newest are found by exact match
    np.testing.assert_allclose(table.query(keys[-10:], now=None), np.arange(3490, 3500))


def test_duplicate_keys_in_one_update_keep_the_max() -> None:
    table = EpisodicTable(capacity=10, dim=1, k=1)
    table.update(np.array([[1.0], [1.0], [2.0]], np.float32), np.array([0.3, 0.9, 0.1]), now=1)
    assert table.size == 2
    np.testing.assert_allclose(table.query(np.array([[1.0]], np.float32), now=None), [0.9])


# ---------------------------------------------------------------------------- learning
@pytest.mark.parametrize("image", [False, True])
def test_solves_corridor_well_above_random(image: bool) -> None:
    rng = np.random.default_rng(0)
    random_score = mean_return(lambda _obs: rng.integers(3), episodes=200, image=image)
    model = MFEC(make_env(2, image), capacity=1000, k=3, gamma=0.95, exploration_fraction=0.3, seed=1)
    model.learn(3000)
    assert model.key_mode == ("projection" if image else "identity")
    learned = mean_return(lambda obs: model.predict(obs, deterministic=True)[0], episodes=5, image=image)
    assert learned == 1.0, f"MFEC return {learned} (random {random_score:.3f})"
    assert random_score < 0.5
    assert model.num_timesteps >= 3000


def test_tables_respect_capacity_during_learning() -> None:
    model = MFEC(make_env(2), capacity=4, k=2, seed=0)
    model.learn(400)
    assert all(0 < size <= 4 for size in model.table_sizes())


class CountingCallback(BaseCallback):
    def __init__(self, stop_at: int) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.started = False

    def _on_training_start(self) -> None:
        self.started = True

    def _on_step(self) -> bool:
        return self.n_calls < self.stop_at


def test_callback_can_stop_training_and_logs_to_tensorboard(tmp_path: Path) -> None:
    cb = CountingCallback(stop_at=10)
    model = MFEC(make_env(2), seed=0, tensorboard_log=str(tmp_path / "tb"))
    model.learn(1000, callback=cb, log_interval=1)
    assert cb.started and cb.n_calls == 10
    assert model.num_timesteps == 20
    assert any((tmp_path / "tb").rglob("events.out.tfevents*"))


# ---------------------------------------------------------------------------- persistence, seeding
def test_save_load_gives_same_actions(tmp_path: Path) -> None:
    model = MFEC(make_env(2, image=True), capacity=200, k=3, seed=3)
    model.learn(600)
    path = tmp_path / "policy.zip"
    model.save(path)
    loaded = MFEC.load(path, env=make_env(1, image=True))
    obs = np.random.default_rng(0).integers(0, 256, (16, 4, LENGTH, 3), dtype=np.uint8)
    obs[:8] = 0
    for i in range(8):
        obs[i, :, i, 1] = 255  # the corridor's own states
    np.testing.assert_array_equal(model.predict(obs)[0], loaded.predict(obs)[0])
    np.testing.assert_array_equal(
        model.q_values(model.keys(obs), touch=False), loaded.q_values(loaded.keys(obs), touch=False)
    )
    assert loaded.num_timesteps == model.num_timesteps
    assert loaded.table_sizes() == model.table_sizes()
    # SB3-like suffix handling
    model.save(tmp_path / "ckpt")
    assert MFEC.load(tmp_path / "ckpt").table_sizes() == model.table_sizes()


def test_load_rejects_foreign_files_and_mismatched_env(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError):
        MFEC.load(bad)
    model = MFEC(make_env(1), seed=0)
    model.save(tmp_path / "m.zip")
    with pytest.raises(ArtifactError, match="do not match"):
        MFEC.load(tmp_path / "m.zip", env=make_env(1, image=True))
    with pytest.raises(ArtifactError, match="not found"):
        MFEC.load(tmp_path / "missing.zip")


def test_seeded_determinism() -> None:
    a = MFEC(make_env(2), k=3, seed=5).learn(500)
    b = MFEC(make_env(2), k=3, seed=5).learn(500)
    c = MFEC(make_env(2), k=3, seed=6).learn(500)
    for ta, tb in zip(a.tables, b.tables):
        np.testing.assert_array_equal(ta.keys[: ta.size], tb.keys[: tb.size])
        np.testing.assert_array_equal(ta.values[: ta.size], tb.values[: tb.size])
    assert any(
        ta.size != tc.size or not np.array_equal(ta.values[: ta.size], tc.values[: tc.size])
        for ta, tc in zip(a.tables, c.tables)
    )


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(UnknownNameError, match="projektion"):
        MFEC(make_env(1), key_mode="projektion")
    with pytest.raises(ConfigError, match="gamma"):
        MFEC(make_env(1), gamma=1.5)
    model = MFEC(make_env(1))
    with pytest.raises(ConfigError, match="shape"):
        model.predict(np.zeros((2, LENGTH + 1), np.float32))


# ---------------------------------------------------------------------------- act-stage integration
def test_act_factory_builds_saves_and_reloads_mfec(tmp_path: Path) -> None:
    from darla.agents.factory import ALGOS, build_model, load_model, resolve_hyperparams

    assert ALGOS.get("mfec").cls is MFEC
    hp = resolve_hyperparams("mfec", "SeekAvoid", "frozen", {"capacity": 50, "k": 3})
    assert hp["capacity"] == 50 and hp["projection_dim"] == 64  # overrides on top of hyperparams/mfec.yaml
    model = build_model("mfec", "frozen", make_env(2), hp, seed=0, tensorboard_log=tmp_path / "tb")
    assert isinstance(model, MFEC)
    model.learn(200)
    with open(tmp_path / "policy.zip", "wb") as fh:  # the act stage saves through a file handle
        model.save(fh)
    loaded = load_model(tmp_path / "policy.zip", "mfec", "frozen", hp)
    loaded.policy.set_training_mode(False)
    obs = np.eye(LENGTH, dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(obs)[0], model.predict(obs)[0])
    with pytest.raises(ConfigError, match="capcity"):
        resolve_hyperparams("mfec", "SeekAvoid", "frozen", {"capcity": 10})
    with pytest.raises(ConfigError, match="finetune"):
        build_model("mfec", "finetune", make_env(1, image=True), hp, seed=0, vision_checkpoint="x.pt")


@pytest.mark.slow
def test_darla_act_with_mfec_on_pixels(tmp_path: Path) -> None:
    from darla.cli import main

    args = ["act", "--env", "SeekAvoid", "--mode", "pixels", "--algo", "mfec", "--timesteps", "200"]
    args += [
        "--n-envs",
        "2",
        "--vec",
        "dummy",
        "--eval-freq",
        "0",
        "--eval-episodes",
        "2",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    folder = tmp_path / "act" / "pixels" / "mfec" / "s0"
    assert (folder / "DONE.json").is_file()
    assert MFEC.load(folder / "policy.zip").num_timesteps == 200
