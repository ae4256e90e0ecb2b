"""Ground-truth factors of a room family, in disentanglement_lib's `GroundTruthData` shape.

Appearance factors take the values the family's domains use (walls, floors, ceilings, lights,
object colours and shapes); pose factors place the agent and one good and one bad object in
front of it, so every frame shows both objects. Frames are drawn by one reused env that
repositions entities (no rebuild per frame): thousands of frames per second of CPU.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from darla.envs.domains import DomainSpec
from darla.envs.grid_truth import GridTruth
from darla.errors import ConfigError

if TYPE_CHECKING:
    from darla.envs.base import DomainRoomEnv
    from darla.envs.family import EnvFamily


@runtime_checkable
class GroundTruth(Protocol):
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    image_shape: tuple[int, int, int]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray: ...

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class AppearanceFactor:
    """One appearance factor: its values, how to read it from a spec and how to set it."""

    name: str
    values: tuple[Any, ...]
    get: Callable[[DomainSpec], Any]
    set: Callable[[dict[str, Any], Any], None]


def _set_fields(*names: str) -> Callable[[dict[str, Any], Any], None]:
    def setter(spec: dict[str, Any], value: Any) -> None:
        values = value if len(names) > 1 else (value,)
        for name, v in zip(names, values):
            spec[name] = v

    return setter


def _set_object(role: str, field: str) -> Callable[[dict[str, Any], Any], None]:
    def setter(spec: dict[str, Any], value: Any) -> None:
        spec[role] = dataclasses.replace(spec[role], **{field: value})

    return setter


def _set_both_objects(field: str) -> Callable[[dict[str, Any], Any], None]:
    def setter(spec: dict[str, Any], value: Any) -> None:
        _set_object("good", field)(spec, value)
        _set_object("bad", field)(spec, value)

    return setter


def _set_kinds(spec: dict[str, Any], value: tuple[str, str]) -> None:
    _set_object("good", "kind")(spec, value[0])
    _set_object("bad", "kind")(spec, value[1])


def _factor(name: str) -> Callable[[DomainSpec], Any]:
    return lambda d: d.factors()[name]


def appearance_factors(domains: list[DomainSpec]) -> list[AppearanceFactor]:
    """The family's appearance factors (DomainSpec.factors); a factor with a single value is left out."""
    tied = all(d.good.color == d.bad.color for d in domains)
    candidates = [
        AppearanceFactor("wall", (), _factor("wall"), _set_fields("wall_tex")),
        AppearanceFactor("floor", (), _factor("floor"), _set_fields("floor_tex")),
        AppearanceFactor(
            "ceiling", (), _factor("ceiling"), _set_fields("ceil_tex", "ceiling", "wall_height")
        ),
        AppearanceFactor("light", (), _factor("light"), _set_fields("light_color", "sky_color")),
    ]
    if tied:
        candidates.append(
            AppearanceFactor("object_color", (), _factor("good_color"), _set_both_objects("color"))
        )
    else:
        candidates.append(
            AppearanceFactor("good_color", (), _factor("good_color"), _set_object("good", "color"))
        )
        candidates.append(
            AppearanceFactor("bad_color", (), _factor("bad_color"), _set_object("bad", "color"))
        )
    candidates.append(AppearanceFactor("object_kind", (), _factor("object_kind"), _set_kinds))
    out = []
    for f in candidates:
        values = tuple(dict.fromkeys(f.get(d) for d in domains))
        if len(values) > 1:
            out.append(AppearanceFactor(f.name, values, f.get, f.set))
    return out


# Pose grid. The camera is tilted down (see DomainRoomEnv.cam_pitch), so objects 1.6-2.4 m
# ahead are fully in view; bearings stay inside the 60-degree field of view.
AGENT_OFFSETS = (-0.4, 0.0, 0.4)  # metres from the room centre, for agent_x and agent_z
HEADINGS = 8
BEARINGS_DEG = (-20.0, -10.0, 0.0, 10.0, 20.0)
GOOD_DISTANCE = 1.6
BAD_DISTANCE = 2.4
POSE_FACTORS = (
    ("agent_x", len(AGENT_OFFSETS)),
    ("agent_z", len(AGENT_OFFSETS)),
    ("heading", HEADINGS),
    ("good_bearing", len(BEARINGS_DEG)),
    ("bad_bearing", len(BEARINGS_DEG)),
)


