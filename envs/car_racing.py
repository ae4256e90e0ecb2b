"""CarRacing: gymnasium's `CarRacing-v3` (Box2D) in LUSR's colour variants.

The task is gymnasium's: a random closed track every episode, +1000/N for each of the N tiles
first touched, -0.1 per frame, -100 and the end for leaving the playfield, the end on completing
a lap. The agent sees what published CarRacing PPO setups see: the top 84 of 96 rows (no
indicator bar) at 64x64, acts every 4 frames (frame skip) with gymnasium's 5 discrete actions
(noop, right, left, gas, brake).

Domains are LUSR's (Xing et al., AAAI 2021; the `CarRacing2-7` envs of their gym fork): the
same world with other grass, road and car colours, and two markers (black side bars, a red
square beside the car). These are native domains: the simulator's own colours change, not the
finished picture. The source is gymnasium's default look; every target shows colours no source
has (split rule `held_out`); targets keep the road grey and change what surrounds it; ood
domains recolour the road itself, the surface the policy must follow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from darla.config import to_dict
from darla.envs.car_racing_policies import CAR_POLICIES, show_drive
from darla.envs.car_racing_render import Palette, TrackRenderer
from darla.envs.car_racing_truth import CarGroundTruth
from darla.envs.domains import Color
from darla.envs.family import FAMILIES, EnvFamily, get_family
from darla.errors import ConfigError

# gymnasium.envs.box2d imports pygame: car_racing_render set the headless SDL drivers first
from gymnasium.envs.box2d.car_dynamics import SIZE, WHEELPOS, Car  # isort: skip
from gymnasium.envs.box2d.car_racing import CarRacing  # isort: skip

ACTION_NAMES = ("noop", "right", "left", "gas", "brake")
"""gymnasium's discrete CarRacing actions: steer -/+0.6, gas 0.2, brake 0.8 (one at a time)."""
FRAMES_PER_EPISODE = 1000
"""CarRacing-v3's time limit in simulator frames (250 agent steps at frame skip 4)."""


def _check_color(where: str, value: tuple[float, ...]) -> None:
    if len(value) != 3 or not all(0.0 <= float(c) <= 1.0 for c in value):
        raise ConfigError(f"{where}: expected 3 numbers in [0, 1], got {value!r}")


@dataclass(frozen=True)
class CarDomain:
    """The look of one CarRacing domain (colours in [0, 1]); the track and the rules never change."""

    name: str
    """Domain name (unique within the family)."""
    bg_color: Color = (0.4, 0.8, 0.4)
    """Grass between the patches (gymnasium's `bg_color`)."""
    grass_color: Color = (0.4, 0.9, 0.4)
    """Grass patches (gymnasium's `grass_color`)."""
    road_color: Color = (0.4, 0.4, 0.4)
    """Road tiles (gymnasium's `road_color`)."""
    car_color: Color = (0.8, 0.0, 0.0)
    """Car body (the hull; the wheels stay black)."""
    side_bars: bool = False
    """LUSR's black bars down both sides of the frame (CarRacing4/7)."""
    blob: bool = False
    """LUSR's red square that rides beside the car (CarRacing5/7)."""
    difficulty: int = 0
    """0 = source; higher = a larger shift away from the source."""
    description: str = ""
    """One line for people: what this domain changes."""

    def validate(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"domain name must be a non-empty string, got {self.name!r}")
        for label in ("bg_color", "grass_color", "road_color", "car_color"):
            _check_color(f"domain {self.name!r} {label}", getattr(self, label))
        if self.difficulty < 0:
            raise ConfigError(f"difficulty must be >= 0, got {self.difficulty}")

    @property
    def palette(self) -> Palette:
        return Palette(
            self.bg_color, self.grass_color, self.road_color, self.car_color, self.side_bars, self.blob
        )

    def factors(self) -> dict[str, Any]:
        """The value of every appearance factor (the ground truth's factor names)."""
        return {
            "grass": (self.bg_color, self.grass_color),
            "road": self.road_color,
            "car": self.car_color,
            "marks": (self.side_bars, self.blob),
        }

    def combination(self) -> tuple[Any, ...]:
        return tuple(self.factors().values())

    def replace(self, **changes: Any) -> CarDomain:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


