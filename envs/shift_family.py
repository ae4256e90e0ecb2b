"""Shifted families `<base>@<suite>`: any darla family or Gymnasium id seen through a shift suite.

`get_family("CartPole-v1@colour")` builds the family on first use and registers it (in FAMILIES
and in Gymnasium), so a worker process that only knows the name rebuilds the same family.

Domains. A Gymnasium base has one look: the family's domains are the suite's six levels, named
after them (`clean`, `mild`, ... `extreme`). A darla base has several source looks: the shift is
applied on top of the base family's *source* domains only (its targets stay unseen), cycling them
across the levels so the family stays small (evaluation cost grows with domains):
  source: base source i at source level i mod 3, for i < max(#base sources, 3)
  target: target level j over base source j; ood: the extreme level over the next base source.
SeekAvoid (5 sources) gives 5 + 2 + 1 = 8 domains named `<base domain>-<level>`.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
from gymnasium import spaces

from darla.envs.family import FAMILIES, EnvFamily
from darla.envs.policies import Policy, RandomPolicy
from darla.envs.shift import LEVEL_SPLITS, LEVELS, SUITES, ShiftSpec, Suite
from darla.envs.shift_truth import shift_ground_truth
from darla.errors import ConfigError, UnknownNameError
from darla.registry import unknown_name_message

SEPARATOR = "@"
WHITE = (255, 255, 255)

GYM_MODULES: dict[str, str] = {"MiniWorld-": "miniworld"}
"""Gymnasium id prefix -> the module whose import registers those ids."""
SIZE_KWARGS: dict[str, Callable[[int], dict[str, Any]]] = {
    "MiniWorld-": lambda size: {"obs_width": size, "obs_height": size},
}
"""Gymnasium id prefix -> make() arguments that render frames at the wanted size (no resize)."""
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "CartPole-v0": WHITE,
    "CartPole-v1": WHITE,
    "Acrobot-v1": WHITE,
    "MountainCar-v0": WHITE,
}
"""Envs whose background is one known colour (checked on their renders): the background suite's key."""


def register_background_key(env: str, colour: tuple[int, int, int]) -> None:
    """Declare that `env` (a Gymnasium id or darla family) draws its background in `colour` (RGB
    0-255), so `<env>@background` can key it. Call before the family is first built."""
    if len(colour) != 3 or not all(0 <= int(c) <= 255 for c in colour):
        raise ConfigError(f"background colour must be 3 integers in 0..255, got {colour!r}")
    BACKGROUND_COLOURS[env] = (int(colour[0]), int(colour[1]), int(colour[2]))


@dataclass(frozen=True)
class ShiftBase:
    """What a shifted family is built on."""

    name: str
    """The darla family name or the Gymnasium id."""
    family: EnvFamily | None
    """The darla family, or None for a Gymnasium id."""
    frames: str
    """Where frames come from: "family" (a darla env), "obs" (RGB observations) or "render"."""
    key_colour: tuple[int, int, int] | None
    has_mask: bool
    """Whether the base env exposes `background_mask()` (H, W) in [0, 1], 1 = background."""
    domains: tuple[str, ...]
    """Base domains under the shift: the darla family's sources, or ("",) for a Gymnasium id."""
    size_kwargs: Callable[[int], dict[str, Any]] | None = None


@dataclass(frozen=True)
class ShiftInfo:
    name: str
    base: ShiftBase
    suite: Suite


SHIFTED: dict[str, ShiftInfo] = {}
"""Shifted families built in this process, by family name."""


def _import_for(gym_id: str) -> None:
    for prefix, module in GYM_MODULES.items():
        if gym_id.startswith(prefix):
            importlib.import_module(module)


def _prefixed(table: dict[str, Any], gym_id: str) -> Any:
    return next((v for prefix, v in table.items() if gym_id.startswith(prefix)), None)


def _darla_family(name: str) -> EnvFamily | None:
    for _, family in FAMILIES.items():
        if name in (family.name, family.gym_id):
            return family
    return None


