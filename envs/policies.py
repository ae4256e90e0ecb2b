"""Collection policies for see-stage frames.

A uniform random walk mostly films walls from up close; DARLA mixed frames from several
policies. `seek` is a scripted, noisy walker that turns towards a chosen object (privileged env
state) and walks to it; `mixed` (the default) picks one of the two per episode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from darla.envs.base import ColorBox, DomainRoomEnv


class Policy(Protocol):
    """A frame-collection policy: it may read the env's privileged state (it is not learned)."""

    def reset(self, env: Any, rng: np.random.Generator) -> None: ...

    def act(self, env: Any, rng: np.random.Generator) -> int: ...


class RandomPolicy:
    """Uniform random actions (any env with a discrete action space)."""

    def reset(self, env: Any, rng: np.random.Generator) -> None:
        return None

    def act(self, env: Any, rng: np.random.Generator) -> int:
        return int(rng.integers(env.action_space.n))


class SeekPolicy:
    """Turn towards a randomly chosen object and walk to it; `epsilon` random actions."""

    def __init__(self, epsilon: float = 0.2) -> None:
        self.epsilon = epsilon
        self.target: ColorBox | None = None
        self.target_pos: np.ndarray | None = None

    def _choose(self, env: DomainRoomEnv, rng: np.random.Generator) -> None:
        self.target = env.objects[int(rng.integers(len(env.objects)))] if env.objects else None
        self.target_pos = None if self.target is None else np.array(self.target.pos)

    def reset(self, env: DomainRoomEnv, rng: np.random.Generator) -> None:
        self._choose(env, rng)

    def act(self, env: DomainRoomEnv, rng: np.random.Generator) -> int:
        moved = self.target is not None and (
            self.target_pos is None or not np.array_equal(self.target.pos, self.target_pos)
        )
        if self.target is None or self.target not in env.objects or moved:
            self._choose(env, rng)
        names = env.action_names
        if self.target is None or rng.random() < self.epsilon or "move_forward" not in names:
            return int(rng.integers(len(names)))
        angle, _ = env.bearing(self.target.pos)
        threshold = math.radians(env.turn_step) / 2
        if angle > threshold and "turn_left" in names:
            return names.index("turn_left")
        if angle < -threshold and "turn_right" in names:
            return names.index("turn_right")
        return names.index("move_forward")


class MixedPolicy:
    """Per episode: `seek` with probability `p_seek`, else `random`."""

    def __init__(self, p_seek: float = 0.5) -> None:
        self.p_seek = p_seek
        self.seek = SeekPolicy()
        self.random = RandomPolicy()
        self.current: Policy = self.random

    def reset(self, env: DomainRoomEnv, rng: np.random.Generator) -> None:
        self.current = self.seek if rng.random() < self.p_seek else self.random
        self.current.reset(env, rng)

    def act(self, env: DomainRoomEnv, rng: np.random.Generator) -> int:
        return self.current.act(env, rng)


ROOM_POLICIES: dict[str, Callable[[], Policy]] = {
    "random": RandomPolicy,
    "seek": SeekPolicy,
    "mixed": MixedPolicy,
}
"""The collection policies of a room family (`EnvFamily.collect_policies`)."""


def show_seek() -> Policy:
    """What `darla envs show` plays in a room: walk to an object, so the frames show one."""
    return SeekPolicy(epsilon=0.1)