# LUSR's colours (their gym fork's car_racing2-7.py and car_dynamics.Car2-5), in [0, 1]
SLATE_ROAD = (0.3, 0.4, 0.5)
TEAL_BG, TEAL_GRASS = (0.3, 0.63, 0.7), (0.4, 0.63, 0.7)
PINK_CAR = (1.0, 0.42, 0.62)
_DOMAINS = [
    CarDomain("default", description="source: gymnasium's colours (LUSR's CarRacing-v0)"),
    CarDomain(
        "sage", bg_color=(0.5, 0.7, 0.6), grass_color=(0.5, 0.8, 0.6), difficulty=1,
        description="target: grey-green grass (LUSR CarRacing6)",
    ),
    CarDomain(
        "yellow", bg_color=(0.8, 0.8, 0.4), grass_color=(0.8, 0.9, 0.4), car_color=(0.0, 0.58, 0.71),
        difficulty=2, description="target: yellow grass, blue car (LUSR CarRacing2)",
    ),
    CarDomain(
        "sky", bg_color=(0.54, 0.67, 0.89), grass_color=(0.44, 0.67, 0.89), car_color=PINK_CAR, blob=True,
        difficulty=3, description="target: light blue grass, pink car, red square beside it (LUSR CarRacing5)",
    ),
    CarDomain(
        "teal", bg_color=TEAL_BG, grass_color=TEAL_GRASS, car_color=(1.0, 0.4, 0.0), side_bars=True, difficulty=3,
        description="target: teal grass, orange car, black side bars (LUSR CarRacing4)",
    ),
    CarDomain(
        "peach", bg_color=(0.95, 0.62, 0.53), grass_color=(0.95, 0.72, 0.53), road_color=SLATE_ROAD,
        car_color=(0.0, 0.8, 0.0), difficulty=4,
        description="ood: peach grass, slate-blue road, green car (LUSR CarRacing3)",
    ),
    CarDomain(
        "teal_slate", bg_color=TEAL_BG, grass_color=TEAL_GRASS, road_color=SLATE_ROAD, car_color=PINK_CAR, side_bars=True, blob=True,
        difficulty=5, description="ood: teal grass, slate-blue road, pink car, square and bars (LUSR CarRacing7)",
    ),
]  # fmt: skip
DOMAINS = {d.name: d for d in _DOMAINS}
SPLITS = {
    "source": ("default",),
    "target": ("sage", "yellow", "sky", "teal"),
    "ood": ("peach", "teal_slate"),
}


class _Simulator(CarRacing):
    """gymnasium's CarRacing minus its per-frame pixel rendering (the slow part: ~30 ms a frame);
    `CarRacingEnv` draws the observation itself, once per agent step."""

    def _render(self, mode: str) -> Any:
        if mode == "state_pixels":
            return None
        return super()._render(mode)


