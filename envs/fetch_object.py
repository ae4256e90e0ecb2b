"""FetchObject: walk to the goal object among distractors (+1, episode ends).

The goal is identified by its shape alone (a pillar among cubes); goal and distractors share
one colour per domain, so colour is pure nuisance here — the opposite of SeekAvoid, where
colour carries the reward. Domains: two rooms x two object colours, one combination held out;
a cold light seen in one source (room C, orange) and a target that puts the held-out combination
under it; ood rooms/colours no source has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from darla.envs.base import DEFAULT_ACTIONS, DomainRoomEnv
from darla.envs.domains import DomainSpec, ObjectSpec
from darla.envs.family import FAMILIES, EnvFamily
from darla.errors import ConfigError

ORANGE = (0.95, 0.5, 0.1)
TEAL = (0.1, 0.7, 0.7)
PINK = (0.95, 0.45, 0.75)
WHITE = (0.9, 0.9, 0.9)


def _objects(color: tuple[float, float, float]) -> dict[str, ObjectSpec]:
    return {"good": ObjectSpec("pillar", color), "bad": ObjectSpec("cube", color)}


ROOM_C = {"wall_tex": "wood_planks", "floor_tex": "concrete", "ceil_tex": "ceiling_tile_noborder"}
ROOM_D = {"wall_tex": "drywall", "floor_tex": "cardboard", "ceil_tex": "ceiling_tile_noborder"}
COLD = {"light_color": (0.4, 0.55, 0.95), "sky_color": (0.05, 0.1, 0.3), "ceiling": False, "wall_height": 1.7}

_DOMAINS = [
    DomainSpec("planks_orange", **ROOM_C, **_objects(ORANGE), description="source: room C (planks/concrete), orange"),
    DomainSpec("planks_teal", **ROOM_C, **_objects(TEAL), description="source: room C, teal objects"),
    DomainSpec("drywall_orange", **ROOM_D, **_objects(ORANGE), description="source: room D (drywall/cardboard), orange"),
    DomainSpec(
        "planks_orange_cold", **ROOM_C, **_objects(ORANGE), **COLD,
        description="source: room C, orange, cold blue light over open low walls, night sky",
    ),
    DomainSpec(
        "drywall_teal", **ROOM_D, **_objects(TEAL), difficulty=1,
        description="target: held-out combination room D x teal",
    ),
    DomainSpec(
        "drywall_teal_cold", **ROOM_D, **_objects(TEAL), **COLD, difficulty=2,
        description="target: room D x teal under the cold light (seen only with room C, orange)",
    ),
    DomainSpec(
        "rock_pink", wall_tex="rock", floor_tex="asphalt", ceil_tex="concrete_tiles", **_objects(PINK),
        difficulty=3, description="ood: unseen room (rock/asphalt) and unseen colour (pink)",
    ),
    DomainSpec(
        "water_white", wall_tex="metal_grill", floor_tex="water", ceil_tex="concrete_tiles", **_objects(WHITE),
        difficulty=4, description="ood: unseen room (metal grill, water floor), white objects",
    ),
]  # fmt: skip

DOMAINS = {d.name: d for d in _DOMAINS}
SPLITS = {
    "source": ("planks_orange", "planks_teal", "drywall_orange", "planks_orange_cold"),
    "target": ("drywall_teal", "drywall_teal_cold"),
    "ood": ("rock_pink", "water_white"),
}


class FetchObjectEnv(DomainRoomEnv):
    """Reach the goal object (+1, terminates); touching distractors does nothing."""

    family_name: ClassVar[str] = "FetchObject"

    def __init__(
        self,
        domain: str | DomainSpec | Mapping[str, Any] | None = None,
        size: int = 64,
        n_distractors: int = 3,
        goal_reward: float = 1.0,
        room_size: float = 6.0,
        forward_step: float = 0.25,
        turn_step: float = 20.0,
        actions: Sequence[str] = DEFAULT_ACTIONS,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not 0 <= n_distractors <= 10:
            raise ConfigError(f"n_distractors must be in 0..10, got {n_distractors}")
        self.n_distractors = int(n_distractors)
        self.goal_reward = float(goal_reward)
        super().__init__(
            domain=domain,
            size=size,
            room_size=room_size,
            forward_step=forward_step,
            turn_step=turn_step,
            actions=actions,
            seed=seed,
            render_mode=render_mode,
        )

    def _populate(self) -> None:
        d = self.domain
        goal = self.add_object(d.good.kind, d.good.color, "good")
        self.place_free(goal, min_agent_dist=self.touch_radius(goal) + 1.0)
        for _ in range(self.n_distractors):
            ent = self.add_object(d.bad.kind, d.bad.color, "bad")
            self.place_free(ent, min_agent_dist=self.touch_radius(ent) + 0.3)

    def _rules(self) -> tuple[float, bool]:
        if any(o.role == "good" for o in self.touched()):
            return self.goal_reward, True
        return 0.0, False


FAMILY = EnvFamily(
    name="FetchObject",
    gym_id="darla/FetchObject-v0",
    entry_point="darla.envs.fetch_object:FetchObjectEnv",
    domains=DOMAINS,
    splits=SPLITS,
    description="walk to the goal (the pillar) among same-coloured cubes; +1 and the episode ends",
    max_episode_steps=150,
)
FAMILIES.register(FAMILY.name, FAMILY)
