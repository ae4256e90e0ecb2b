"""Domains: named, frozen, serialisable appearance specs, grouped into source/target/ood splits.

A domain fixes everything a pixel agent could latch onto (room textures, object shapes and
colours, light and sky) while the task (rules, rewards, dynamics) stays the same. Transfer is
then measured by swapping the domain, never the task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Protocol

from darla.artifacts.stages import SPLITS
from darla.config import from_dict, to_dict
from darla.errors import ConfigError
from darla.registry import check_choice

Color = tuple[float, float, float]


# Object shapes, all drawn as boxes (cheap to render; see base.py). Sizes are (x, y, z) in metres,
# chosen so that every kind shows about the same visible area: shape never means "easier to see".
OBJECT_KINDS: dict[str, tuple[float, float, float]] = {
    "cube": (0.7, 0.7, 0.7),
    "pillar": (0.5, 1.0, 0.5),
    "slab": (0.95, 0.5, 0.95),
}


@cache
def texture_names() -> tuple[str, ...]:
    """Texture names MiniWorld can load (files `<name>_<k>.png` or `<name>.png`)."""
    root = resources.files("miniworld") / "textures"
    names = set()
    for entry in root.iterdir():
        stem = entry.name
        if not stem.endswith(".png"):
            continue
        stem = stem[:-4]
        base, _, suffix = stem.rpartition("_")
        names.add(base if suffix.isdigit() and base else stem)
    return tuple(sorted(names))


def _check_color(where: str, value: tuple[float, ...]) -> None:
    if len(value) != 3 or not all(0.0 <= float(c) <= 1.0 for c in value):
        raise ConfigError(f"{where}: expected 3 numbers in [0, 1], got {value!r}")


@dataclass(frozen=True)
class ObjectSpec:
    """One object type: its shape and its RGB colour."""

    kind: str = "cube"
    """Shape of the object: cube, pillar or slab."""
    color: Color = (0.1, 0.8, 0.1)
    """RGB colour in [0, 1]."""

    def validate(self) -> None:
        check_choice("object kind", self.kind, list(OBJECT_KINDS))
        _check_color("object color", self.color)


@dataclass(frozen=True)
class DomainSpec:
    """The appearance of one domain; the task itself is the family's and never changes."""

    name: str
    """Domain name (unique within a family)."""
    wall_tex: str = "brick_wall"
    """MiniWorld texture of the walls."""
    floor_tex: str = "wood"
    """MiniWorld texture of the floor."""
    ceil_tex: str = "ceiling_tiles"
    """MiniWorld texture of the ceiling."""
    good: ObjectSpec = field(default_factory=ObjectSpec)
    """Rewarding object (SeekAvoid: +1 on contact; FetchObject: the goal)."""
    bad: ObjectSpec = field(default_factory=lambda: ObjectSpec(color=(0.85, 0.1, 0.1)))
    """Other object (SeekAvoid: -1 on contact; FetchObject: a distractor)."""
    light_color: Color = (0.7, 0.7, 0.7)
    """Diffuse light colour; the ambient light is the same colour, dimmer."""
    sky_color: Color = (0.25, 0.82, 1.0)
    """Background colour, visible only without a ceiling."""
    ceiling: bool = True
    """Whether the room has a ceiling (without one the sky shows above low walls)."""
    wall_height: float = 2.74
    """Wall height in metres (MiniWorld's default 2.74; the camera is at 1.5 m)."""
    difficulty: int = 0
    """0 = source; higher = a larger shift away from the sources."""
    description: str = ""
    """One line for people: what this domain changes."""

    def validate(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"domain name must be a non-empty string, got {self.name!r}")
        for label in ("wall_tex", "floor_tex", "ceil_tex"):
            check_choice(f"texture for {label}", getattr(self, label), list(texture_names()))
        for obj in (self.good, self.bad):
            if not isinstance(obj, ObjectSpec):
                raise ConfigError(f"domain {self.name!r}: objects must be ObjectSpec, got {obj!r}")
            obj.validate()
        _check_color("light_color", self.light_color)
        _check_color("sky_color", self.sky_color)
        if not 0.5 <= self.wall_height <= 5.0:
            raise ConfigError(f"wall_height must be in [0.5, 5] m, got {self.wall_height}")
        if self.difficulty < 0:
            raise ConfigError(f"difficulty must be >= 0, got {self.difficulty}")

    # -- factor views, used for disjointness checks and ground-truth labels
    @property
    def room(self) -> tuple[str, str, str, bool, float]:
        return (self.wall_tex, self.floor_tex, self.ceil_tex, self.ceiling, self.wall_height)

    @property
    def objects(self) -> tuple[ObjectSpec, ObjectSpec]:
        return (self.good, self.bad)

    @property
    def lighting(self) -> tuple[Color, Color]:
        return (self.light_color, self.sky_color)

    def factors(self) -> dict[str, Any]:
        """The value of every appearance factor (the ground truth's factor names)."""
        return {
            "wall": self.wall_tex,
            "floor": self.floor_tex,
            "ceiling": (self.ceil_tex, self.ceiling, self.wall_height),
            "light": self.lighting,
            "good_color": self.good.color,
            "bad_color": self.bad.color,
            "object_kind": (self.good.kind, self.bad.kind),
        }

    def combination(self) -> tuple[Any, ...]:
        """Every appearance factor; two domains with equal combinations look the same."""
        return (self.room, self.objects, self.lighting)

    def replace(self, **changes: Any) -> DomainSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


