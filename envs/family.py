"""Env families: one task, its named domains, its splits, its gym id and its ground truth."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium
from gymnasium.wrappers import TimeLimit

from darla.envs.domains import SPLITS, DomainSpec, check_splits, spec_from
from darla.envs.ground_truth import GroundTruth, RoomGroundTruth
from darla.envs.policies import ROOM_POLICIES, Policy, show_seek
from darla.errors import ConfigError
from darla.registry import Registry, check_choice


@dataclass
class EnvFamily:
    """A task and the appearances it can be shown in."""

    name: str
    gym_id: str
    entry_point: str
    """`module:Class` of the gymnasium env (a DomainRoomEnv subclass)."""
    domains: dict[str, Any]
    """name -> domain spec (a `Domain`: a frozen dataclass of `domain_cls`)"""
    splits: dict[str, tuple[str, ...]]
    description: str = ""
    env_defaults: dict[str, Any] = field(default_factory=dict)
    ground_truth_factory: Callable[[EnvFamily, int], GroundTruth] | None = None
    """Builds the family's ground truth; None: a room family's (`RoomGroundTruth`)."""
    max_episode_steps: int | None = None
    """The episode time limit, applied by Gymnasium's TimeLimit (registered with the gym id, and by
    `make`), not by the env class; None: the env's own (a Gymnasium base env's registered limit)."""
    domain_cls: type = DomainSpec
    """The dataclass of this family's domain specs (a custom domain given as a mapping becomes one)."""
    split_rule: str = "recombine"
    """How targets relate to sources (`SPLIT_RULES`): recombine (DARLA) or held_out (shift levels)."""
    collect_policies: dict[str, Callable[[], Policy]] = field(default_factory=lambda: dict(ROOM_POLICIES))
    """Frame-collection policies by name (see's `policy`); every family offers `random` and `mixed`
    (its default: task-directed behaviour mixed with random, so frames show what matters)."""
    show_policy: Callable[[], Policy] = show_seek
    """What `darla envs show` plays before taking its frames."""
    probe_factors: tuple[str, ...] = ("good_bearing", "bad_bearing")
    """Ground-truth factors that carry the task (`darla probe` reads them from a model's features);
    a room family's are its objects' bearings; empty: the family has none to probe."""

    def __post_init__(self) -> None:
        for name, spec in self.domains.items():
            if spec.name != name:
                raise ConfigError(f"domain registered as {name!r} is named {spec.name!r}")
            spec.validate()
        check_splits(self.domains, self.splits, self.split_rule)
        for required in ("random", "mixed"):
            if required not in self.collect_policies:
                raise ConfigError(f"env family {self.name!r} must offer a {required!r} collection policy")

    def domain(self, name_or_spec: str | Mapping[str, Any] | Any = None) -> Any:
        """A named domain, or a validated custom spec (a mapping or a `domain_cls` instance);
        None is the first source domain, what an env shows when no domain is given."""
        if name_or_spec is None:
            return self.domains[self.splits["source"][0]]
        if isinstance(name_or_spec, str):
            check_choice(f"{self.name} domain", name_or_spec, list(self.domains))
            return self.domains[name_or_spec]
        return spec_from(name_or_spec, self.domain_cls)

    def collect_policy(self, name: str) -> Policy:
        """A fresh frame-collection policy of this family."""
        check_choice(f"{self.name} collection policy", name, sorted(self.collect_policies))
        return self.collect_policies[name]()

    def split_of(self, domain: str) -> str:
        check_choice(f"{self.name} domain", domain, list(self.domains))
        return next(split for split in SPLITS if domain in self.splits[split])

    def domain_names(self, split: str | None = None) -> tuple[str, ...]:
        """All domain names in split order (source first), or those of one split."""
        if split is None:
            return tuple(n for s in SPLITS for n in self.splits[s])
        check_choice("split", split, list(SPLITS))
        return self.splits[split]

    def resolve_domains(self, domains: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """Domain names from names and split names ("source" expands to its domains)."""
        items = [domains] if isinstance(domains, str) else list(domains)
        out: list[str] = []
        for item in items:
            if item in SPLITS:
                out.extend(self.splits[item])
            elif item == "all":
                out.extend(self.domain_names())
            else:
                check_choice(f"{self.name} domain (or split)", item, [*self.domains, *SPLITS, "all"])
                out.append(item)
        if not out:
            raise ConfigError(f"no domains given; valid: {', '.join(self.domain_names())}")
        return tuple(dict.fromkeys(out))

    @property
    def env_class(self) -> Any:
        module, attr = self.entry_point.split(":")
        cls = getattr(importlib.import_module(module), attr)
        return cls

    def make(
        self,
        domain: str | Mapping[str, Any] | Any,
        *,
        seed: int | None = None,
        size: int = 64,
        max_episode_steps: int | None = None,
        **env_params: Any,
    ) -> gymnasium.Env:
        """The env in one domain, under the time limit `max_episode_steps` (default: the family's);
        `env_params` are the env class's keyword arguments (checked)."""
        spec = self.domain(domain)
        params = {**self.env_defaults, **env_params}
        limit = self.max_episode_steps if max_episode_steps is None else int(max_episode_steps)
        if limit is not None and limit < 1:
            raise ConfigError(f"max_episode_steps must be >= 1, got {limit}")
        try:
            env: gymnasium.Env = self.env_class(domain=spec, size=size, seed=seed, **params)
        except TypeError as exc:
            raise ConfigError(f"{self.name}: bad env parameter: {exc}") from None
        return TimeLimit(env, limit) if limit is not None else env

    def ground_truth(self, size: int = 64) -> GroundTruth:
        if self.ground_truth_factory is not None:
            return self.ground_truth_factory(self, size)
        return RoomGroundTruth(self, size=size)


def check_family(name: str, family: Any) -> None:
    """A registered env family is an EnvFamily under its own name (also for plug-ins)."""
    if not isinstance(family, EnvFamily):
        got = (
            f"the class {family.__module__}.{family.__qualname__}"
            if isinstance(family, type)  # the likely slip: the entry point names the env class
            else f"a {type(family).__name__}"
        )
        raise ConfigError(f"env {name!r} must be a darla.envs.EnvFamily instance, got {got}")
    if family.name != name:
        raise ConfigError(f"env family {family.name!r} is registered under another name, {name!r}")


def register_with_gymnasium(name: str, family: EnvFamily) -> None:
    """`gymnasium.make(family.gym_id, domain=...)` works for every registered family (with the
    family's `env_defaults` as the env's default keyword arguments)."""
    if family.gym_id not in gymnasium.registry:
        gymnasium.register(
            id=family.gym_id,
            entry_point=family.entry_point,
            max_episode_steps=family.max_episode_steps,
            kwargs=dict(family.env_defaults),
        )


FAMILIES: Registry[EnvFamily] = Registry(
    "env", group="darla.envs", check=check_family, on_register=register_with_gymnasium
)
"""darla's env families and plug-ins from the `darla.envs` entry points."""


def get_family(name: str) -> EnvFamily:
    """The family called `name`; accepts the gym id too ("darla/SeekAvoid-v0"). A shifted family
    `<base>@<suite>` ("CartPole-v1@colour", "SeekAvoid@distractors") is built and registered on
    first use, so a worker process that only knows the name rebuilds it."""
    for family_name, family in FAMILIES.items():
        if name == family.gym_id:
            return FAMILIES.get(family_name)
    if isinstance(name, str) and "@" in name and name not in FAMILIES:
        from darla.envs.shift_family import shift_family

        return shift_family(name)
    return FAMILIES.get(name)
