"""Reaching's ground truth, in disentanglement_lib's `GroundTruthData` shape.

Factors: the appearance factors of the family's domains (each with the values its domains use;
one with a single value is left out) and four pose factors binned on fixed grids: shoulder angle
(16 bins round the circle), elbow angle (9 over its range), target x and target y (8 each, over the table part
the arm reaches). A frame is drawn by one reused scene: apply the appearance in place, set the
joint angles and the target, forward, render (distractors, if any, at random spots: the only
nuisance, drawn from the caller's rng).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from darla.envs.grid_truth import GridTruth
from darla.envs.reaching_domains import ReachDomain
from darla.envs.reaching_model import ReachScene, place_distractors
from darla.envs.reaching_policies import wrap
from darla.errors import ConfigError

if TYPE_CHECKING:
    from darla.envs.family import EnvFamily
    from darla.envs.reaching import ReachingEnv

SHOULDER_BINS = 16
SHOULDER = tuple(float(-math.pi + (k + 0.5) * 2 * math.pi / SHOULDER_BINS) for k in range(SHOULDER_BINS))
ELBOW = tuple(float(v) for v in np.linspace(0.2, 2.6, 9))
TARGET_XY = tuple(float(v) for v in np.linspace(-0.24, 0.24, 8))
POSE_GRIDS: dict[str, tuple[float, ...]] = {
    "shoulder": SHOULDER,
    "elbow": ELBOW,
    "target_x": TARGET_XY,
    "target_y": TARGET_XY,
}


@dataclass(frozen=True)
class AppearanceFactor:
    """One appearance factor: its values (in domain order) and how to write one into a spec."""

    name: str
    values: tuple[Any, ...]
    set: Callable[[ReachDomain, Any], ReachDomain]


def _field(name: str) -> Callable[[ReachDomain, Any], ReachDomain]:
    return lambda spec, value: dataclasses.replace(spec, **{name: value})


def _light(spec: ReachDomain, value: Any) -> ReachDomain:
    light, top, bottom = value
    return dataclasses.replace(spec, light_color=light, sky_top=top, sky_bottom=bottom)


SETTERS: dict[str, Callable[[ReachDomain, Any], ReachDomain]] = {
    "table": _field("table"),
    "floor": _field("floor"),
    "arm_color": _field("arm_color"),
    "target_color": _field("target_color"),
    "light": _light,
    "distractors": _field("distractors"),
}
"""How each factor of `ReachDomain.factors()` is written back into a spec."""


def _nearest(grid: tuple[float, ...], value: float, circular: bool = False, clamp: bool = False) -> int:
    """Index of the grid value nearest `value`; -1 if it lies more than half a bin outside the grid
    (unless `circular`, or `clamp`: a joint whose whole range the grid spans)."""
    values = np.array(grid)
    gaps = np.abs(wrap(values - value)) if circular else np.abs(values - value)
    step = (values[1] - values[0]) if len(values) > 1 else math.inf
    index = int(np.argmin(gaps))
    return index if circular or clamp or gaps[index] <= step / 2 + 1e-9 else -1


class ReachingGroundTruth(GridTruth[ReachScene]):
    """Factors and renderer of the Reaching family."""

    def __init__(self, family: EnvFamily, size: int = 64) -> None:
        super().__init__(family, size)
        domains = [family.domains[n] for n in family.domain_names()]
        self.base: ReachDomain = domains[0]
        self.appearance = []
        for name, setter in SETTERS.items():
            values = tuple(dict.fromkeys(d.factors()[name] for d in domains))
            if len(values) > 1:
                self.appearance.append(AppearanceFactor(name, values, setter))
        self.factor_names = tuple([f.name for f in self.appearance] + list(POSE_GRIDS))
        self.factor_sizes = tuple(
            [len(f.values) for f in self.appearance] + [len(g) for g in POSE_GRIDS.values()]
        )

    def values(self, name: str) -> tuple[Any, ...]:
        """The values behind the indices of factor `name` (surfaces, colours, angles, metres)."""
        for f in self.appearance:
            if f.name == name:
                return f.values
        if name not in POSE_GRIDS:
            raise ConfigError(f"unknown factor {name!r}; valid: {', '.join(self.factor_names)}")
        return POSE_GRIDS[name]

    def make_renderer(self) -> ReachScene:
        return ReachScene(size=self.size)

    def domain_columns(self, domain: str) -> dict[int, int]:
        factors = self.family.domain(domain).factors()
        return {i: f.values.index(factors[f.name]) for i, f in enumerate(self.appearance)}

    def spec_for(self, row: np.ndarray) -> ReachDomain:
        """The domain spec that the appearance part of a factor row describes."""
        spec = dataclasses.replace(self.base, name="ground_truth")
        for i, f in enumerate(self.appearance):
            spec = f.set(spec, f.values[int(row[i])])
        return spec

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One frame per factor row (appearance in place, joint angles, target; forward; render)."""
        factors = self.check_factors(factors)
        scene = self.renderer()
        out = np.empty((len(factors), *self.image_shape), dtype=np.uint8)
        na = len(self.appearance)
        for i, row in enumerate(factors):
            spec = self.spec_for(row)
            scene.apply(spec)
            shoulder, elbow, tx, ty = (grid[int(k)] for grid, k in zip(POSE_GRIDS.values(), row[na:]))
            target = np.array([tx, ty])
            scene.set_state(
                np.array([shoulder, elbow]), target, place_distractors(len(spec.distractors), target, rng)
            )
            out[i] = scene.render()
        return out

    # ------------------------------------------------------------------ labels for env frames
    def label(self, env: ReachingEnv) -> np.ndarray:
        """Factor indices describing the env's current frame (-1 where no value applies)."""
        raw: Any = getattr(env, "unwrapped", env)
        row = np.full(self.num_factors, -1, dtype=np.int64)
        factors = raw.domain.factors()
        for i, f in enumerate(self.appearance):
            if factors[f.name] in f.values:
                row[i] = f.values.index(factors[f.name])
        shoulder, elbow = raw.joint_angles
        tx, ty = raw.target_position
        na = len(self.appearance)
        row[na] = _nearest(SHOULDER, float(wrap(shoulder)), circular=True)
        row[na + 1] = _nearest(ELBOW, float(elbow), clamp=True)  # soft limits: a little past the range
        row[na + 2] = _nearest(TARGET_XY, float(tx))
        row[na + 3] = _nearest(TARGET_XY, float(ty))
        return row