class RoomGroundTruth(GridTruth["DomainRoomEnv"]):
    """Factors and renderer for a DomainRoomEnv family (SeekAvoid, FetchObject)."""

    def __init__(self, family: EnvFamily, size: int = 64) -> None:
        super().__init__(family, size)
        domains = [family.domains[n] for n in family.domain_names()]
        self.base = domains[0]
        self.appearance = appearance_factors(domains)
        self.factor_names = tuple([f.name for f in self.appearance] + [n for n, _ in POSE_FACTORS])
        self.factor_sizes = tuple([len(f.values) for f in self.appearance] + [k for _, k in POSE_FACTORS])

    def values(self, name: str) -> tuple[Any, ...]:
        """The values behind the indices of factor `name` (textures, colours, bins...)."""
        for f in self.appearance:
            if f.name == name:
                return f.values
        grids: dict[str, tuple[Any, ...]] = {
            "agent_x": AGENT_OFFSETS,
            "agent_z": AGENT_OFFSETS,
            "heading": tuple(360.0 * k / HEADINGS for k in range(HEADINGS)),
            "good_bearing": BEARINGS_DEG,
            "bad_bearing": BEARINGS_DEG,
        }
        if name not in grids:
            raise ConfigError(f"unknown factor {name!r}; valid: {', '.join(self.factor_names)}")
        return grids[name]

    def make_renderer(self) -> DomainRoomEnv:
        env: DomainRoomEnv = self.family.make(self.base.name, seed=0, size=self.size).unwrapped
        return env

    def domain_columns(self, domain: str) -> dict[int, int]:
        spec = self.family.domain(domain)
        return {i: f.values.index(f.get(spec)) for i, f in enumerate(self.appearance)}

    def spec_for(self, row: np.ndarray) -> DomainSpec:
        """The domain spec that the appearance part of a factor row describes."""
        data = {f.name: getattr(self.base, f.name) for f in dataclasses.fields(self.base)}
        for i, f in enumerate(self.appearance):
            f.set(data, f.values[int(row[i])])
        data["name"] = "ground_truth"
        return DomainSpec(**data)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Render one frame per factor row; object yaw is the only nuisance, drawn from `rng`."""
        factors = self.check_factors(factors)
        env = self.renderer()
        out = np.empty((len(factors), *self.image_shape), dtype=np.uint8)
        na = len(self.appearance)
        centre = env.room_size / 2
        for i, row in enumerate(factors):
            spec = self.spec_for(row)
            ax, az, head, gb, bb = (int(v) for v in row[na:])
            agent = (centre + AGENT_OFFSETS[ax], centre + AGENT_OFFSETS[az])
            heading = 2 * math.pi * head / HEADINGS
            objects = []
            for obj, role, bearing, dist in (
                (spec.good, "good", BEARINGS_DEG[gb], GOOD_DISTANCE),
                (spec.bad, "bad", BEARINGS_DEG[bb], BAD_DISTANCE),
            ):
                angle = heading + math.radians(bearing)
                # dir_vec is (cos, -sin): MiniWorld's z axis points "down" in the top view
                x = agent[0] + dist * math.cos(angle)
                z = agent[1] - dist * math.sin(angle)
                margin = 0.55
                x = min(max(x, margin), env.room_size - margin)
                z = min(max(z, margin), env.room_size - margin)
                objects.append((obj.kind, obj.color, role, (x, z), float(rng.uniform(-math.pi, math.pi))))
            out[i] = env.render_scene(spec, agent, heading, objects)
        return out

    # ------------------------------------------------------------------ labels for env frames
    def label(self, env: DomainRoomEnv) -> np.ndarray:
        """Factor indices describing the env's current frame (-1 where no value applies)."""
        row = np.full(self.num_factors, -1, dtype=np.int64)
        for i, f in enumerate(self.appearance):
            value = f.get(env.domain)
            if value in f.values:
                row[i] = f.values.index(value)
        na = len(self.appearance)
        centre = env.room_size / 2
        offsets = np.array(AGENT_OFFSETS)
        row[na] = int(np.argmin(np.abs(offsets - (env.agent.pos[0] - centre))))
        row[na + 1] = int(np.argmin(np.abs(offsets - (env.agent.pos[2] - centre))))
        row[na + 2] = round(env.agent.dir / (2 * math.pi / HEADINGS)) % HEADINGS
        bearings = np.radians(BEARINGS_DEG)
        for col, role in ((na + 3, "good"), (na + 4, "bad")):
            best = None
            for o in env.objects:
                if o.role != role:
                    continue
                angle, dist = env.bearing(o.pos)
                if abs(angle) <= math.radians(25.0) and (best is None or dist < best[1]):
                    best = (angle, dist)
            if best is not None:
                row[col] = int(np.argmin(np.abs(bearings - best[0])))
        return row
