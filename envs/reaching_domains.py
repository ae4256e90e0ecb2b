"""Reaching's appearance domains: what the table, floor, arm, target, light and sky look like.

A domain changes only what MuJoCo draws (texture pixels, material and geom colours, the light, the
skybox and a few distractor objects), never the arm's dynamics, the reward or the camera, and it
is applied to the compiled model in place (see reaching_model.py): switching domains at reset
costs a texture upload, not a model rebuild.

The split follows DARLA, like SeekAvoid's (envs/seek_avoid.py): two scenes (table + floor) x two
colour sets (arm + target); three combinations are sources and the fourth (scene B x set 2) is
held out as the target. The colour sets are balanced: the arm and the target differ by shape in
both (links vs a ball) and each set gives them one colour each, so nothing but colour changes
between sets. A third factor, the light (warm dusk or purple neon, each with its own sky), is
seen in two more sources, each with one half of the held-out combination; the harder targets put
the held-out combination under those lights (graded difficulty: 1, 2, 3). ood domains show
values no source has: distractor objects, an unseen scene, unseen colours and light.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from darla.config import to_dict
from darla.errors import ConfigError
from darla.registry import check_choice

Color = tuple[float, float, float]

TEXTURE_SIZE = 64
"""Side of the table and floor textures in texels (the model declares them at this size)."""


def _check_color(where: str, value: tuple[float, ...]) -> None:
    if len(value) != 3 or not all(0.0 <= float(c) <= 1.0 for c in value):
        raise ConfigError(f"{where}: expected 3 numbers in [0, 1], got {value!r}")


# ---------------------------------------------------------------------------- surface patterns
def _checker(n: int) -> np.ndarray:
    i = np.arange(n) * 4 // n
    return ((i[:, None] + i[None, :]) % 2).astype(float)


def _stripes(n: int) -> np.ndarray:
    """Wood-like planks: bands of uneven width with a faint grain."""
    rows = np.arange(n)
    band = (np.floor(rows / (n / 6)) % 2).astype(float)
    grain = 0.25 * (np.sin(rows * 1.7) > 0.6)
    return np.broadcast_to(np.clip(band + grain, 0, 1)[:, None], (n, n)).copy()


def _grid(n: int) -> np.ndarray:
    i = np.arange(n) % (n // 4)
    line = (i < 2).astype(float)
    return np.maximum(line[:, None], line[None, :])


def _noise(n: int) -> np.ndarray:
    """Smooth blotches (carpet, stone): 8x8 random values, upsampled; the same for every domain."""
    coarse = np.random.default_rng(0).random((8, 8))
    fine = np.random.default_rng(1).random((n, n))
    blobs = np.kron(coarse, np.ones((n // 8, n // 8)))
    return np.clip(0.7 * blobs + 0.3 * fine, 0, 1)


def _plain(n: int) -> np.ndarray:
    return np.zeros((n, n))


PATTERNS: dict[str, Callable[[int], np.ndarray]] = {
    "plain": _plain,
    "checker": _checker,
    "stripes": _stripes,
    "grid": _grid,
    "noise": _noise,
}
"""Texture patterns: a map in [0, 1] of where `color2` shows over `color`."""


@dataclass(frozen=True)
class Surface:
    """A textured surface: a pattern drawn in two colours."""

    pattern: str = "checker"
    """plain, checker, stripes, grid or noise."""
    color: Color = (0.5, 0.5, 0.5)
    """Base RGB colour in [0, 1]."""
    color2: Color = (0.35, 0.35, 0.35)
    """Second RGB colour of the pattern."""

    def validate(self) -> None:
        check_choice("surface pattern", self.pattern, list(PATTERNS))
        _check_color("surface color", self.color)
        _check_color("surface color2", self.color2)

    def texture(self, size: int = TEXTURE_SIZE) -> np.ndarray:
        """(size, size, 3) uint8 texels."""
        return _texture(self.pattern, self.color, self.color2, size).copy()


@functools.lru_cache(maxsize=64)
def _texture(pattern: str, color: Color, color2: Color, size: int) -> np.ndarray:
    mask = PATTERNS[pattern](size)[..., None]
    rgb = (1 - mask) * np.array(color) + mask * np.array(color2)
    return np.round(255 * rgb).astype(np.uint8)


DISTRACTOR_SHAPES = ("sphere", "box", "cylinder")
MAX_DISTRACTORS = 3


@dataclass(frozen=True)
class Distractor:
    """An object on the table that the task ignores (ood domains); placed at random per episode."""

    shape: str = "box"
    """sphere, box or cylinder."""
    color: Color = (0.9, 0.9, 0.9)
    """RGB colour in [0, 1]."""

    def validate(self) -> None:
        check_choice("distractor shape", self.shape, list(DISTRACTOR_SHAPES))
        _check_color("distractor color", self.color)


@dataclass(frozen=True)
class ReachDomain:
    """The appearance of one Reaching domain; the arm, the task and the camera never change."""

    name: str
    """Domain name (unique within the family)."""
    table: Surface = Surface("stripes", (0.55, 0.36, 0.2), (0.43, 0.27, 0.14))
    """Table top (and legs) texture."""
    floor: Surface = Surface("checker", (0.52, 0.52, 0.52), (0.36, 0.36, 0.36))
    """Floor texture (seen around and beyond the table)."""
    arm_color: Color = (0.15, 0.35, 0.9)
    """RGB colour of the arm (base, links, fingertip)."""
    target_color: Color = (0.9, 0.15, 0.1)
    """RGB colour of the target ball."""
    light_color: Color = (0.8, 0.8, 0.8)
    """Diffuse colour of the sun light; ambient and head light are the same colour, dimmer."""
    sky_top: Color = (0.42, 0.62, 0.95)
    """Skybox colour at the zenith (the band above the floor at the top of the frame)."""
    sky_bottom: Color = (0.85, 0.9, 1.0)
    """Skybox colour at the horizon and below."""
    distractors: tuple[Distractor, ...] = ()
    """Objects on the table the task ignores (at most 3)."""
    difficulty: int = 0
    """0 = source; higher = a larger shift away from the sources."""
    description: str = ""
    """One line for people: what this domain changes."""

    def validate(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"domain name must be a non-empty string, got {self.name!r}")
        for label in ("table", "floor"):
            surface = getattr(self, label)
            if not isinstance(surface, Surface):
                raise ConfigError(f"domain {self.name!r}: {label} must be a Surface, got {surface!r}")
            surface.validate()
        for label in ("arm_color", "target_color", "light_color", "sky_top", "sky_bottom"):
            _check_color(label, getattr(self, label))
        if len(self.distractors) > MAX_DISTRACTORS:
            raise ConfigError(f"at most {MAX_DISTRACTORS} distractors, got {len(self.distractors)}")
        for d in self.distractors:
            if not isinstance(d, Distractor):
                raise ConfigError(f"domain {self.name!r}: distractors must be Distractor, got {d!r}")
            d.validate()
        if self.difficulty < 0:
            raise ConfigError(f"difficulty must be >= 0, got {self.difficulty}")

    @property
    def lighting(self) -> tuple[Color, Color, Color]:
        return (self.light_color, self.sky_top, self.sky_bottom)

    def factors(self) -> dict[str, Any]:
        """The value of every appearance factor (the ground truth's appearance factor names)."""
        return {
            "table": self.table,
            "floor": self.floor,
            "arm_color": self.arm_color,
            "target_color": self.target_color,
            "light": self.lighting,
            "distractors": self.distractors,
        }

    def combination(self) -> tuple[Any, ...]:
        """Every appearance factor; two domains with equal combinations look the same."""
        return tuple(self.factors().values())

    def replace(self, **changes: Any) -> ReachDomain:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


# ---------------------------------------------------------------------------- the domains
SCENE_A: dict[str, Any] = {  # wooden table on grey tiles
    "table": Surface("stripes", (0.55, 0.36, 0.2), (0.43, 0.27, 0.14)),
    "floor": Surface("checker", (0.52, 0.52, 0.52), (0.36, 0.36, 0.36)),
}
SCENE_B: dict[str, Any] = {  # white-and-blue tiled table on green carpet
    "table": Surface("checker", (0.85, 0.87, 0.9), (0.55, 0.65, 0.85)),
    "floor": Surface("noise", (0.16, 0.42, 0.22), (0.3, 0.55, 0.25)),
}
SCENE_C: dict[str, Any] = {  # ood: dark metal grid table on a red stone floor
    "table": Surface("grid", (0.22, 0.23, 0.26), (0.62, 0.64, 0.68)),
    "floor": Surface("noise", (0.55, 0.2, 0.15), (0.35, 0.1, 0.08)),
}
BLUE, RED = (0.15, 0.35, 0.9), (0.9, 0.15, 0.1)
YELLOW, GREEN = (0.95, 0.8, 0.15), (0.1, 0.7, 0.2)
PINK, CYAN = (0.95, 0.45, 0.75), (0.1, 0.8, 0.85)
SET_1: dict[str, Any] = {"arm_color": BLUE, "target_color": RED}
SET_2: dict[str, Any] = {"arm_color": YELLOW, "target_color": GREEN}
SET_3: dict[str, Any] = {"arm_color": PINK, "target_color": CYAN}  # ood colours
DUSK: dict[str, Any] = {
    "light_color": (0.95, 0.6, 0.35),
    "sky_top": (0.95, 0.5, 0.25),
    "sky_bottom": (0.5, 0.22, 0.3),
}
NEON: dict[str, Any] = {
    "light_color": (0.75, 0.3, 0.95),
    "sky_top": (0.25, 0.05, 0.35),
    "sky_bottom": (0.05, 0.0, 0.1),
}
TOXIC: dict[str, Any] = {
    "light_color": (0.55, 0.95, 0.45),
    "sky_top": (0.2, 0.35, 0.1),
    "sky_bottom": (0.6, 0.8, 0.3),
}
CLUTTER = (
    Distractor("sphere", (0.95, 0.55, 0.1)),
    Distractor("box", (0.92, 0.92, 0.92)),
    Distractor("cylinder", (0.55, 0.2, 0.75)),
)

_DOMAINS = [
    ReachDomain("wood_blue", **SCENE_A, **SET_1, description="source: scene A (wood table, grey tiles), blue arm + red target"),
    ReachDomain("wood_yellow", **SCENE_A, **SET_2, description="source: scene A, yellow arm + green target"),
    ReachDomain("tiles_blue", **SCENE_B, **SET_1, description="source: scene B (tiled table, green carpet), set 1"),
    ReachDomain(
        "wood_yellow_dusk", **SCENE_A, **SET_2, **DUSK,
        description="source: scene A, set 2, warm dusk light, orange sky",
    ),
    ReachDomain(
        "tiles_blue_neon", **SCENE_B, **SET_1, **NEON,
        description="source: scene B, set 1, purple neon light, dark purple sky",
    ),
    ReachDomain(
        "tiles_yellow", **SCENE_B, **SET_2, difficulty=1,
        description="target: held-out combination scene B x set 2 (DARLA's split)",
    ),
    ReachDomain(
        "tiles_yellow_dusk", **SCENE_B, **SET_2, **DUSK, difficulty=2,
        description="target: scene B x set 2 under dusk light (seen only with scene A and set 2)",
    ),
    ReachDomain(
        "tiles_yellow_neon", **SCENE_B, **SET_2, **NEON, difficulty=3,
        description="target: scene B x set 2 under neon light (seen only with scene B and set 1)",
    ),
    ReachDomain(
        "wood_blue_clutter", **SCENE_A, **SET_1, distractors=CLUTTER, difficulty=2,
        description="ood: scene A, set 1, three distractor objects on the table",
    ),
    ReachDomain(
        "metal_blue", **SCENE_C, **SET_1, difficulty=3,
        description="ood: unseen scene (metal grid table, red stone floor), set 1",
    ),
    ReachDomain(
        "metal_pink_toxic", **SCENE_C, **SET_3, **TOXIC, distractors=CLUTTER[:2], difficulty=4,
        description="ood: unseen scene, colours (pink arm, cyan target) and green light, two distractors",
    ),
]  # fmt: skip

DOMAINS = {d.name: d for d in _DOMAINS}
SPLITS = {
    "source": ("wood_blue", "wood_yellow", "tiles_blue", "wood_yellow_dusk", "tiles_blue_neon"),
    "target": ("tiles_yellow", "tiles_yellow_dusk", "tiles_yellow_neon"),
    "ood": ("wood_blue_clutter", "metal_blue", "metal_pink_toxic"),
}