class TrackPose(NamedTuple):
    """Where the car is relative to the track (privileged state)."""

    tile: int
    """index of the nearest centreline point (the tile the car is on or nearest)"""
    offset: float
    """signed distance from the centreline, world units (positive: right of the driving direction)"""
    heading: float
    """car heading minus the track's direction, radians in [-pi, pi) (positive: turned left)"""
    progress: float
    """index / number of tiles, in [0, 1)"""


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class CarRacingEnv(gym.Env):
    """CarRacing with named colour domains, frame skip and the cropped 64x64 view (uint8 HxWx3)."""

    family_name: ClassVar[str] = "CarRacing"
    # one frame per agent step: gymnasium's 50 simulator frames/s over the default frame skip of 4
    metadata = {"render_modes": ["rgb_array"], "render_fps": 12.5}  # noqa: RUF012 (gymnasium's attribute)

    def __init__(
        self,
        domain: str | CarDomain | Mapping[str, Any] | None = None,
        size: int = 64,
        frame_skip: int = 4,
        lap_complete_percent: float = 0.95,
        supersample: int = 4,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(size, (int, np.integer)) or size < 8:
            raise ConfigError(f"size must be an integer >= 8, got {size!r}")
        if frame_skip < 1 or supersample < 1:
            raise ConfigError(f"frame_skip and supersample must be >= 1, got {frame_skip}, {supersample}")
        if not 0.0 < lap_complete_percent <= 1.0:
            raise ConfigError(f"lap_complete_percent must be in (0, 1], got {lap_complete_percent}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.size = int(size)
        self.frame_skip = int(frame_skip)
        self.render_mode = render_mode
        self.action_names = ACTION_NAMES
        self.action_space = spaces.Discrete(len(ACTION_NAMES))
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), dtype=np.uint8)
        self.sim = _Simulator(continuous=False, lap_complete_percent=float(lap_complete_percent))
        self.renderer = TrackRenderer(self.size, int(supersample))
        self.domain = self.resolve_domain(domain)
        self._apply_domain(self.domain)
        self._first_seed = seed
        self.step_count = 0

    # ------------------------------------------------------------------ domains
    @classmethod
    def resolve_domain(cls, domain: str | CarDomain | Mapping[str, Any] | None) -> CarDomain:
        spec: CarDomain = get_family(cls.family_name).domain(domain)
        return spec

    def _apply_domain(self, spec: CarDomain) -> None:
        """Colours only: the renderer reads them every frame, so no track is rebuilt. The simulator
        gets them too (its own `render()` and its contact listener, which recolours touched tiles)."""
        self.domain = spec
        sim = self.sim
        sim.bg_color = np.array(spec.bg_color) * 255
        sim.grass_color = np.array(spec.grass_color) * 255
        sim.road_color = np.array(spec.road_color) * 255
        tile: Any
        for i, tile in enumerate(sim.road or []):
            tile.color[:] = sim.road_color + (0 if tile.road_visited else 0.01 * (i % 3) * 255)
        if sim.car is not None:
            sim.car.hull.color = tuple(spec.car_color)

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._first_seed is not None:
            seed = self._first_seed
        self._first_seed = None
        super().reset(seed=seed)
        if options and "domain" in options:
            self.domain = self.resolve_domain(options["domain"])
        # a new track every episode (CarRacing's design); its seed comes from the env's generator
        self.sim.reset(seed=int(self.np_random.integers(2**31 - 1)))
        self._apply_domain(self.domain)
        self.renderer.set_track(self.sim)
        self.step_count = 0
        return self.render_obs(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        index = int(action)
        if not 0 <= index < len(ACTION_NAMES):
            raise ConfigError(f"invalid action {action!r}; valid: 0..{len(ACTION_NAMES) - 1} {ACTION_NAMES}")
        self.step_count += 1
        reward, terminated = 0.0, False
        info: dict[str, Any] = {}
        for _ in range(self.frame_skip):
            _, r, terminated, _, info = self.sim.step(index)
            reward += float(r)
            if terminated:
                break
        return self.render_obs(), reward, bool(terminated), False, {**self._info(), **info}

    def _info(self) -> dict[str, Any]:
        return {"domain": self.domain.name}

    def render_obs(self) -> np.ndarray:
        """The observation of the current state (the frame `step` returns)."""
        return self.renderer.draw(self.sim, self.domain.palette)

    def render(self) -> np.ndarray | None:
        """`rgb_array`: the observation's view at the renderer's full canvas resolution."""
        if self.render_mode == "rgb_array":
            return self.renderer.draw(self.sim, self.domain.palette, out_size=self.renderer.canvas_px)
        return None

    def close(self) -> None:
        self.sim.close()
        super().close()

    # ------------------------------------------------------------------ privileged state
    @property
    def car(self) -> Car:
        """The simulator's car (one exists from the first reset on)."""
        if self.sim.car is None:
            raise ConfigError("the env has no car before its first reset(): call reset() first")
        return self.sim.car

    def speed(self) -> float:
        """Car speed, world units per second."""
        vx, vy = self.car.hull.linearVelocity
        return float(math.hypot(vx, vy))

    def track_pose(self) -> TrackPose:
        centre = self.renderer.centre
        hull = self.car.hull
        pos = np.array(tuple(hull.position))
        tile = int(np.argmin(((centre - pos) ** 2).sum(axis=1)))
        _, beta, x, y = self.sim.track[tile]
        # the track runs along (-sin beta, cos beta); its width along (cos beta, sin beta)
        offset = float((pos[0] - x) * math.cos(beta) + (pos[1] - y) * math.sin(beta))
        return TrackPose(tile, offset, _wrap(float(hull.angle) - beta), tile / len(centre))

    def in_view(self) -> bool:
        """Whether the frame shows road (frame collection records how often it does)."""
        hull = self.car.hull
        return self.renderer.road_in_view(np.array(tuple(hull.position)), float(hull.angle))

    def place_car(self, index: int, offset: float, heading: float) -> None:
        """Put the car at rest `offset` units right of centreline point `index`, turned `heading`
        radians left of the track's direction (wheels straight): ground truth draws poses this way."""
        _, beta, x, y = self.sim.track[index % len(self.sim.track)]
        angle = beta + heading
        cx, cy = x + offset * math.cos(beta), y + offset * math.sin(beta)
        car = self.car
        c, s = math.cos(angle), math.sin(angle)
        car.hull.transform = ((cx, cy), angle)
        for wheel, (wx, wy) in zip(car.wheels, WHEELPOS):
            lx, ly = wx * SIZE, wy * SIZE
            wheel.transform = ((cx + c * lx - s * ly, cy + s * lx + c * ly), angle)
        for body in (car.hull, *car.wheels):
            body.linearVelocity = (0.0, 0.0)
            body.angularVelocity = 0.0


def _ground_truth(family: EnvFamily, size: int) -> Any:
    return CarGroundTruth(family, size)


def _make_family() -> EnvFamily:
    return EnvFamily(
        name="CarRacing",
        gym_id="darla/CarRacing-v0",
        entry_point="darla.envs.car_racing:CarRacingEnv",
        domains=DOMAINS,
        splits=SPLITS,
        description="gymnasium CarRacing-v3, discrete, frame skip 4, 64x64 top crop; LUSR's colour variants",
        ground_truth_factory=_ground_truth,
        domain_cls=CarDomain,
        split_rule="held_out",
        collect_policies=dict(CAR_POLICIES),
        show_policy=show_drive,
        max_episode_steps=FRAMES_PER_EPISODE // 4,  # CarRacing-v3's 1000 frames at the default frame skip
        probe_factors=("offset", "heading"),  # where the car is on the road: what steering needs
    )


FAMILY = _make_family()
FAMILIES.register(FAMILY.name, FAMILY)