def spec_from(value: Any, cls: type = DomainSpec) -> Any:
    """A validated spec of dataclass `cls` from a spec or a mapping (bad keys/values -> ConfigError)."""
    if isinstance(value, cls):
        spec: Any = value
        spec.validate()
        return spec
    if isinstance(value, Mapping):
        return from_dict(cls, dict(value), where="domain")
    raise ConfigError(
        f"expected a domain name, {cls.__name__} or mapping, got {type(value).__name__}: {value!r}"
    )


SPLIT_RULES = ("recombine", "held_out")
"""How a family's target split relates to its sources. `recombine` (DARLA's): a target shows only
values some source shows, in a new combination; ood shows a value no source has. `held_out` (shift
suites, colour variants): a target shows values no source has (held-out levels of the same kind),
and ood shows values beyond every target (the strongest levels)."""


class Domain(Protocol):
    """What a family's domain spec offers, whatever it changes (room textures, MuJoCo colours, a
    pixel shift): a name, a difficulty, its factor values, and a dict form for caches and configs."""

    name: str
    difficulty: int | float
    description: str

    def validate(self) -> None: ...

    def factors(self) -> dict[str, Any]: ...

    def combination(self) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


def check_splits(
    domains: Mapping[str, Domain], splits: Mapping[str, tuple[str, ...]], rule: str = "recombine"
) -> None:
    """Every split names known domains, every domain sits in exactly one split, and no target or
    ood domain repeats a source combination (else "transfer" would be measured on seen data);
    then the family's `rule` (SPLIT_RULES) on which factor values targets and ood may show."""
    check_choice("split rule", rule, list(SPLIT_RULES))
    if set(splits) != set(SPLITS):
        raise ConfigError(f"splits must be exactly {SPLITS}, got {tuple(splits)}")
    seen: dict[str, str] = {}
    for split, names in splits.items():
        for name in names:
            check_choice("domain", name, list(domains))
            if name in seen:
                raise ConfigError(f"domain {name!r} is in both {seen[name]!r} and {split!r}")
            seen[name] = split
    missing = sorted(set(domains) - set(seen))
    if missing:
        raise ConfigError(f"domains in no split: {missing}")
    source = {domains[n].combination() for n in splits["source"]}
    for split in ("target", "ood"):
        for name in splits[split]:
            if domains[name].combination() in source:
                raise ConfigError(f"{split} domain {name!r} repeats a source combination")
    shown: dict[str, set[Any]] = {}
    for n in splits["source"]:
        for factor, value in domains[n].factors().items():
            shown.setdefault(factor, set()).add(value)
    if rule == "held_out":
        _check_held_out(domains, splits, shown)
        return
    # DARLA's premise: a target is a new combination of values the sources showed; a domain with a
    # value no source has tests something else (out of distribution) and belongs to `ood`
    for split in ("target", "ood"):
        for name in splits[split]:
            unseen = {f: v for f, v in domains[name].factors().items() if v not in shown.get(f, set())}
            if split == "target" and unseen:
                raise ConfigError(
                    f"target domain {name!r} shows {unseen} that no source domain has: a target must "
                    "recombine values seen in the sources; put it in 'ood' or add a source that shows them"
                )
            if split == "ood" and not unseen:
                raise ConfigError(
                    f"ood domain {name!r} only recombines values seen in the sources: put it in 'target'"
                )


def _check_held_out(
    domains: Mapping[str, Domain], splits: Mapping[str, tuple[str, ...]], shown: dict[str, set[Any]]
) -> None:
    """`held_out`: every target and ood domain shows a value no source has, and every ood domain is
    harder than every target (its `difficulty` is higher): ood is the strongest shift."""
    for split in ("target", "ood"):
        for name in splits[split]:
            if all(v in shown.get(f, set()) for f, v in domains[name].factors().items()):
                raise ConfigError(
                    f"{split} domain {name!r} only shows factor values the sources show: a held-out "
                    "split needs values no source has"
                )
    hardest_target = max((domains[n].difficulty for n in splits["target"]), default=None)
    for name in splits["ood"]:
        if hardest_target is not None and domains[name].difficulty <= hardest_target:
            raise ConfigError(
                f"ood domain {name!r} (difficulty {domains[name].difficulty}) is no harder than the "
                f"hardest target ({hardest_target}): ood must be the strongest shift"
            )
