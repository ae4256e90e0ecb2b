"""Ground truth of CarRacing in disentanglement_lib's `GroundTruthData` shape.

Appearance factors take the values the family's domains use (grass, road and car colours, LUSR's
markers). Pose factors place the car on one fixed reference track: where along the lap
(`progress`), how far off the centreline (`offset`) and how turned against the track's direction
(`heading`); the view is car-centred, so these are what a frame shows of the pose (absolute x, y
would only show as which stretch of track is in view, which `progress` names). Frames are drawn by
one env that sets the car's bodies to the pose and renders: no physics, no reset per frame.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from darla.envs.grid_truth import GridTruth
from darla.errors import ConfigError

if TYPE_CHECKING:
    from darla.envs.car_racing import CarDomain, CarRacingEnv
    from darla.envs.family import EnvFamily

REFERENCE_TRACK_SEED = 0
PROGRESS_BINS = 8
"""Stretches of the reference track (fractions of the lap: 0, 1/8, ...)."""
OFFSETS = (-6.0, -3.0, 0.0, 3.0, 6.0)
"""World units right of the centreline; the road's half width is 6.67."""
HEADINGS_DEG = (-40.0, -20.0, 0.0, 20.0, 40.0)
"""Degrees turned left of the track's direction."""
POSE_FACTORS = (("progress", PROGRESS_BINS), ("offset", len(OFFSETS)), ("heading", len(HEADINGS_DEG)))


@dataclass(frozen=True)
class AppearanceFactor:
    name: str
    values: tuple[Any, ...]
    fields: tuple[str, ...]
    """CarDomain fields this factor sets (a tuple value spreads over several fields)."""

    def get(self, domain: CarDomain) -> Any:
        return domain.factors()[self.name]

    def set(self, data: dict[str, Any], value: Any) -> None:
        values = value if len(self.fields) > 1 else (value,)
        data.update(zip(self.fields, values))


FACTOR_FIELDS: dict[str, tuple[str, ...]] = {
    "grass": ("bg_color", "grass_color"),
    "road": ("road_color",),
    "car": ("car_color",),
    "marks": ("side_bars", "blob"),
}


def appearance_factors(domains: list[CarDomain]) -> list[AppearanceFactor]:
    """The factors of `CarDomain.factors` that take more than one value across `domains`."""
    out = []
    for name, fields in FACTOR_FIELDS.items():
        values = tuple(dict.fromkeys(d.factors()[name] for d in domains))
        if len(values) > 1:
            out.append(AppearanceFactor(name, values, fields))
    return out


def _nearest(grid: np.ndarray, value: float, tolerance: float) -> int:
    """Index of the grid value nearest `value`, or -1 if it is farther than `tolerance`."""
    k = int(np.argmin(np.abs(grid - value)))
    return k if abs(grid[k] - value) <= tolerance else -1


class CarGroundTruth(GridTruth["CarRacingEnv"]):
    """Factors and renderer for the CarRacing family."""

    def __init__(self, family: EnvFamily, size: int = 64) -> None:
        super().__init__(family, size)
        domains = [family.domains[n] for n in family.domain_names()]
        self.base = domains[0]
        self.appearance = appearance_factors(domains)
        self.factor_names = tuple([f.name for f in self.appearance] + [n for n, _ in POSE_FACTORS])
        self.factor_sizes = tuple([len(f.values) for f in self.appearance] + [k for _, k in POSE_FACTORS])

    def values(self, name: str) -> tuple[Any, ...]:
        """The values behind the indices of factor `name` (colours, bins...)."""
        for f in self.appearance:
            if f.name == name:
                return f.values
        grids: dict[str, tuple[Any, ...]] = {
            "progress": tuple(k / PROGRESS_BINS for k in range(PROGRESS_BINS)),
            "offset": OFFSETS,
            "heading": HEADINGS_DEG,
        }
        if name not in grids:
            raise ConfigError(f"unknown factor {name!r}; valid: {', '.join(self.factor_names)}")
        return grids[name]

    def make_renderer(self) -> CarRacingEnv:
        env: CarRacingEnv = self.family.make(
            self.base.name, seed=REFERENCE_TRACK_SEED, size=self.size
        ).unwrapped
        env.reset(seed=REFERENCE_TRACK_SEED)
        return env

    def domain_columns(self, domain: str) -> dict[int, int]:
        spec = self.family.domain(domain)
        return {i: f.values.index(f.get(spec)) for i, f in enumerate(self.appearance)}

    def spec_for(self, row: np.ndarray) -> CarDomain:
        """The domain spec that the appearance part of a factor row describes."""
        data = {f.name: getattr(self.base, f.name) for f in dataclasses.fields(self.base)}
        for i, f in enumerate(self.appearance):
            f.set(data, f.values[int(row[i])])
        data["name"] = "ground_truth"
        spec: CarDomain = type(self.base)(**data)
        return spec

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Render one frame per factor row. `progress` picks a stretch of the reference track; the
        point within it (an eighth of the lap) is the only nuisance, drawn from `rng`."""
        factors = self.check_factors(factors)
        env = self.renderer()
        tiles = len(env.sim.track)
        stretch = tiles / PROGRESS_BINS
        out = np.empty((len(factors), *self.image_shape), dtype=np.uint8)
        na = len(self.appearance)
        for i, row in enumerate(factors):
            progress, offset, heading = (int(v) for v in row[na:])
            index = int(progress * stretch + rng.uniform(0, stretch)) % tiles
            env.domain = self.spec_for(row)
            env.place_car(index, OFFSETS[offset], math.radians(HEADINGS_DEG[heading]))
            out[i] = env.render_obs()
        return out

    # ------------------------------------------------------------------ labels for env frames
    def label(self, env: CarRacingEnv) -> np.ndarray:
        """Factor indices describing the env's current frame (-1 where no value applies).

        `progress` is -1: it names stretches of the reference track, and an episode's track is
        another one. `offset` and `heading` are the nearest bins, or -1 beyond half a bin past
        the outermost (off the road, or turned across it)."""
        row = np.full(self.num_factors, -1, dtype=np.int64)
        for i, f in enumerate(self.appearance):
            value = f.get(env.domain)
            if value in f.values:
                row[i] = f.values.index(value)
        na = len(self.appearance)
        pose = env.track_pose()
        row[na + 1] = _nearest(np.array(OFFSETS), pose.offset, 1.5)
        row[na + 2] = _nearest(np.array(HEADINGS_DEG), math.degrees(pose.heading), 10.0)
        return row
