"""A MiniWorld room whose whole appearance comes from a DomainSpec, rendered fast and safely.

What this adds to `MiniWorldEnv`:
- the domain can change at `reset(options={"domain": ...})` without rebuilding the env;
- every env owns its GL display lists. MiniWorld compiles each env's static scene into list id 1,
  which all envs of a process share: with two envs in one process (a DummyVecEnv with several
  domains) each would render the other's room. Measured, not hypothetical;
- rooms and objects are compiled once per appearance and reused (per-step cost is one
  `glCallList` per object, not ~60 immediate-mode ctypes calls); this is where a MiniWorld env
  with several boxes otherwise loses half its speed;
- one `step()` that moves, applies the family's rules and renders exactly once;
- a `render_scene()` used by ground truth to draw arbitrary poses without resetting.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from miniworld.entity import Entity
from miniworld.miniworld import MiniWorldEnv, Room
from miniworld.opengl import Texture, drawBox
from miniworld.params import DEFAULT_PARAMS
from miniworld.utils import get_file_path
from pyglet import gl

from darla.envs.domains import OBJECT_KINDS, DomainSpec
from darla.envs.family import get_family
from darla.errors import ConfigError
from darla.registry import Registry, check_choice

AMBIENT_RATIO = 0.45 / 0.7  # MiniWorld's default ambient/diffuse ratio, kept for tinted lights
CAM_HALF_FOV = math.radians(30.0)
UNLIMITED = 2**31 - 1
"""What MiniWorld is told the episode limit is: the limit is a TimeLimit wrapper's, not the env's."""  # MiniWorld's camera: 60 degrees vertical, square frames


def _turn_left(env: DomainRoomEnv) -> None:
    env.turn_agent(env.turn_step)


def _turn_right(env: DomainRoomEnv) -> None:
    env.turn_agent(-env.turn_step)


def _move_forward(env: DomainRoomEnv) -> None:
    env.move_agent(env.forward_step, 0.0)


def _move_back(env: DomainRoomEnv) -> None:
    env.move_agent(-env.forward_step, 0.0)


def _stay(env: DomainRoomEnv) -> None:
    return None


ACTIONS: Registry[Callable[[DomainRoomEnv], None]] = Registry("action")
for _name, _fn in (
    ("turn_left", _turn_left),
    ("turn_right", _turn_right),
    ("move_forward", _move_forward),
    ("move_back", _move_back),
    ("stay", _stay),
):
    ACTIONS.register(_name, _fn)

DEFAULT_ACTIONS = ("turn_left", "turn_right", "move_forward")


def _load_texture_fast(path: str) -> Any:
    """MiniWorld's `Texture.load` without pyglet's per-pixel regex format conversion (seconds per
    1024x1024 texture, paid by every new process): same GL calls, same pixels, via PIL."""
    import pyglet
    from PIL import Image

    with Image.open(path) as img:
        rgba = np.asarray(img.convert("RGBA"))
    height, width = rgba.shape[:2]
    data = np.ascontiguousarray(rgba[::-1]).tobytes()  # GL wants the bottom row first
    image = pyglet.image.ImageData(width, height, "RGBA", data, pitch=width * 4)
    tex = image.get_texture()
    gl.glEnable(tex.target)
    gl.glBindTexture(tex.target, tex.id)
    gl.glTexImage2D(gl.GL_TEXTURE_2D, 0, gl.GL_RGB, width, height, 0, gl.GL_RGBA, gl.GL_UNSIGNED_BYTE, data)
    gl.glHint(gl.GL_GENERATE_MIPMAP_HINT, gl.GL_NICEST)
    gl.glGenerateMipmap(gl.GL_TEXTURE_2D)
    gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MAG_FILTER, gl.GL_LINEAR)
    gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MIN_FILTER, gl.GL_LINEAR_MIPMAP_LINEAR)
    gl.glBindTexture(gl.GL_TEXTURE_2D, 0)
    return tex


def preload_textures(names: Sequence[str]) -> None:
    """Fill MiniWorld's texture cache (the first variant of each name, as without randomisation)."""
    for name in names:
        path = get_file_path("textures", f"{name}_1", "png")
        if not os.path.exists(path):
            continue  # let MiniWorld raise its own error for unknown names
        if path not in Texture.tex_cache:
            Texture.tex_cache[path] = Texture(_load_texture_fast(path), name)


