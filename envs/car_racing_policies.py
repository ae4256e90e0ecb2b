"""Frame-collection policies for CarRacing.

A uniform random policy barely moves the car (gas is one action in five and steering cancels it),
so its frames show the start of the track again and again. `drive` follows the track with
privileged state (the centreline), so frames show the road in curves, at speed, off its centre;
`mixed` (the default) drives with random bursts: per episode it draws how noisy to be.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from darla.envs.car_racing_render import ROAD_HALF_WIDTH
from darla.envs.policies import Policy, RandomPolicy

if TYPE_CHECKING:
    from darla.envs.car_racing import CarRacingEnv

NOOP, RIGHT, LEFT, GAS, BRAKE = range(5)


class DrivePolicy:
    """Steer towards a centreline point `lookahead` tiles ahead (offset sideways by a per-episode
    `lane`), give gas below `speed`, brake well above it; `epsilon` random actions.

    Lane and speed are drawn per episode, so the frames cover the road's width and a range of
    speeds rather than one perfect line.
    """

    def __init__(
        self,
        epsilon: float = 0.1,
        speed: tuple[float, float] = (25.0, 45.0),
        lane: float = 0.5,
        lookahead: int = 5,
    ) -> None:
        self.epsilon = epsilon
        self.speed_range = speed
        self.lane_range = lane
        self.lookahead = lookahead
        self.target_speed = float(np.mean(speed))
        self.lane = 0.0

    def reset(self, env: CarRacingEnv, rng: np.random.Generator) -> None:
        self.target_speed = float(rng.uniform(*self.speed_range))
        self.lane = float(rng.uniform(-self.lane_range, self.lane_range))

    def steering(self, env: CarRacingEnv) -> float:
        """Angle (radians, positive = left) from the car's heading to its aim point."""
        pose = env.track_pose()
        track = env.sim.track
        _, beta, x, y = track[(pose.tile + self.lookahead) % len(track)]
        shift = self.lane * ROAD_HALF_WIDTH
        aim = (x + shift * math.cos(beta), y + shift * math.sin(beta))
        hull = env.car.hull
        dx, dy = aim[0] - hull.position[0], aim[1] - hull.position[1]
        # the car drives along its local +y: heading vector (-sin a, cos a)
        bearing = math.atan2(dy, dx) - (hull.angle + math.pi / 2)
        return (bearing + math.pi) % (2 * math.pi) - math.pi

    def act(self, env: CarRacingEnv, rng: np.random.Generator) -> int:
        if rng.random() < self.epsilon:
            return int(rng.integers(env.action_space.n))
        turn = self.steering(env)
        speed = env.speed()
        if speed > 1.5 * self.target_speed:
            return BRAKE
        if abs(turn) > math.radians(8.0):
            return LEFT if turn > 0 else RIGHT
        return GAS if speed < self.target_speed else NOOP


class MixedDrivePolicy:
    """Per episode: `drive` with probability `p_drive`, its epsilon drawn from `epsilons`
    (a careful or a sloppy driver); else uniformly random actions."""

    def __init__(self, p_drive: float = 0.75, epsilons: tuple[float, ...] = (0.05, 0.3, 0.6)) -> None:
        self.p_drive = p_drive
        self.epsilons = epsilons
        self.drive = DrivePolicy()
        self.random = RandomPolicy()
        self.current: Policy = self.drive

    def reset(self, env: CarRacingEnv, rng: np.random.Generator) -> None:
        if rng.random() < self.p_drive:
            self.drive.epsilon = float(self.epsilons[int(rng.integers(len(self.epsilons)))])
            self.current = self.drive
        else:
            self.current = self.random
        self.current.reset(env, rng)

    def act(self, env: CarRacingEnv, rng: np.random.Generator) -> int:
        return self.current.act(env, rng)


CAR_POLICIES: dict[str, Callable[[], Policy]] = {
    "random": RandomPolicy,
    "drive": DrivePolicy,
    "mixed": MixedDrivePolicy,
}
"""CarRacing's collection policies (`EnvFamily.collect_policies`)."""


def show_drive() -> Policy:
    """What `darla envs show` plays: a careful driver, so the frames show the road ahead."""
    return DrivePolicy(epsilon=0.0)
