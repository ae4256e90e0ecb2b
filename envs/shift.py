"""Pixel shift suites: named, ordered levels of one kind of frame shift, split like a benchmark.

A suite (`colour`, `distractors`, `background`) is a list of levels, from `clean` (no shift) to
`extreme`, each a frozen spec of the shift's parameters. Every suite splits its levels the same
way, in the spirit of the DMControl Generalization Benchmark (train on the default look, test on
colour_easy / colour_hard) and the Distracting Control Suite (graded distractions):

  source: clean, mild, moderate   (the unshifted env plus the training levels)
  target: strong, severe          (held-out levels of the same kind, each with values no source has)
  ood:    extreme                 (the strongest shift)

which is the family contract's `held_out` split rule. Any env becomes a shifted family named
`<base>@<suite>` (`CartPole-v1@colour`, `SeekAvoid@distractors`): see `darla.envs.shift_family`.
Specs are plain data; the frame operations live in `darla.envs.shift_ops`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from darla.config import to_dict
from darla.envs.shift_ops import (
    PATTERNS,
    BackgroundOp,
    ColourOp,
    DistractorOp,
    FrameOp,
    Keyer,
    colour_affine,
)
from darla.errors import ConfigError
from darla.registry import Registry, check_choice

LEVELS = ("clean", "mild", "moderate", "strong", "severe", "extreme")
"""Level names of every suite, weakest first (index = `level`)."""
LEVEL_SPLITS: dict[str, tuple[str, ...]] = {
    "source": ("clean", "mild", "moderate"),
    "target": ("strong", "severe"),
    "ood": ("extreme",),
}
COMMON_FIELDS = ("name", "base_domain", "level", "difficulty", "description")


@dataclass(frozen=True)
class ShiftSpec:
    """One domain of a shifted family: a base domain seen through one level of a pixel shift."""

    name: str
    """Domain name (unique within the family)."""
    base_domain: str = ""
    """The base family's domain under the shift ("" for a Gymnasium base: it has one look)."""
    level: int = 0
    """Index of the suite level (0 = clean); larger = further from the unshifted frames."""
    difficulty: int = 0
    """0 for source domains, else the level: the family contract's ordering of held-out domains."""
    description: str = ""
    """One line for people: what this domain changes."""

    suite: ClassVar[str] = ""
    visible: ClassVar[tuple[str, ...]] = ()
    """Parameters one frame shows (ground-truth factors); motion (speed, drift) needs two frames."""

    def params(self) -> dict[str, Any]:
        """The shift's own parameters (every field but the common ones)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in COMMON_FIELDS
        }

    def validate(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"domain name must be a non-empty string, got {self.name!r}")
        if self.level < 0 or self.difficulty < 0:
            raise ConfigError(f"{self.name}: level and difficulty must be >= 0")
        self.check()

    def check(self) -> None:
        """Suite-specific parameter checks."""

    def factors(self) -> dict[str, Any]:
        return {**self.params(), "base_domain": self.base_domain}

    def combination(self) -> tuple[Any, ...]:
        return (self.base_domain, tuple(self.params().items()))

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)

    def make_op(self, size: int, keyer: Keyer | None) -> FrameOp:
        raise NotImplementedError


def _in_range(where: str, value: float, lo: float, hi: float) -> None:
    if not lo <= float(value) <= hi:
        raise ConfigError(f"{where} must be in [{lo}, {hi}], got {value}")


@dataclass(frozen=True)
class ColourShift(ShiftSpec):
    """Hue rotation, channel mixing, saturation, tint, brightness and contrast of the whole frame."""

    hue: float = 0.0
    """Rotation of hues about the grey axis, degrees."""
    saturation: float = 1.0
    """0 = greyscale, 1 = unchanged."""
    brightness: float = 1.0
    """Gain on all channels."""
    contrast: float = 1.0
    """Contrast about mid-grey; < 1 flattens, > 1 stretches."""
    mix: float = 0.0
    """Channel mixing: each channel takes this share of the next (R <- G, G <- B, B <- R)."""
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Per-channel gain (colours white backgrounds, which hue and saturation leave white)."""

    suite: ClassVar[str] = "colour"
    visible: ClassVar[tuple[str, ...]] = ("hue", "saturation", "brightness", "contrast", "mix", "tint")

    def check(self) -> None:
        _in_range("hue", self.hue, -360.0, 360.0)
        _in_range("saturation", self.saturation, 0.0, 4.0)
        _in_range("brightness", self.brightness, 0.0, 4.0)
        _in_range("contrast", self.contrast, 0.0, 4.0)
        _in_range("mix", self.mix, 0.0, 1.0)
        if len(self.tint) != 3:
            raise ConfigError(f"tint must be 3 gains, got {self.tint!r}")
        for gain in self.tint:
            _in_range("tint", gain, 0.0, 4.0)

    def make_op(self, size: int, keyer: Keyer | None) -> FrameOp:
        a, b = colour_affine(self.hue, self.saturation, self.brightness, self.contrast, self.mix, self.tint)
        return ColourOp(a, b)


@dataclass(frozen=True)
class DistractorShift(ShiftSpec):
    """Coloured discs and squares moving over the frame, bouncing off its edges."""

    count: int = 0
    """Number of shapes."""
    radius: float = 0.0
    """Shape radius as a fraction of the frame side."""
    speed: float = 0.0
    """Pixels per step as a fraction of the frame side."""

    suite: ClassVar[str] = "distractors"
    visible: ClassVar[tuple[str, ...]] = ("count", "radius")

    def check(self) -> None:
        _in_range("count", self.count, 0, 32)
        _in_range("radius", self.radius, 0.0, 0.45)
        _in_range("speed", self.speed, 0.0, 0.5)
        if self.count and self.radius <= 0:
            raise ConfigError(f"{self.name}: distractors need a radius > 0")

    def make_op(self, size: int, keyer: Keyer | None) -> FrameOp:
        return DistractorOp(self.count, self.radius, self.speed, size)