class ColorBox(Entity):
    """A box of any RGB colour and shape kind; drawn from a display list owned by its env."""

    def __init__(self, kind: str, color: tuple[float, float, float], role: str) -> None:
        super().__init__()
        check_choice("object kind", kind, list(OBJECT_KINDS))
        self.kind = kind
        self.color = tuple(float(c) for c in color)
        self.role = role
        self.size = np.array(OBJECT_KINDS[kind], dtype=float)
        sx, sy, sz = self.size
        self.radius = math.sqrt(sx * sx + sz * sz) / 2
        self.height = sy
        self.list_id = 0

    def render(self) -> None:
        gl.glPushMatrix()
        gl.glTranslatef(*self.pos)
        gl.glRotatef(self.dir * (180 / math.pi), 0, 1, 0)
        gl.glCallList(self.list_id)
        gl.glPopMatrix()


class DomainRoomEnv(MiniWorldEnv):
    """One rectangular room; subclasses define the objects and the rules (`_populate`, `_rules`)."""

    family_name: ClassVar[str] = ""
    cam_pitch: ClassVar[float] = -20.0
    """Camera tilt (degrees, negative = down). MiniWorld looks straight ahead, so objects leave
    the view ~1.4 m before contact and most frames show walls; tilted, they stay in view."""
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        domain: str | DomainSpec | Mapping[str, Any] | None = None,
        size: int = 64,
        room_size: float = 6.0,
        forward_step: float = 0.25,
        turn_step: float = 20.0,
        actions: Sequence[str] = DEFAULT_ACTIONS,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(size, (int, np.integer)) or size < 8:
            raise ConfigError(f"size must be an integer >= 8, got {size!r}")
        if room_size < 3.0:
            raise ConfigError(f"room_size must be >= 3 m, got {room_size}")
        if forward_step <= 0 or turn_step <= 0:
            raise ConfigError(f"forward_step and turn_step must be > 0, got {forward_step}, {turn_step}")
        if not actions:
            raise ConfigError("actions must name at least one action")
        self._action_fns = [ACTIONS.get(a) for a in actions]
        self.action_names = tuple(actions)
        self.room_size = float(room_size)
        self.forward_step = float(forward_step)
        self.turn_step = float(turn_step)
        self.objects: list[ColorBox] = []
        self._lists: dict[tuple[Any, ...], int] = {}
        self._room_cache: dict[tuple[Any, ...], Room] = {}
        self._room_list = 0
        self.domain = self.resolve_domain(domain)
        params = DEFAULT_PARAMS.no_random()
        params.set("forward_step", self.forward_step)
        params.set("turn_step", self.turn_step)
        params.set("forward_drift", 0.0)
        params.set("cam_pitch", self.cam_pitch)
        self.params = params
        self._apply_domain(self.domain)
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        # MiniWorld prints frame-buffer fallbacks to stdout; keep stdout clean for `--json`.
        with contextlib.redirect_stdout(io.StringIO()):
            MiniWorldEnv.__init__(
                self,
                max_episode_steps=UNLIMITED,  # the time limit is Gymnasium's (EnvFamily.make)
                obs_width=int(size),
                obs_height=int(size),
                window_width=max(size, 256),
                window_height=max(size, 256),
                params=self.params,
                domain_rand=False,
                render_mode=render_mode,
            )
        self.action_space = spaces.Discrete(len(self._action_fns))
        self.size = int(size)

    # ------------------------------------------------------------------ domains
    @classmethod
    def resolve_domain(cls, domain: str | DomainSpec | Mapping[str, Any] | None) -> DomainSpec:
        spec: DomainSpec = get_family(cls.family_name).domain(domain)
        return spec

    def _apply_domain(self, spec: DomainSpec) -> None:
        self.domain = spec
        ambient = [c * AMBIENT_RATIO for c in spec.light_color]
        self.params.set("light_color", list(spec.light_color))
        self.params.set("light_ambient", ambient)
        self.params.set("sky_color", list(spec.sky_color))
        self.light_color = np.array(spec.light_color, dtype=float)
        self.light_ambient = np.array(ambient, dtype=float)
        self.sky_color = np.array(spec.sky_color, dtype=float)
        self.light_pos = self.params.get_max("light_pos")

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if options and "domain" in options:
            self._apply_domain(self.resolve_domain(options["domain"]))
        obs, _ = super().reset(seed=seed)
        return obs, self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        index = int(action)
        if not 0 <= index < len(self._action_fns):
            raise ConfigError(f"invalid action {action!r}; valid: 0..{len(self._action_fns) - 1}")
        self.step_count += 1
        self._action_fns[index](self)
        reward, terminated = self._rules()
        obs = self.render_obs()
        return obs, float(reward), terminated, False, self._info()

    def _info(self) -> dict[str, Any]:
        return {"domain": self.domain.name}

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.render_obs(self.vis_fb)
        return None

    def close(self) -> None:
        if self._lists:
            with contextlib.suppress(Exception):
                self.shadow_window.switch_to()
                for list_id in self._lists.values():
                    gl.glDeleteLists(list_id, 1)
            self._lists.clear()
        super().close()

    # ------------------------------------------------------------------ world
    def _gen_world(self) -> None:
        room = self._room()
        self.rooms.append(room)
        self.wall_segs = room.wall_segs
        self.room_probs = np.array([1.0])
        self.objects = []
        self.place_agent()
        self._populate()

    def _gen_static_data(self) -> None:  # rooms come precomputed from the cache
        self.wall_segs = np.concatenate([r.wall_segs for r in self.rooms])
        self.room_probs = np.array([1.0])

    def _populate(self) -> None:
        """Add the family's objects (agent already placed)."""
        raise NotImplementedError

    def _rules(self) -> tuple[float, bool]:
        """Reward and termination after the agent moved (entities may be moved/removed)."""
        raise NotImplementedError

    def _room(self) -> Room:
        d = self.domain
        key = (*d.room, self.room_size)
        room = self._room_cache.get(key)
        if room is None:
            s = self.room_size
            outline = np.array([[s, s], [s, 0.0], [0.0, 0.0], [0.0, s]])
            self.shadow_window.switch_to()
            preload_textures((d.wall_tex, d.floor_tex, d.ceil_tex))
            room = Room(
                outline,
                wall_tex=d.wall_tex,
                floor_tex=d.floor_tex,
                ceil_tex=d.ceil_tex,
                no_ceiling=not d.ceiling,
                wall_height=d.wall_height,
            )
            room._gen_static_data(self.params, None)
            self._room_cache[key] = room
        return room

    def add_object(self, spec_kind: str, color: tuple[float, float, float], role: str) -> ColorBox:
        ent = ColorBox(spec_kind, color, role)
        ent.list_id = self._object_list(ent)
        self.objects.append(ent)
        return ent

    def place_free(self, ent: Entity, min_agent_dist: float) -> None:
        """Put `ent` at a random free spot at least `min_agent_dist` from the agent."""
        lo, hi = ent.radius + 0.05, self.room_size - ent.radius - 0.05
        pos = np.zeros(3)
        for _ in range(200):
            x, z = self.np_random.uniform(lo, hi, size=2)
            pos = np.array([x, 0.0, z])
            if self.agent.pos is not None and np.hypot(*(pos - self.agent.pos)[[0, 2]]) < min_agent_dist:
                continue
            if not self.intersect(ent, pos, ent.radius):
                break
        ent.pos = pos
        ent.dir = float(self.np_random.uniform(-math.pi, math.pi))
        if ent not in self.entities:
            self.entities.append(ent)

    def touch_radius(self, ent: Entity) -> float:
        return float(ent.radius + self.agent.radius + 1.1 * self.forward_step)

    def touched(self) -> list[ColorBox]:
        """Objects within MiniWorld's `near()` distance of the agent (one vectorised test)."""
        if not self.objects:
            return []
        pos = np.array([o.pos for o in self.objects])
        dist = np.hypot(pos[:, 0] - self.agent.pos[0], pos[:, 2] - self.agent.pos[2])
        limits = np.array([self.touch_radius(o) for o in self.objects])
        return [o for o, hit in zip(self.objects, dist < limits) if hit]

    # ------------------------------------------------------------------ privileged state
    def bearing(self, pos: np.ndarray) -> tuple[float, float]:
        """(angle in radians from the view direction, positive = left; distance) of a point."""
        dx, dz = pos[0] - self.agent.pos[0], pos[2] - self.agent.pos[2]
        angle = math.atan2(-dz, dx) - self.agent.dir
        return (angle + math.pi) % (2 * math.pi) - math.pi, math.hypot(dx, dz)

    def objects_in_view(self) -> list[ColorBox]:
        """Objects inside the camera's horizontal field of view (the room is convex: no walls
        can hide them; other objects may partly)."""
        out = []
        for o in self.objects:
            angle, dist = self.bearing(o.pos)
            if dist > 1e-6 and abs(angle) <= CAM_HALF_FOV + math.atan2(o.radius, dist):
                out.append(o)
        return out

    def in_view(self) -> bool:
        """Whether the frame shows an object (frame collection records how often it does)."""
        return bool(self.objects_in_view())

    # ------------------------------------------------------------------ rendering
    def _object_list(self, ent: ColorBox) -> int:
        key = ("object", ent.kind, ent.color)
        list_id = self._lists.get(key)
        if list_id is None:
            self.shadow_window.switch_to()
            list_id = gl.glGenLists(1)
            sx, sy, sz = ent.size
            gl.glNewList(list_id, gl.GL_COMPILE)
            gl.glDisable(gl.GL_TEXTURE_2D)
            gl.glColor3f(*ent.color)
            drawBox(x_min=-sx / 2, x_max=sx / 2, y_min=0, y_max=sy, z_min=-sz / 2, z_max=sz / 2)
            gl.glEndList()
            self._lists[key] = list_id
        return list_id

    def _render_static(self) -> None:
        """Compile (once per room appearance) the room into this env's own display list."""
        room = self.rooms[0]
        key = (
            "room",
            room.wall_tex_name,
            room.floor_tex_name,
            room.ceil_tex_name,
            room.no_ceiling,
            room.wall_height,
            self.room_size,
        )
        list_id = self._lists.get(key)
        if list_id is None:
            self.shadow_window.switch_to()
            list_id = gl.glGenLists(1)
            gl.glNewList(list_id, gl.GL_COMPILE)
            gl.glEnable(gl.GL_TEXTURE_2D)
            for r in self.rooms:
                r._render()
            gl.glEndList()
            self._lists[key] = list_id
        self._room_list = list_id

    def _render_world(self, frame_buffer: Any, render_agent: bool) -> np.ndarray:
        gl.glLightfv(gl.GL_LIGHT0, gl.GL_POSITION, (gl.GLfloat * 4)(*self.light_pos, 1.0))
        gl.glLightfv(gl.GL_LIGHT0, gl.GL_AMBIENT, (gl.GLfloat * 4)(*self.light_ambient, 1.0))
        gl.glLightfv(gl.GL_LIGHT0, gl.GL_DIFFUSE, (gl.GLfloat * 4)(*self.light_color, 1.0))
        gl.glEnable(gl.GL_LIGHTING)
        gl.glEnable(gl.GL_LIGHT0)
        gl.glShadeModel(gl.GL_SMOOTH)
        gl.glEnable(gl.GL_COLOR_MATERIAL)
        gl.glColorMaterial(gl.GL_FRONT_AND_BACK, gl.GL_AMBIENT_AND_DIFFUSE)
        gl.glCallList(self._room_list)
        for ent in self.entities:
            if ent is not self.agent:
                ent.render()
        if render_agent:
            self.agent.render()
        return frame_buffer.resolve()

    def render_scene(
        self,
        domain: DomainSpec,
        agent_pos: tuple[float, float],
        agent_dir: float,
        objects: Sequence[tuple[str, tuple[float, float, float], str, tuple[float, float], float]],
    ) -> np.ndarray:
        """Draw one frame of an arbitrary scene without a reset (used by ground truth).

        `objects` are (kind, colour, role, (x, z), yaw). The episode state is replaced.
        """
        self._apply_domain(domain)
        self.rooms = [self._room()]
        self.wall_segs = self.rooms[0].wall_segs
        self._render_static()
        self.agent.pos = np.array([agent_pos[0], 0.0, agent_pos[1]])
        self.agent.dir = float(agent_dir)
        self.objects = []
        self.entities = [self.agent]
        for kind, color, role, (x, z), yaw in objects:
            ent = self.add_object(kind, color, role)
            ent.pos = np.array([x, 0.0, z])
            ent.dir = float(yaw)
            self.entities.append(ent)
        return self.render_obs()
