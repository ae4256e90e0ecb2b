"""Reaching's frame-collection policies: random, reach (scripted, privileged state) and mixed.

`reach` takes the action that points best along what is left to do, with `epsilon` random actions:
the joint error to the arm's inverse kinematics for the target (inside the elbow's range, nearest
the current pose), or with cartesian actions that error mapped to the fingertip by the Jacobian: frames then show
the fingertip near the target as often as far from it. `mixed` (the default) picks one of the
two per episode, as DARLA mixed frames from several policies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from darla.envs.policies import Policy, RandomPolicy
from darla.envs.reaching_model import ELBOW_RANGE, LINK_LENGTHS

if TYPE_CHECKING:
    from darla.envs.reaching import ReachingEnv


def wrap(angle: np.ndarray | float) -> np.ndarray:
    """Angles in [-pi, pi)."""
    return (np.asarray(angle) + math.pi) % (2 * math.pi) - math.pi


def inverse_kinematics(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(shoulder, elbow) that put the fingertip on `target` (or as near as the arm gets) inside the
    elbow's range, nearest `current` in joint space; the shoulder is returned near `current[0]`."""
    l0, l1 = LINK_LENGTHS
    x, y = float(target[0]), float(target[1])
    cos_elbow = np.clip((x * x + y * y - l0 * l0 - l1 * l1) / (2 * l0 * l1), -1.0, 1.0)
    best, best_cost = np.array(current, dtype=float), math.inf
    for sign in (1.0, -1.0):
        elbow = sign * math.acos(cos_elbow)
        if not ELBOW_RANGE[0] - 0.2 <= elbow <= ELBOW_RANGE[1] + 0.2:
            continue  # the arm bends one way only: the mirrored pose is out of its range
        elbow = float(np.clip(elbow, *ELBOW_RANGE))
        shoulder = math.atan2(y, x) - math.atan2(l1 * math.sin(elbow), l0 + l1 * math.cos(elbow))
        shoulder = current[0] + float(wrap(shoulder - current[0]))
        cost = abs(shoulder - current[0]) + abs(elbow - current[1])
        if cost < best_cost:
            best, best_cost = np.array([shoulder, elbow]), cost
    return best


class ReachPolicy:
    """Torque towards the inverse-kinematics pose of the target; `epsilon` random actions."""

    def __init__(self, epsilon: float = 0.2) -> None:
        self.epsilon = epsilon

    def reset(self, env: ReachingEnv, rng: np.random.Generator) -> None:
        return None

    def act(self, env: ReachingEnv, rng: np.random.Generator) -> int:
        if rng.random() < self.epsilon:
            return int(rng.integers(env.action_space.n))
        current = env.joint_angles
        error = inverse_kinematics(env.target_position, current) - current
        if env.cartesian:
            # near the ball: straight at it; further: the fingertip's way along the joint-space path
            # (a chord of up to 0.3 rad), round the shoulder and never into the disc it cannot reach
            move = env.target_position - env.fingertip
            if np.linalg.norm(move) > 0.08:
                step = error / max(1.0, float(np.abs(error).max()) / 0.3)
                move = env.scene.forward_kinematics(current + step) - env.fingertip
            wanted = move / max(float(np.abs(move).max()), env.cartesian_step)
        else:
            wanted = np.clip(error / env.joint_step, -1.0, 1.0)
        cost = ((env.action_vectors - wanted) ** 2).sum(axis=1)
        return int(np.argmin(cost))


class MixedPolicy:
    """Per episode: `reach` with probability `p_reach`, else `random`."""

    def __init__(self, p_reach: float = 0.5) -> None:
        self.p_reach = p_reach
        self.reach = ReachPolicy()
        self.random = RandomPolicy()
        self.current: Policy = self.random

    def reset(self, env: ReachingEnv, rng: np.random.Generator) -> None:
        self.current = self.reach if rng.random() < self.p_reach else self.random
        self.current.reset(env, rng)

    def act(self, env: ReachingEnv, rng: np.random.Generator) -> int:
        return self.current.act(env, rng)


POLICIES: dict[str, Callable[[], Policy]] = {
    "random": RandomPolicy,
    "reach": ReachPolicy,
    "mixed": MixedPolicy,
}
"""Reaching's collection policies (`EnvFamily.collect_policies`)."""


def show_reach() -> Policy:
    """What `darla envs show` plays: reach for the target, a little noisily."""
    return ReachPolicy(epsilon=0.1)