@dataclass(frozen=True)
class BackgroundShift(ShiftSpec):
    """A procedural texture where the env draws its background (keyed by colour or an env mask)."""

    pattern: str = "none"
    """Texture: none, waves, checker, stripes or blobs (value noise)."""
    frequency: float = 0.0
    """Cycles (or cells) across the frame."""
    strength: float = 0.0
    """0 = the env's own background colour, 1 = the full texture."""
    drift: float = 0.0
    """Texture motion per step, a fraction of the frame side."""

    suite: ClassVar[str] = "background"
    visible: ClassVar[tuple[str, ...]] = ("pattern", "frequency", "strength")

    def check(self) -> None:
        check_choice("background pattern", self.pattern, ["none", *PATTERNS.names()])
        _in_range("frequency", self.frequency, 0.0, 64.0)
        _in_range("strength", self.strength, 0.0, 1.0)
        _in_range("drift", self.drift, 0.0, 0.5)

    def make_op(self, size: int, keyer: Keyer | None) -> FrameOp:
        return BackgroundOp(self.pattern, self.frequency, self.strength, self.drift, size, keyer)


@dataclass(frozen=True)
class Suite:
    """A kind of shift and its ordered levels (`LEVELS`, split by `LEVEL_SPLITS`)."""

    name: str
    spec_cls: type[ShiftSpec]
    levels: dict[str, dict[str, Any]]
    """Level name -> the spec's parameters, in `LEVELS` order."""
    description: str
    needs_background: bool = False
    """Whether the base env's background must be keyable (a known colour or an exposed mask)."""

    def __post_init__(self) -> None:
        if tuple(self.levels) != LEVELS:
            raise ConfigError(
                f"suite {self.name!r} must define the levels {LEVELS}, got {tuple(self.levels)}"
            )
        for level in LEVELS:
            self.spec(level, level)  # every level validates

    def spec(self, level: str, name: str, base_domain: str = "", split: str | None = None) -> ShiftSpec:
        """The spec of `level` named `name`, over `base_domain`."""
        check_choice(f"{self.name} level", level, list(LEVELS))
        index = LEVELS.index(level)
        split = split or split_of_level(level)
        params = self.levels[level]
        shown = ", ".join(f"{k} {v}" for k, v in params.items()) or "no shift"
        over = f" over {base_domain}" if base_domain else ""
        spec = self.spec_cls(
            name=name,
            base_domain=base_domain,
            level=index,
            difficulty=0 if split == "source" else index,
            description=f"{split}: {self.name} {level} ({shown}){over}",
            **params,
        )
        spec.validate()
        return spec


def split_of_level(level: str) -> str:
    check_choice("shift level", level, list(LEVELS))
    return next(split for split, names in LEVEL_SPLITS.items() if level in names)


SUITES: Registry[Suite] = Registry("shift suite")

SUITES.register(
    "colour",
    Suite(
        "colour",
        ColourShift,
        {
            "clean": {},
            "mild": {"hue": 20.0, "saturation": 1.15, "brightness": 1.0, "contrast": 0.95, "mix": 0.05,
                     "tint": (1.0, 0.97, 0.92)},
            "moderate": {"hue": -45.0, "saturation": 0.75, "brightness": 0.9, "contrast": 1.1, "mix": 0.15,
                         "tint": (0.85, 1.0, 0.9)},
            "strong": {"hue": 90.0, "saturation": 1.5, "brightness": 0.85, "contrast": 1.2, "mix": 0.3,
                       "tint": (1.0, 0.8, 0.65)},
            "severe": {"hue": -130.0, "saturation": 0.4, "brightness": 0.75, "contrast": 1.35, "mix": 0.5,
                       "tint": (0.6, 0.85, 1.0)},
            "extreme": {"hue": 180.0, "saturation": 2.0, "brightness": 0.7, "contrast": 1.5, "mix": 0.8,
                        "tint": (0.5, 1.0, 0.6)},
        },
        "hue rotation, channel mixing, saturation, tint, brightness and contrast of the whole frame",
    ),
)  # fmt: skip
SUITES.register(
    "distractors",
    Suite(
        "distractors",
        DistractorShift,
        {
            "clean": {},
            "mild": {"count": 1, "radius": 0.07, "speed": 0.015},
            "moderate": {"count": 2, "radius": 0.09, "speed": 0.025},
            "strong": {"count": 3, "radius": 0.11, "speed": 0.035},
            "severe": {"count": 4, "radius": 0.13, "speed": 0.05},
            "extreme": {"count": 6, "radius": 0.16, "speed": 0.07},
        },
        "coloured discs and squares moving over the frame, graded by number, size and speed",
    ),
)
SUITES.register(
    "background",
    Suite(
        "background",
        BackgroundShift,
        {
            "clean": {},
            "mild": {"pattern": "waves", "frequency": 1.0, "strength": 0.3, "drift": 0.0},
            "moderate": {"pattern": "checker", "frequency": 3.0, "strength": 0.5, "drift": 0.005},
            "strong": {"pattern": "stripes", "frequency": 5.0, "strength": 0.7, "drift": 0.01},
            "severe": {"pattern": "blobs", "frequency": 6.0, "strength": 0.85, "drift": 0.015},
            "extreme": {"pattern": "blobs", "frequency": 12.0, "strength": 1.0, "drift": 0.025},
        },
        "a procedural texture behind what the env draws (its background keyed by colour or an env mask)",
        needs_background=True,
    ),
)
