"""Reaching: DARLA's second setting, a simulated two-joint arm reaching a target on MuJoCo.

A planar arm on a table, seen at 64x64 by a fixed camera behind and above it, moves its
fingertip to a ball placed at random on the table. Reward per step, with D = fingertip-ball
distance / the arm's reach:
`-distance_weight * D + reach_bonus * [within reach_radius] + progress_weight * (D_before - D)`.
By default (0, 1, 5): a reach bonus and Reacher's dense negative distance given as shaping by its
potential (the change of -D each step; Ng et al. 1999: the same best policy), which credits each
action at once. `distance_weight=1, progress_weight=0` gives the plain Reacher-like reward, with
which PPO on pixels stayed at the random policy's return (docs/reaching.md). Episodes last 50
steps and never end early.

Actions (`ACTION_SETS`) are a small discrete set: `cartesian` (default; no-op and the fingertip's
four directions on the table, turned into joint torques through the arm's Jacobian), `axes`
(no-op, +-shoulder, +-elbow torque) or `grid` (both joints at once, 9). The joints are damped so
that a torque sets a joint speed: one frame holds the whole state, as a pixel agent without frame
stacking needs.

Domains (reaching_domains.py) change table, floor, arm and target colours, the light, the sky
and distractors, in place; ground truth (reaching_truth.py) renders frames from factors; the
collection policies (reaching_policies.py) are random, reach (scripted) and mixed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from darla.envs.family import FAMILIES, EnvFamily, get_family
from darla.envs.reaching_domains import DOMAINS, SPLITS, ReachDomain
from darla.envs.reaching_gl import prefer_headless
from darla.envs.reaching_model import ELBOW_RANGE, REACH, TIMESTEP, ReachScene, place_distractors
from darla.envs.reaching_policies import POLICIES, show_reach
from darla.envs.reaching_truth import ReachingGroundTruth
from darla.errors import ConfigError
from darla.registry import check_choice

prefer_headless()  # before anyone imports mujoco (it reads MUJOCO_GL once, at import)


@dataclass(frozen=True)
class ActionSet:
    """Discrete actions as unit commands: torque signs (shoulder, elbow), or, `cartesian`, the
    direction the fingertip should move on the table (x right, y away from the camera)."""

    vectors: tuple[tuple[int, int], ...]
    cartesian: bool = False
    effort: float = 1.0
    """Fraction of the full torque a joint-torque action applies (0.5: 3 rad/s, 0.15 rad a step)."""


ACTION_SETS: dict[str, ActionSet] = {
    "cartesian": ActionSet(((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)), cartesian=True),
    "axes": ActionSet(((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)), effort=0.5),
    "grid": ActionSet(tuple((s, e) for s in (-1, 0, 1) for e in (-1, 0, 1)), effort=0.5),
}
"""`cartesian` (default): no-op, fingertip right / left / away / towards the camera, turned into
joint torques through the arm's Jacobian: the action that helps is read off the frame as "where is
the ball from the fingertip". `axes`: no-op, +-shoulder, +-elbow torque (one joint at a time);
`grid`: both joints at once (9). With joint torques PPO on pixels settled on one constant action
within 60k steps; see docs/reaching.md."""

TARGET_RADII = (0.08, 0.26)
"""The target is drawn uniformly over this ring (m from the shoulder), inside the arm's reach."""
MIN_START_DISTANCE = 0.1
"""The fingertip starts at least this far from the target (no free reward at step 0)."""