def resolve_base(name: str) -> ShiftBase:
    """The base of a shift: a darla family (by name or gym id) or a Gymnasium id with RGB frames."""
    if SEPARATOR in name:
        raise ConfigError(f"{name!r} is already shifted: shifts do not stack (one suite per family)")
    family = _darla_family(name)
    if family is not None:
        has_mask = hasattr(family.env_class, "background_mask")
        key = BACKGROUND_COLOURS.get(family.name)
        return ShiftBase(family.name, family, "family", key, has_mask, tuple(family.splits["source"]))
    _import_for(name)
    if name not in gymnasium.registry:
        families = [n for n in FAMILIES.names() if SEPARATOR not in n]
        valid = [*families, "or any Gymnasium id (e.g. CartPole-v1, MiniWorld-OneRoom-v0)"]
        msg = unknown_name_message("env", name, valid)
        close = difflib.get_close_matches(name, list(gymnasium.registry), n=1, cutoff=0.6)
        raise UnknownNameError(msg + (f"; close Gymnasium id: {close[0]!r}" if close else ""))
    with contextlib.redirect_stdout(io.StringIO()):
        env = gymnasium.make(name, disable_env_checker=True)
    try:
        obs_space, action_space = env.observation_space, env.action_space
        modes = list(env.metadata.get("render_modes") or [])
        has_mask = hasattr(env.unwrapped, "background_mask")
    finally:
        env.close()
    if not isinstance(action_space, spaces.Discrete):
        raise ConfigError(
            f"{name} has a {type(action_space).__name__} action space; shifted families take Discrete "
            "actions only (the collection policies, DQN and MFEC need them): use a discrete variant of "
            "the env (e.g. MountainCar-v0 instead of MountainCarContinuous-v0, Acrobot-v1, CartPole-v1)"
        )
    image = (
        isinstance(obs_space, spaces.Box)
        and obs_space.dtype == "uint8"
        and len(obs_space.shape) == 3
        and obs_space.shape[-1] == 3
    )
    if not image and "rgb_array" not in modes:
        raise ConfigError(
            f"{name} gives no RGB frames: its observations are {obs_space} (not uint8 H x W x 3) and its "
            f"render modes {modes} have no 'rgb_array'; a pixel shift needs one or the other"
        )
    return ShiftBase(
        name,
        None,
        "obs" if image else "render",
        BACKGROUND_COLOURS.get(name),
        has_mask,
        ("",),
        _prefixed(SIZE_KWARGS, name),
    )


def parse_shift_name(name: str) -> tuple[str, str]:
    """`<base>@<suite>` -> (base, suite), the suite checked."""
    base, sep, suite = name.rpartition(SEPARATOR)
    if not sep or not base:
        raise ConfigError(f"a shifted family is named <env>{SEPARATOR}<suite>, got {name!r}")
    SUITES.get(suite)
    return base, suite


def shift_gym_id(base: str, suite: str) -> str:
    """A Gymnasium id for the family (Gymnasium ids cannot hold '@')."""
    return f"darla/{base.replace('/', '_')}.{suite}-v0"


def _domains(base: ShiftBase, suite: Suite) -> tuple[dict[str, ShiftSpec], dict[str, tuple[str, ...]]]:
    """Named domains and splits (see the module docstring)."""
    if base.family is None:
        domains = {level: suite.spec(level, level) for level in LEVELS}
        return domains, dict(LEVEL_SPLITS)
    sources, levels = base.domains, LEVEL_SPLITS["source"]
    pairs = {
        "source": [
            (sources[i % len(sources)], levels[i % len(levels)])
            for i in range(max(len(sources), len(levels)))
        ]
    }
    held = [*LEVEL_SPLITS["target"], *LEVEL_SPLITS["ood"]]
    for j, level in enumerate(held):
        split = "target" if level in LEVEL_SPLITS["target"] else "ood"
        pairs.setdefault(split, []).append((sources[j % len(sources)], level))
    out: dict[str, ShiftSpec] = {}
    splits: dict[str, tuple[str, ...]] = {}
    for split in ("source", "target", "ood"):
        names = []
        for domain, level in pairs.get(split, []):
            name = f"{domain}-{level}"
            out[name] = suite.spec(level, name, base_domain=domain, split=split)
            names.append(name)
        splits[split] = tuple(names)
    return out, splits  # fmt: skip


