"""SeekAvoid: DARLA's `rooms_collect_good_objects` on MiniWorld.

One room with good objects (+1 on contact) and bad objects (-1 on contact). Touched objects
respawn at a random free spot (dense reward: the prototype was only learnable from pixels
this way) or, with `respawn=False`, disappear and the episode ends once every good one is gone.

Domains follow DARLA's split: two room appearances x two object sets; three combinations are
the sources and the fourth is the target. Object sets are balanced: within a set good and bad
objects share their shape and differ only in colour, and both sets use the same shape, so
valence is carried by colour alone. A third factor, the light (warm dusk or purple neon light
over open low walls), is seen in two more sources, each with one half of the held-out
combination: dusk with object set 2 in room A, neon with object set 1 in room B. The harder
targets put the held-out combination under those lights, so every target recombines values the
sources showed (DARLA's premise) while the light breaks colour shortcuts. ood domains use room
textures and object shapes no source has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from darla.envs.base import DEFAULT_ACTIONS, DomainRoomEnv
from darla.envs.domains import DomainSpec, ObjectSpec
from darla.envs.family import FAMILIES, EnvFamily
from darla.errors import ConfigError

GREEN = (0.1, 0.75, 0.1)
RED = (0.85, 0.1, 0.1)
BLUE = (0.1, 0.35, 0.95)
YELLOW = (0.95, 0.8, 0.1)

ROOM_A = {"wall_tex": "brick_wall", "floor_tex": "wood", "ceil_tex": "ceiling_tiles"}
ROOM_B = {"wall_tex": "marble", "floor_tex": "floor_tiles_bw", "ceil_tex": "ceiling_tiles"}
SET_1 = {"good": ObjectSpec("cube", GREEN), "bad": ObjectSpec("cube", RED)}
SET_2 = {"good": ObjectSpec("cube", BLUE), "bad": ObjectSpec("cube", YELLOW)}
OPEN = {"ceiling": False, "wall_height": 1.7}  # low walls, no ceiling: the sky fills the top
DUSK = {"light_color": (0.95, 0.6, 0.35), "sky_color": (0.95, 0.55, 0.3), **OPEN}
NEON = {"light_color": (0.75, 0.3, 0.95), "sky_color": (0.25, 0.05, 0.35), **OPEN}

_DOMAINS = [
    DomainSpec("brick_greenred", **ROOM_A, **SET_1, description="source: room A (brick/wood), set 1 (green+ red-)"),
    DomainSpec("brick_blueyellow", **ROOM_A, **SET_2, description="source: room A, set 2 (blue+ yellow-)"),
    DomainSpec("marble_greenred", **ROOM_B, **SET_1, description="source: room B (marble/tiles), set 1"),
    DomainSpec(
        "brick_blueyellow_dusk", **ROOM_A, **SET_2, **DUSK,
        description="source: room A, set 2, warm dusk light over open low walls, orange sky",
    ),
    DomainSpec(
        "marble_greenred_neon", **ROOM_B, **SET_1, **NEON,
        description="source: room B, set 1, purple neon light over open low walls, dark purple sky",
    ),
    DomainSpec(
        "marble_blueyellow", **ROOM_B, **SET_2, difficulty=1,
        description="target: held-out combination room B x set 2 (DARLA's split)",
    ),
    DomainSpec(
        "marble_blueyellow_dusk", **ROOM_B, **SET_2, **DUSK, difficulty=2,
        description="target: room B x set 2 under dusk light (seen only with room A and set 2)",
    ),
    DomainSpec(
        "marble_blueyellow_neon", **ROOM_B, **SET_2, **NEON, difficulty=3,
        description="target: room B x set 2 under neon light (seen only with room B and set 1)",
    ),
    DomainSpec(
        "brick_greenred_pillars", **ROOM_A, good=ObjectSpec("pillar", GREEN), bad=ObjectSpec("pillar", RED),
        difficulty=2, description="ood: room A, set 1 colours on an unseen shape (pillars)",
    ),
    DomainSpec(
        "cinder_greenred", wall_tex="cinder_blocks", floor_tex="grass", ceil_tex="concrete_tiles", **SET_1,
        difficulty=3, description="ood: unseen room (cinder blocks, grass floor), set 1",
    ),
    DomainSpec(
        "slime_blueyellow", wall_tex="slime", floor_tex="lava", ceil_tex="concrete_tiles", **SET_2,
        difficulty=4, description="ood: strongly coloured unseen room (green slime walls, lava floor), set 2",
    ),
]  # fmt: skip

DOMAINS = {d.name: d for d in _DOMAINS}
SPLITS = {
    "source": (
        "brick_greenred",
        "brick_blueyellow",
        "marble_greenred",
        "brick_blueyellow_dusk",
        "marble_greenred_neon",
    ),
    "target": ("marble_blueyellow", "marble_blueyellow_dusk", "marble_blueyellow_neon"),
    "ood": ("brick_greenred_pillars", "cinder_greenred", "slime_blueyellow"),
}


class SeekAvoidEnv(DomainRoomEnv):
    """Collect good objects (+1), avoid bad ones (-1); observations are uint8 HxWx3 frames."""

    family_name: ClassVar[str] = "SeekAvoid"

    def __init__(
        self,
        domain: str | DomainSpec | Mapping[str, Any] | None = None,
        size: int = 64,
        n_good: int = 2,
        n_bad: int = 2,
        respawn: bool = True,
        good_reward: float = 1.0,
        bad_reward: float = -1.0,
        room_size: float = 6.0,
        forward_step: float = 0.25,
        turn_step: float = 20.0,
        actions: Sequence[str] = DEFAULT_ACTIONS,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if n_good < 1 or n_bad < 0 or n_good + n_bad > 12:
            raise ConfigError(f"need n_good >= 1, n_bad >= 0 and at most 12 objects, got {n_good}, {n_bad}")
        self.n_good = int(n_good)
        self.n_bad = int(n_bad)
        self.respawn = bool(respawn)
        self.good_reward = float(good_reward)
        self.bad_reward = float(bad_reward)
        self.collected = 0
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
        self.collected = 0
        d = self.domain
        for spec, role, count in ((d.good, "good", self.n_good), (d.bad, "bad", self.n_bad)):
            for _ in range(count):
                ent = self.add_object(spec.kind, spec.color, role)
                self.place_free(ent, min_agent_dist=self.touch_radius(ent) + 0.5)

    def _rules(self) -> tuple[float, bool]:
        reward = 0.0
        for ent in self.touched():
            good = ent.role == "good"
            reward += self.good_reward if good else self.bad_reward
            self.collected += int(good)
            if self.respawn:
                self.place_free(ent, min_agent_dist=self.touch_radius(ent) + 1.0)
            else:
                self.objects.remove(ent)
                self.entities.remove(ent)
        terminated = not self.respawn and not any(o.role == "good" for o in self.objects)
        return reward, terminated


FAMILY = EnvFamily(
    name="SeekAvoid",
    gym_id="darla/SeekAvoid-v0",
    entry_point="darla.envs.seek_avoid:SeekAvoidEnv",
    domains=DOMAINS,
    splits=SPLITS,
    description="collect good objects (+1), avoid bad ones (-1); objects respawn",
    max_episode_steps=300,
)
FAMILIES.register(FAMILY.name, FAMILY)
