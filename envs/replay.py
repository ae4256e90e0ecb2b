"""Exact env state for resumable training: record each episode's start, replay it on resume.

A MiniWorld, MuJoCo or Box2D env's full state (entities, GL lists, physics) cannot be saved as data,
but it is a function of the random state the episode started from and the actions taken since. So
`EpisodeRecorder` notes, at every reset, the reset's arguments and the random state of every layer
that draws at reset (the env's `np_random`, a domain schedule's generator), then the actions of the
episode; `restore` rebuilds the same state in a fresh env by restoring those random states, resetting
with the same arguments and replaying the actions. An episode is at most a few hundred steps, so a
resume costs seconds, and nothing executable is ever stored: the record is plain JSON.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol, runtime_checkable

import gymnasium
import numpy as np

from darla.errors import ArtifactError

RECORD_FORMAT = "darla.episode/1"


@runtime_checkable
class RandomLayer(Protocol):
    """A wrapper that draws from its own generator at reset (e.g. the per-episode domain schedule)."""

    def get_rng_state(self) -> dict[str, Any]: ...

    def set_rng_state(self, state: dict[str, Any]) -> None: ...


def frame_digest(obs: Any) -> str:
    """A short content hash of an observation, to check that a replay arrived where it should."""
    arr = np.ascontiguousarray(np.asarray(obs))
    return hashlib.sha256(arr.tobytes() + str(arr.shape).encode() + str(arr.dtype).encode()).hexdigest()[:16]


def _layers(env: gymnasium.Env) -> list[RandomLayer]:
    """Every wrapper between `env` and the base env that keeps a generator of its own, outermost first."""
    out: list[RandomLayer] = []
    layer: Any = env
    while isinstance(layer, gymnasium.Wrapper):
        if isinstance(layer, RandomLayer):
            out.append(layer)
        layer = layer.env
    return out


def _jsonable(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, (str, int, float, bool))
        or (isinstance(value, (list, tuple)) and all(_jsonable(v) for v in value))
        or (isinstance(value, dict) and all(isinstance(k, str) and _jsonable(v) for k, v in value.items()))
    )


class EpisodeRecorder(gymnasium.Wrapper):
    """Records what decides the current episode (see the module docstring); `replay_state()` returns
    it as JSON-safe data and `replay_episode(record)` replays it into this env (a fresh one of the same kind).

    Only discrete actions are recorded; a reset whose arguments are not plain data makes the record
    `exact: False` with the reason, so a resume can say it is not exact instead of pretending."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        self._start: dict[str, Any] | None = None
        self._actions: list[int] = []
        self._digest = ""
        self._inexact = ""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self._start = {
            "seed": seed,
            "options": options,
            "np_random": self.env.unwrapped.np_random.bit_generator.state,
            "layers": [layer.get_rng_state() for layer in _layers(self.env)],
        }
        self._inexact = "" if _jsonable(options) else f"reset options are not plain data: {options!r}"
        self._actions = []
        obs, info = self.env.reset(seed=seed, options=options)
        self._digest = frame_digest(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        arr = np.asarray(action)
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
            self._inexact = f"only discrete actions are recorded, got {action!r}"
        self._actions.append(int(arr.reshape(-1)[0]) if arr.size == 1 else 0)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._digest = frame_digest(obs)
        return obs, reward, terminated, truncated, info

    def replay_state(self) -> dict[str, Any]:
        """The current episode as data: its start (reset arguments, random states), its actions and a
        digest of the last observation."""
        if self._start is None:
            return {"format": RECORD_FORMAT, "exact": False, "reason": "the env was never reset"}
        record: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "start": self._start,
            "actions": list(self._actions),
            "digest": self._digest,
            "exact": not self._inexact,
        }
        if self._inexact:
            record["reason"] = self._inexact
        return record

    def replay_episode(self, record: dict[str, Any]) -> str:
        """Replay `record` into this env; returns the digest of the observation reached, which equals
        the record's when the replay is exact (the caller compares)."""
        if record.get("format") != RECORD_FORMAT or not record.get("exact"):
            raise ArtifactError(
                f"cannot replay this episode record: {record.get('reason', 'unknown format')}"
            )
        start = record["start"]
        layers = _layers(self.env)
        if len(layers) != len(start["layers"]):
            raise ArtifactError(
                f"the episode record has {len(start['layers'])} random wrapper(s), this env {len(layers)}"
            )
        for layer, state in zip(layers, start["layers"]):
            layer.set_rng_state(state)
        self.env.unwrapped.np_random.bit_generator.state = start["np_random"]
        self.reset(seed=start["seed"], options=start["options"])
        for action in record["actions"]:
            self.step(action)
        return self._digest