class ReachingEnv(gymnasium.Env):
    """Move the fingertip onto the target ball; observations are uint8 HxWx3 frames."""

    family_name: ClassVar[str] = "Reaching"
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012 (gymnasium's type)

    def __init__(
        self,
        domain: str | ReachDomain | Mapping[str, Any] | None = None,
        size: int = 64,
        actions: str = "cartesian",
        fingertip_speed: float = 0.9,
        frame_skip: int = 5,
        torque: float = 12.0,
        reach_radius: float = 0.06,
        reach_bonus: float = 1.0,
        distance_weight: float = 0.0,
        progress_weight: float = 5.0,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        check_choice("Reaching action set", actions, list(ACTION_SETS))
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if frame_skip < 1 or reach_radius <= 0:
            raise ConfigError(f"need frame_skip >= 1 and reach_radius > 0, got {frame_skip}, {reach_radius}")
        if fingertip_speed <= 0:
            raise ConfigError(f"fingertip_speed must be > 0, got {fingertip_speed}")
        self.action_set = actions
        self.cartesian = ACTION_SETS[actions].cartesian
        self.action_vectors = np.array(ACTION_SETS[actions].vectors, dtype=float)
        self.effort = ACTION_SETS[actions].effort
        self.fingertip_speed = float(fingertip_speed)
        self.frame_skip = int(frame_skip)
        self.reach_radius = float(reach_radius)
        self.reach_bonus = float(reach_bonus)
        self.distance_weight = float(distance_weight)
        self.progress_weight = float(progress_weight)
        self.render_mode = render_mode
        self.size = int(size) if isinstance(size, (int, np.integer)) else size
        self.scene = ReachScene(size=size, torque=torque)
        self.joint_step = self.effort * self.scene.joint_speed * TIMESTEP * self.frame_skip
        """Radians a joint turns in one step of a joint-torque action (the scripted policy plans with it)."""
        self.cartesian_step = self.fingertip_speed * TIMESTEP * self.frame_skip
        """Metres the fingertip moves in one step of a cartesian action (away from singular poses)."""
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(len(self.action_vectors))
        if seed is not None:
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(seed)
        self.domain = self.resolve_domain(domain)
        self.scene.apply(self.domain)
        self.step_count = 0
        self.distractor_xy = np.zeros((0, 2))
        self.scene.set_state(np.array([0.0, ELBOW_RANGE[0]]), np.array([TARGET_RADII[1], 0.0]))
        self._obs: np.ndarray | None = None

    @classmethod
    def resolve_domain(cls, domain: str | ReachDomain | Mapping[str, Any] | None) -> ReachDomain:
        spec: ReachDomain = get_family(cls.family_name).domain(domain)
        return spec

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "domain" in options:
            self.domain = self.resolve_domain(options["domain"])
            self.scene.apply(self.domain)
        rng = self.np_random
        while True:
            qpos = np.array([rng.uniform(-math.pi, math.pi), rng.uniform(*ELBOW_RANGE)])
            angle = rng.uniform(-math.pi, math.pi)
            lo, hi = TARGET_RADII
            radius = math.sqrt(rng.uniform(lo * lo, hi * hi))  # uniform over the ring's area
            target = radius * np.array([math.cos(angle), math.sin(angle)])
            self.distractor_xy = place_distractors(len(self.domain.distractors), target, rng)
            self.scene.set_state(qpos, target, self.distractor_xy)
            if self.scene.distance() >= MIN_START_DISTANCE:
                break
        self.step_count = 0
        self._obs = self.scene.render()
        return self._obs, self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        index = int(action)
        if not 0 <= index < len(self.action_vectors):
            raise ConfigError(f"invalid action {action!r}; valid: 0..{len(self.action_vectors) - 1}")
        self.step_count += 1
        before = self.scene.distance()
        if self.cartesian:
            self.scene.step_cartesian(self.fingertip_speed * self.action_vectors[index], self.frame_skip)
        else:
            self.scene.step(self.effort * self.action_vectors[index], self.frame_skip)
        distance = self.scene.distance()
        reached = distance < self.reach_radius
        reward = (
            -self.distance_weight * distance / REACH
            + (self.reach_bonus if reached else 0.0)
            + self.progress_weight * (before - distance) / REACH
        )
        self._obs = self.scene.render()
        return self._obs, float(reward), False, False, self._info(distance, reached)

    def _info(self, distance: float | None = None, reached: bool | None = None) -> dict[str, Any]:
        distance = self.scene.distance() if distance is None else distance
        reached = distance < self.reach_radius if reached is None else reached
        return {"domain": self.domain.name, "distance": distance, "reached": bool(reached)}

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.scene.render()
        return None

    def close(self) -> None:
        if getattr(self, "scene", None) is not None:
            self.scene.close()
            self.scene = None

    # ------------------------------------------------------------------ privileged state
    @property
    def joint_angles(self) -> np.ndarray:
        """(shoulder, elbow) in radians; the shoulder is not wrapped."""
        return self.scene.qpos

    @property
    def target_position(self) -> np.ndarray:
        """(x, y) of the target on the table (m, shoulder at the origin)."""
        return self.scene.target

    @property
    def fingertip(self) -> np.ndarray:
        """(x, y) of the fingertip on the table (m)."""
        return self.scene.fingertip

    def in_view(self) -> bool:
        """Whether the target and the fingertip are inside the frame (the camera sees the whole
        table, so this holds unless a custom setting moves them off it)."""
        points = np.array([[*self.scene.target, 0.03], [*self.scene.fingertip, 0.045]])
        pixels = self.scene.project(points)
        return bool(((pixels >= 0) & (pixels < self.size)).all())


def _ground_truth(family: EnvFamily, size: int) -> Any:
    return ReachingGroundTruth(family, size=size)


FAMILY = EnvFamily(
    name="Reaching",
    gym_id="darla/Reaching-v0",
    entry_point="darla.envs.reaching:ReachingEnv",
    domains=DOMAINS,
    splits=SPLITS,
    description="move a two-joint arm's fingertip onto the target ball (MuJoCo); -distance + reach bonus",
    ground_truth_factory=_ground_truth,
    domain_cls=ReachDomain,
    split_rule="recombine",
    collect_policies=dict(POLICIES),
    show_policy=show_reach,
    max_episode_steps=50,  # the ball is reached in ~10-15 steps
    probe_factors=("target_x", "target_y"),  # where the ball is: what reaching needs
)
FAMILIES.register(FAMILY.name, FAMILY)
