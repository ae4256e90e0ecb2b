"""`Dots`: a tiny env family drawn in numpy, as a darla env plug-in (no MiniWorld, no OpenGL).

A square agent walks on a grid (up, down, left, right). Reaching the goal dot gives +1, the bad
dot -1; either then respawns on a free cell. Each step also pays `shaping` per cell of distance
to the goal gained (lost: the same, negative), so the reward is dense. The task never
changes; a domain is its look: the background colour and the colours of the two dots. Domains
follow DARLA's split (`recombine`): three sources show two backgrounds and two dot pairs, the
target is the held-out combination, and the ood domains show a colour no source has.

What darla needs from a family is all here: a domain dataclass (`DotsDomain`), a gymnasium env
that takes `domain`, `size`, `seed` and switches domains at `reset` (the episode time limit is the
family's `max_episode_steps`, applied by Gymnasium's TimeLimit), frame
collection policies (`random`, `mixed`), a ground truth (truth.py) and the `EnvFamily` object that
the package's `darla.envs` entry point names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import gymnasium
import numpy as np
from gymnasium import spaces

from darla.config import to_dict
from darla.envs.family import EnvFamily
from darla.envs.policies import Policy, RandomPolicy
from darla.errors import ConfigError

if TYPE_CHECKING:
    from darla_plugin_example.truth import DotsGroundTruth

Color = tuple[float, float, float]

NAVY: Color = (0.1, 0.12, 0.3)
TAN: Color = (0.7, 0.58, 0.4)
PLUM: Color = (0.4, 0.1, 0.38)
GREEN: Color = (0.15, 0.8, 0.25)
RED: Color = (0.9, 0.15, 0.15)
BLUE: Color = (0.2, 0.45, 0.95)
YELLOW: Color = (0.95, 0.85, 0.15)
CYAN: Color = (0.1, 0.85, 0.85)
ORANGE: Color = (1.0, 0.5, 0.05)
AGENT_COLOR: Color = (0.97, 0.97, 0.97)
"""The agent looks the same in every domain: it is not part of the appearance shift."""

ACTIONS = ("up", "down", "left", "right")
MOVES = np.array([(0, -1), (0, 1), (-1, 0), (1, 0)])  # (dx, dy) per action; y grows downwards
DOT_RADIUS = 0.45  # in cells: a disc that fills its cell
AGENT_HALF = 0.35  # half the agent square's side, in cells
DEFAULT_GRID = 6  # cells per side: a cell is 8 pixels at 48x48, 10.7 at 64x64


def _check_color(where: str, value: Any) -> None:
    if not isinstance(value, tuple) or len(value) != 3 or not all(0.0 <= float(c) <= 1.0 for c in value):
        raise ConfigError(f"{where}: expected 3 numbers in [0, 1], got {value!r}")


@dataclass(frozen=True)
class DotsDomain:
    """The look of one Dots domain: background and dot colours (RGB in [0, 1])."""

    name: str
    """Domain name (unique within the family)."""
    background: Color = NAVY
    """Colour of the arena."""
    goal_color: Color = GREEN
    """Colour of the rewarding dot (+1)."""
    bad_color: Color = RED
    """Colour of the dot to avoid (-1)."""
    difficulty: int = 0
    """0 = source; higher = further from the sources."""
    description: str = ""
    """One line for people: what this domain changes."""

    def validate(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"domain name must be a non-empty string, got {self.name!r}")
        for label in ("background", "goal_color", "bad_color"):
            _check_color(f"domain {self.name!r}: {label}", getattr(self, label))
        colors = [self.background, self.goal_color, self.bad_color, AGENT_COLOR]
        if len(set(colors)) < len(colors):
            raise ConfigError(
                f"domain {self.name!r}: background, goal, bad and agent ({AGENT_COLOR}) colours must "
                "all differ, or the frame cannot tell them apart"
            )
        if self.difficulty < 0:
            raise ConfigError(f"difficulty must be >= 0, got {self.difficulty}")

    def factors(self) -> dict[str, Any]:
        """Appearance factor values (the ground truth's appearance factors)."""
        return {"background": self.background, "goal_color": self.goal_color, "bad_color": self.bad_color}

    def combination(self) -> tuple[Color, Color, Color]:
        return (self.background, self.goal_color, self.bad_color)

    def replace(self, **changes: Any) -> DotsDomain:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


_DOMAINS = [
    DotsDomain("navy_greenred", NAVY, GREEN, RED, description="source: navy arena, green+ red-"),
    DotsDomain("navy_blueyellow", NAVY, BLUE, YELLOW, description="source: navy arena, blue+ yellow-"),
    DotsDomain("tan_greenred", TAN, GREEN, RED, description="source: tan arena, green+ red-"),
    DotsDomain("tan_blueyellow", TAN, BLUE, YELLOW, 1, "target: held-out combination tan x blue/yellow"),
    DotsDomain("plum_greenred", PLUM, GREEN, RED, 2, "ood: unseen background (plum), green+ red-"),
    DotsDomain("navy_cyanorange", NAVY, CYAN, ORANGE, 3, "ood: navy arena, unseen dots (cyan+ orange-)"),
]
DOMAINS = {d.name: d for d in _DOMAINS}
SPLITS = {
    "source": ("navy_greenred", "navy_blueyellow", "tan_greenred"),
    "target": ("tan_blueyellow",),
    "ood": ("plum_greenred", "navy_cyanorange"),
}


@cache
def rgb(color: Color) -> np.ndarray:
    """A colour in [0, 1] as uint8 RGB."""
    return np.round(np.asarray(color) * 255).astype(np.uint8)


class Painter:
    """Draws Dots frames of one size and grid: pixel centres are computed once, a frame is three
    masks over them (tens of microseconds at 64x64)."""

    def __init__(self, size: int, grid: int) -> None:
        self.size = int(size)
        self.grid = int(grid)
        self.centres = (np.arange(self.size) + 0.5) * self.grid / self.size  # in cell units

    def _dot(self, cell: np.ndarray) -> np.ndarray:
        dx = (self.centres - (cell[0] + 0.5)) ** 2
        dy = (self.centres - (cell[1] + 0.5)) ** 2
        return dy[:, None] + dx[None, :] <= DOT_RADIUS**2

    def _square(self, cell: np.ndarray) -> np.ndarray:
        cols = np.abs(self.centres - (cell[0] + 0.5)) <= AGENT_HALF
        rows = np.abs(self.centres - (cell[1] + 0.5)) <= AGENT_HALF
        return rows[:, None] & cols[None, :]

    def draw(self, domain: DotsDomain, agent: np.ndarray, goal: np.ndarray, bad: np.ndarray) -> np.ndarray:
        """One uint8 (size, size, 3) frame; on a shared cell the agent covers the goal, the goal the bad dot."""
        frame = np.empty((self.size, self.size, 3), dtype=np.uint8)
        frame[:] = rgb(domain.background)
        frame[self._dot(bad)] = rgb(domain.bad_color)
        frame[self._dot(goal)] = rgb(domain.goal_color)
        frame[self._square(agent)] = rgb(AGENT_COLOR)
        return frame


class DotsEnv(gymnasium.Env):
    """Reach the goal dot (+1), avoid the bad dot (-1); observations are uint8 HxWx3 frames."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 (gymnasium's attribute)

    def __init__(
        self,
        domain: str | DotsDomain | Mapping[str, Any] | None = None,
        size: int = 64,
        seed: int | None = None,
        render_mode: str | None = None,
        grid: int = DEFAULT_GRID,
        goal_reward: float = 1.0,
        bad_reward: float = -1.0,
        shaping: float = 0.1,
    ) -> None:
        if not isinstance(size, (int, np.integer)) or size < 8:
            raise ConfigError(f"size must be an integer >= 8, got {size!r}")
        if not isinstance(grid, (int, np.integer)) or not 3 <= grid <= size:
            raise ConfigError(f"grid must be an integer in [3, size={size}], got {grid!r}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.domain: DotsDomain = FAMILY.domain(domain)
        self.size, self.grid = int(size), int(grid)
        self.goal_reward, self.bad_reward = float(goal_reward), float(bad_reward)
        self.shaping = float(shaping)
        self.render_mode = render_mode
        self.action_names = ACTIONS
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.painter = Painter(self.size, self.grid)
        self.agent = np.zeros(2, dtype=np.int64)
        self.goal = np.array([1, 0], dtype=np.int64)
        self.bad = np.array([2, 0], dtype=np.int64)
        self.step_count = 0
        self.collected = 0
        if seed is not None:
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(seed)

    def _free_cell(self) -> np.ndarray:
        taken = {int(c[1] * self.grid + c[0]) for c in (self.agent, self.goal, self.bad)}
        free = [i for i in range(self.grid * self.grid) if i not in taken]
        index = free[int(self.np_random.integers(len(free)))]
        return np.array([index % self.grid, index // self.grid], dtype=np.int64)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "domain" in options:
            self.domain = FAMILY.domain(options["domain"])
        cells = self.np_random.choice(self.grid * self.grid, size=3, replace=False)
        self.agent, self.goal, self.bad = (np.array([c % self.grid, c // self.grid]) for c in cells)
        self.step_count = 0
        self.collected = 0
        return self.render_obs(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        index = int(action)
        if not 0 <= index < len(ACTIONS):
            raise ConfigError(
                f"invalid action {action!r}; valid: 0..{len(ACTIONS) - 1} ({', '.join(ACTIONS)})"
            )
        self.step_count += 1
        before = self.goal_distance()
        self.agent = np.clip(self.agent + MOVES[index], 0, self.grid - 1)
        reward = self.shaping * (before - self.goal_distance())
        if np.array_equal(self.agent, self.goal):
            reward, self.collected = reward + self.goal_reward, self.collected + 1
            self.goal = self._free_cell()
        elif np.array_equal(self.agent, self.bad):
            reward += self.bad_reward
            self.bad = self._free_cell()
        return self.render_obs(), reward, False, False, self._info()

    def goal_distance(self) -> int:
        """Steps from the agent to the goal dot (Manhattan distance on the grid)."""
        return int(np.abs(self.goal - self.agent).sum())

    def render_obs(self) -> np.ndarray:
        return self.painter.draw(self.domain, self.agent, self.goal, self.bad)

    def render(self) -> np.ndarray | None:
        return self.render_obs() if self.render_mode == "rgb_array" else None

    def in_view(self) -> bool:
        """The whole arena is in every frame, the goal dot included."""
        return True

    def _info(self) -> dict[str, Any]:
        return {"domain": self.domain.name}


# ------------------------------------------------------------------------- collection policies
class GoalSeeker:
    """Walk towards the goal dot along its longer axis (privileged state); `epsilon` random steps."""

    def __init__(self, epsilon: float = 0.2) -> None:
        self.epsilon = epsilon

    def reset(self, env: DotsEnv, rng: np.random.Generator) -> None:
        return None

    def act(self, env: DotsEnv, rng: np.random.Generator) -> int:
        dx, dy = (int(v) for v in env.goal - env.agent)
        if rng.random() < self.epsilon or dx == dy == 0:
            return int(rng.integers(len(ACTIONS)))
        if abs(dx) >= abs(dy):
            return ACTIONS.index("right" if dx > 0 else "left")
        return ACTIONS.index("down" if dy > 0 else "up")


class MixedPolicy:
    """Per episode: the goal seeker with probability `p_seek`, else uniform random actions, so the
    see stage's frames show the agent both on its way to the goal and anywhere else."""

    def __init__(self, p_seek: float = 0.5) -> None:
        self.p_seek = p_seek
        self.seek = GoalSeeker()
        self.random = RandomPolicy()
        self.current: Policy = self.random

    def reset(self, env: DotsEnv, rng: np.random.Generator) -> None:
        self.current = self.seek if rng.random() < self.p_seek else self.random
        self.current.reset(env, rng)

    def act(self, env: DotsEnv, rng: np.random.Generator) -> int:
        return self.current.act(env, rng)


def show_policy() -> Policy:
    """What `darla envs show` plays: mostly the goal seeker."""
    return GoalSeeker(epsilon=0.1)


def ground_truth(family: EnvFamily, size: int) -> DotsGroundTruth:
    from darla_plugin_example.truth import DotsGroundTruth

    return DotsGroundTruth(family, size)


FAMILY = EnvFamily(
    name="Dots",
    gym_id="darla_plugin_example/Dots-v0",
    entry_point="darla_plugin_example.env:DotsEnv",
    domains=DOMAINS,
    splits=SPLITS,
    description="numpy 2D arena: reach the goal dot (+1), avoid the bad dot (-1); dots respawn",
    ground_truth_factory=ground_truth,
    domain_cls=DotsDomain,
    split_rule="recombine",
    collect_policies={"random": RandomPolicy, "seek": GoalSeeker, "mixed": MixedPolicy},
    show_policy=show_policy,
    max_episode_steps=100,
    probe_factors=("goal_x", "goal_y"),
)
"""The `darla.envs` entry point: darla registers it as `Dots` (and with gymnasium by its gym id)."""