def background_keyable(base: ShiftBase) -> bool:
    """Whether the base's background can be found in its frames (a known colour or an env mask)."""
    return base.key_colour is not None or base.has_mask


def _check_background(base: ShiftBase, suite: Suite) -> None:
    if suite.needs_background and not background_keyable(base):
        known = ", ".join(sorted(BACKGROUND_COLOURS))
        raise ConfigError(
            f"{base.name} cannot key its background, so the {suite.name!r} suite cannot draw behind it: "
            f"it has no known background colour (known: {known}) and its env exposes no "
            "background_mask(). Use another suite (colour, distractors), or, if the env draws its "
            "background in one colour, darla.envs.shift_family.register_background_key(env, (r, g, b))"
        )


class BasePolicy:
    """A base family's collection policy played on the base env under the shift (it reads the
    base's privileged state; the shift changes only the frames)."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner

    def reset(self, env: Any, rng: Any) -> None:
        self.inner.reset(env.base_env, rng)

    def act(self, env: Any, rng: Any) -> int:
        return self.inner.act(env.base_env, rng)


def _base_policy(family: EnvFamily, name: str) -> Policy:
    return BasePolicy(family.collect_policy(name))


def _base_show(family: EnvFamily) -> Policy:
    return BasePolicy(family.show_policy())


def _policies(base: ShiftBase) -> tuple[dict[str, Callable[[], Policy]], Callable[[], Policy]]:
    """A darla base's own policies (on the base env); a Gymnasium base has no scripted policy, so
    its `mixed` is `random` (uniform actions)."""
    if base.family is None:
        return {"random": RandomPolicy, "mixed": RandomPolicy}, RandomPolicy
    fam = base.family
    policies: dict[str, Callable[[], Policy]] = {
        name: functools.partial(_base_policy, fam, name) for name in fam.collect_policies
    }
    show: Callable[[], Policy] = functools.partial(_base_show, fam)
    return policies, show


def shift_family(name: str) -> EnvFamily:
    """The shifted family `<base>@<suite>`, built and registered on first use."""
    base_name, suite_name = parse_shift_name(name)
    suite = SUITES.get(suite_name)
    base = resolve_base(base_name)
    canonical = f"{base.name}{SEPARATOR}{suite.name}"
    if canonical in FAMILIES:
        return FAMILIES.get(canonical)
    _check_background(base, suite)
    domains, splits = _domains(base, suite)
    policies, show = _policies(base)
    what = (
        base.family.description
        if base.family is not None
        else f"Gymnasium {base.name} ({base.frames} frames)"
    )
    family = EnvFamily(
        name=canonical,
        gym_id=shift_gym_id(base.name, suite.name),
        entry_point="darla.envs.shift_env:ShiftEnv",
        domains=dict(domains),
        splits=splits,
        description=f"{what}; seen through the {suite.name} shift suite ({suite.description})",
        env_defaults={"family": canonical},
        max_episode_steps=_base_limit(base),
        ground_truth_factory=shift_ground_truth,
        domain_cls=suite.spec_cls,
        split_rule="held_out",
        collect_policies=policies,
        show_policy=show,
    )  # fmt: skip
    SHIFTED[canonical] = ShiftInfo(canonical, base, suite)
    FAMILIES.register(canonical, family)  # and with gymnasium, under family.gym_id
    return family


def _base_limit(base: Any) -> int | None:
    """The base's own episode limit (a darla family's, or the Gymnasium id's registered one)."""
    if base.family is not None:
        return base.family.max_episode_steps
    spec = gymnasium.spec(base.name)
    return spec.max_episode_steps


def shift_info(name: str) -> ShiftInfo:
    """What the shifted family `name` is built on (building it if this process has not yet)."""
    family = shift_family(name) if name not in SHIFTED else None
    return SHIFTED[family.name if family is not None else name]
