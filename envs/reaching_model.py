"""Reaching's MuJoCo scene: a two-joint arm on a table, a target ball, a camera; appearance in place.

The model is compiled once per env. A domain (reaching_domains.ReachDomain) is applied by writing
into the compiled model: material colours (`mat_rgba`), texture pixels (`tex_data`, then
`mjr_uploadTexture` to the renderer's GL context), the light and head light, the skybox texture
and three distractor geoms (type, size, colour; hidden in a geom group the camera does not draw).

Dynamics are chosen for agents that see one frame at a time: the joints are heavily damped
(time constant ~10 ms against a 50 ms step), so a torque sets the joint velocity almost at once and
the arm stops when the torque does. The frame then holds the whole state (angles and target);
Gymnasium's Reacher (armature 1, damping 1) carries momentum that a single frame cannot show.

Rendering is set for 64x64 frames on a CPU rasteriser: no shadows, no multisampling, coarse
tessellation of spheres, capsules and the skybox (indistinguishable at 64x64; ~1.1 -> ~0.65 ms a
frame with llvmpipe).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from darla.envs.reaching_domains import MAX_DISTRACTORS, TEXTURE_SIZE, Distractor, ReachDomain
from darla.envs.reaching_gl import import_mujoco, make_renderer
from darla.errors import ConfigError

LINK_LENGTHS = (0.14, 0.14)
"""Upper arm and forearm (m); the fingertip reaches 0.28 m from the shoulder at most."""
REACH = sum(LINK_LENGTHS)
ELBOW_RANGE = (0.15, 2.6)
"""Elbow range (rad): bent one way only, never straight. Every fingertip position then has one arm
pose (no elbow flip), and the stretched-out singular pose, where no joint speed moves the fingertip
towards the shoulder, is out of reach; folded, the fingertip stays ~7.5 cm from the shoulder."""
TABLE_HALF = 0.34
TARGET_RADIUS = 0.04
TARGET_Z = TARGET_RADIUS
TIMESTEP = 0.01
DAMPING = 2.0
CAMERA_POS = (0.0, -0.5, 0.62)
CAMERA_LOOKAT = (0.0, 0.0, 0.0)
CAMERA_FOVY = 45.0
SKY_SIZE = 32
CARTESIAN_DAMPING = 0.03
"""Damping of the least-squares inverse Jacobian (m): slows the fingertip near the arm's
singular poses (stretched out or folded) instead of spinning the joints."""
HIDDEN_GROUP = 3
"""Geom group MuJoCo's default visual options do not draw (0-2 are drawn): unused distractors."""

# per distractor shape: MuJoCo geom type name, size, height of its centre above the table
DISTRACTOR_GEOMS: dict[str, tuple[str, tuple[float, float, float], float]] = {
    "sphere": ("sphere", (0.03, 0.0, 0.0), 0.03),
    "box": ("box", (0.026, 0.026, 0.026), 0.026),
    "cylinder": ("cylinder", (0.025, 0.03, 0.0), 0.03),
}


def _xyaxes(pos: tuple[float, ...], lookat: tuple[float, ...]) -> str:
    """MuJoCo camera axes (x right, y up) for a camera at `pos` looking at `lookat`, no roll."""
    back = np.subtract(pos, lookat)
    back /= np.linalg.norm(back)
    right = np.array([1.0, 0.0, 0.0])
    up = np.cross(back, right)
    up /= np.linalg.norm(up)
    return " ".join(f"{v:.5f}" for v in (*right, *up))


def _v(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:g}" for v in values)


def build_xml(size: int, torque: float) -> str:
    """The arm's MJCF; `torque` (N m at action +-1) sets the joint speed, torque / damping rad/s."""
    l0, l1 = LINK_LENGTHS
    legs = "\n".join(
        f'    <geom name="leg{i}" type="box" size="0.025 0.025 0.35" pos="{sx * 0.3:g} {sy * 0.3:g} -0.39" '
        'material="table"/>'
        for i, (sx, sy) in enumerate(((1, 1), (-1, 1), (1, -1), (-1, -1)))
    )
    distractors = "\n".join(
        f'    <body name="distractor{i}" mocap="true" pos="0 0 -1">\n'
        f'      <geom name="distractor{i}" type="sphere" size="0.03" group="{HIDDEN_GROUP}"/>\n    </body>'
        for i in range(MAX_DISTRACTORS)
    )
    return f"""
<mujoco model="darla_reaching">
  <compiler angle="radian"/>
  <option timestep="{TIMESTEP}" integrator="implicitfast">
    <flag contact="disable" gravity="disable"/>
  </option>
  <visual>
    <quality shadowsize="0" offsamples="0" numslices="12" numstacks="8" numquads="1"/>
    <global offwidth="{size}" offheight="{size}"/>
    <headlight ambient="0.3 0.3 0.3" diffuse="0.25 0.25 0.25" specular="0 0 0"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.4 0.6 0.9" rgb2="0.9 0.9 1"
             width="{SKY_SIZE}" height="{SKY_SIZE}"/>
    <texture name="table" type="2d" builtin="flat" rgb1="1 1 1" width="{TEXTURE_SIZE}" height="{TEXTURE_SIZE}"/>
    <texture name="floor" type="2d" builtin="flat" rgb1="1 1 1" width="{TEXTURE_SIZE}" height="{TEXTURE_SIZE}"/>
    <material name="table" texture="table" texrepeat="2 2" specular="0.1"/>
    <material name="floor" texture="floor" texrepeat="5 5" specular="0"/>
    <material name="arm" rgba="0.15 0.35 0.9 1" specular="0.3" shininess="0.3"/>
    <material name="target" rgba="0.9 0.15 0.1 1" specular="0.3" shininess="0.3"/>
  </asset>
  <default>
    <joint damping="{DAMPING}" armature="0.001"/>
    <geom contype="0" conaffinity="0"/>
  </default>
  <worldbody>
    <light name="sun" directional="true" pos="0 0 2" dir="0.3 0.5 -1" diffuse="0.8 0.8 0.8"
           ambient="0.2 0.2 0.2" specular="0.1 0.1 0.1" castshadow="false"/>
    <camera name="view" pos="{_v(CAMERA_POS)}" xyaxes="{_xyaxes(CAMERA_POS, CAMERA_LOOKAT)}" fovy="{CAMERA_FOVY}"/>
    <geom name="floor" type="plane" size="1.6 1.6 0.1" pos="0 0 -0.74" material="floor"/>
    <geom name="table" type="box" size="{TABLE_HALF} {TABLE_HALF} 0.02" pos="0 0 -0.02" material="table"/>
{legs}
    <geom name="base" type="cylinder" size="0.036 0.02" pos="0 0 0.02" material="arm"/>
    <body name="upper_arm" pos="0 0 0.045">
      <joint name="shoulder" type="hinge" axis="0 0 1"/>
      <geom name="upper_arm" type="capsule" fromto="0 0 0 {l0} 0 0" size="0.022" material="arm"/>
      <body name="forearm" pos="{l0} 0 0">
        <joint name="elbow" type="hinge" axis="0 0 1" limited="true" range="{ELBOW_RANGE[0]} {ELBOW_RANGE[1]}"/>
        <geom name="forearm" type="capsule" fromto="0 0 0 {l1} 0 0" size="0.019" material="arm"/>
        <geom name="fingertip" type="sphere" pos="{l1} 0 0" size="0.024" material="arm"/>
        <site name="fingertip" pos="{l1} 0 0" size="0.01"/>
      </body>
    </body>
    <body name="target" mocap="true" pos="0.1 0.1 {TARGET_Z}">
      <geom name="target" type="sphere" size="{TARGET_RADIUS}" material="target"/>
    </body>
{distractors}
  </worldbody>
  <actuator>
    <motor name="shoulder" joint="shoulder" gear="{torque}" ctrlrange="-1 1"/>
    <motor name="elbow" joint="elbow" gear="{torque}" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


@functools.lru_cache(maxsize=32)
def _sky_texels(top: tuple[float, ...], bottom: tuple[float, ...]) -> np.ndarray:
    """MuJoCo's own gradient skybox for two colours (compiled from a texture-only model, ~1 ms)."""
    mujoco = import_mujoco()
    xml = (
        f'<mujoco><asset><texture name="sky" type="skybox" builtin="gradient" rgb1="{_v(top)}" '
        f'rgb2="{_v(bottom)}" width="{SKY_SIZE}" height="{SKY_SIZE}"/></asset></mujoco>'
    )
    return np.array(mujoco.MjModel.from_xml_string(xml).tex_data)


def place_distractors(n: int, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) free spots on the table for distractors, 10 cm from the target, the shoulder and each other."""
    placed: list[np.ndarray] = []
    free = TABLE_HALF - 0.05
    for _ in range(n):
        spot = np.zeros(2)
        for _ in range(100):
            spot = rng.uniform(-free, free, size=2)
            if all(np.linalg.norm(spot - other) > 0.1 for other in (target, np.zeros(2), *placed)):
                break
        placed.append(spot)
    return np.array(placed).reshape(-1, 2)


class ReachScene:
    """The compiled model, its data and one renderer reused for every frame."""

    def __init__(self, size: int = 64, torque: float = 12.0) -> None:
        if not isinstance(size, (int, np.integer)) or size < 8:
            raise ConfigError(f"size must be an integer >= 8, got {size!r}")
        if not torque > 0:
            raise ConfigError(f"torque must be > 0, got {torque}")
        self.mj = import_mujoco()
        mj = self.mj
        self.size = int(size)
        self.model = mj.MjModel.from_xml_string(build_xml(self.size, float(torque)))
        self.data = mj.MjData(self.model)
        self.renderer = make_renderer(self.model, self.size)
        name = functools.partial(mj.mj_name2id, self.model)
        self.camera = mj.MjvCamera()
        self.camera.type = mj.mjtCamera.mjCAMERA_FIXED
        self.camera.fixedcamid = name(mj.mjtObj.mjOBJ_CAMERA, "view")
        self._mat = {m: name(mj.mjtObj.mjOBJ_MATERIAL, m) for m in ("arm", "target")}
        self._tex = {t: name(mj.mjtObj.mjOBJ_TEXTURE, t) for t in ("sky", "table", "floor")}
        self._light = name(mj.mjtObj.mjOBJ_LIGHT, "sun")
        self._site = name(mj.mjtObj.mjOBJ_SITE, "fingertip")
        self._distractor_geoms = [
            name(mj.mjtObj.mjOBJ_GEOM, f"distractor{i}") for i in range(MAX_DISTRACTORS)
        ]
        mocap = self.model.body_mocapid
        self._target_mocap = int(mocap[name(mj.mjtObj.mjOBJ_BODY, "target")])
        self._distractor_mocap = [
            int(mocap[name(mj.mjtObj.mjOBJ_BODY, f"distractor{i}")]) for i in range(MAX_DISTRACTORS)
        ]
        self.joint_speed = float(torque) / DAMPING
        """Joint speed (rad/s) under a full torque, once the damping has caught up (~10 ms)."""
        self.n_distractors = 0
        self._applied: dict[str, Any] = {}

    # ------------------------------------------------------------------ appearance
    def apply(self, spec: ReachDomain) -> None:
        """Show `spec`'s appearance; only what changed is written (textures are re-uploaded then)."""
        m = self.model
        m.mat_rgba[self._mat["arm"], :3] = spec.arm_color
        m.mat_rgba[self._mat["target"], :3] = spec.target_color
        light = np.array(spec.light_color)
        m.light_diffuse[self._light] = light
        m.light_ambient[self._light] = 0.25 * light
        m.vis.headlight.ambient = 0.3 * light
        m.vis.headlight.diffuse = 0.2 * light
        for tex, value in (
            ("table", spec.table),
            ("floor", spec.floor),
            ("sky", (spec.sky_top, spec.sky_bottom)),
        ):
            if self._applied.get(tex) == value:
                continue
            texels = _sky_texels(*value) if tex == "sky" else value.texture()  # type: ignore[union-attr]
            self._upload(self._tex[tex], texels)
            self._applied[tex] = value
        self._set_distractors(spec.distractors)

    def _upload(self, texid: int, texels: np.ndarray) -> None:
        m = self.model
        adr = int(m.tex_adr[texid])
        n = int(m.tex_width[texid] * m.tex_height[texid] * m.tex_nchannel[texid])
        m.tex_data[adr : adr + n] = texels.reshape(-1)
        # mujoco.Renderer keeps its GL context and MjrContext private; uploading a changed texture
        # into them is what MuJoCo's own viewers do after editing tex_data.
        gl = getattr(self.renderer, "_gl_context", None)
        context = getattr(self.renderer, "_mjr_context", None)
        if context is None:
            raise ConfigError("this mujoco.Renderer has no GL context to upload textures to (closed?)")
        if gl is not None:
            gl.make_current()
        self.mj.mjr_uploadTexture(m, context, texid)

    def _set_distractors(self, distractors: tuple[Distractor, ...]) -> None:
        m = self.model
        for i, geom in enumerate(self._distractor_geoms):
            if i < len(distractors):
                kind, size, _ = DISTRACTOR_GEOMS[distractors[i].shape]
                m.geom_type[geom] = getattr(self.mj.mjtGeom, f"mjGEOM_{kind.upper()}")
                m.geom_size[geom] = size
                m.geom_rgba[geom] = (*distractors[i].color, 1.0)
                m.geom_group[geom] = 0
            else:
                m.geom_group[geom] = HIDDEN_GROUP
        self.n_distractors = len(distractors)
        self._distractor_heights = [DISTRACTOR_GEOMS[d.shape][2] for d in distractors]

    # ------------------------------------------------------------------ state
    def set_state(
        self, qpos: np.ndarray, target_xy: np.ndarray, distractor_xy: np.ndarray | None = None
    ) -> None:
        """Place the arm (shoulder, elbow angles), the target and the distractors; zero velocities."""
        d = self.data
        d.qpos[:] = qpos
        d.qvel[:] = 0.0
        d.ctrl[:] = 0.0
        d.mocap_pos[self._target_mocap] = (target_xy[0], target_xy[1], TARGET_Z)
        for i, slot in enumerate(self._distractor_mocap):
            if distractor_xy is not None and i < self.n_distractors:
                x, y = distractor_xy[i]
                d.mocap_pos[slot] = (x, y, self._distractor_heights[i])
            else:
                d.mocap_pos[slot] = (0.0, 0.0, -1.0)
        self.mj.mj_forward(self.model, d)

    def step(self, ctrl: np.ndarray, substeps: int) -> None:
        self.data.ctrl[:] = ctrl
        self.mj.mj_step(self.model, self.data, nstep=substeps)

    def step_cartesian(self, velocity: np.ndarray, substeps: int) -> None:
        """Drive the fingertip at `velocity` (m/s on the table) by joint torques: per physics step,
        damped least squares through the arm's Jacobian gives the joint speeds, the torques follow
        from the damping (scaled down together where one would leave the actuators' range)."""
        for _ in range(substeps):
            jac = self.jacobian()
            dq = np.linalg.solve(jac.T @ jac + CARTESIAN_DAMPING**2 * np.eye(2), jac.T @ velocity)
            elbow = self.data.qpos[1]
            if (elbow <= ELBOW_RANGE[0] + 0.05 and dq[1] < 0) or (
                elbow >= ELBOW_RANGE[1] - 0.05 and dq[1] > 0
            ):
                # at an elbow limit (the edge of the reachable ring): move along the edge with the
                # shoulder alone instead of pushing into the limit and stalling
                col = jac[:, 0]
                dq = np.array([col @ velocity / (col @ col + CARTESIAN_DAMPING**2), 0.0])
            ctrl = dq / self.joint_speed
            self.data.ctrl[:] = ctrl / max(1.0, float(np.abs(ctrl).max()))  # slower, same direction
            self.mj.mj_step(self.model, self.data)

    def forward_kinematics(self, qpos: np.ndarray) -> np.ndarray:
        """Fingertip (x, y) for joint angles (shoulder, elbow)."""
        (l0, l1), (q0, q1) = LINK_LENGTHS, qpos
        return np.array(
            [l0 * math.cos(q0) + l1 * math.cos(q0 + q1), l0 * math.sin(q0) + l1 * math.sin(q0 + q1)]
        )

    def jacobian(self) -> np.ndarray:
        """d fingertip (x, y) / d (shoulder, elbow) at the current angles."""
        (l0, l1), (q0, q1) = LINK_LENGTHS, self.data.qpos[:2]
        s0, c0, s01, c01 = math.sin(q0), math.cos(q0), math.sin(q0 + q1), math.cos(q0 + q1)
        return np.array([[-l0 * s0 - l1 * s01, -l1 * s01], [l0 * c0 + l1 * c01, l1 * c01]])

    @property
    def qpos(self) -> np.ndarray:
        return np.array(self.data.qpos[:2])

    @property
    def target(self) -> np.ndarray:
        return np.array(self.data.mocap_pos[self._target_mocap, :2])

    @property
    def fingertip(self) -> np.ndarray:
        return np.array(self.data.site_xpos[self._site, :2])

    def distance(self) -> float:
        return float(np.linalg.norm(self.fingertip - self.target))

    # ------------------------------------------------------------------ camera
    def render(self) -> np.ndarray:
        self.renderer.update_scene(self.data, camera=self.camera)
        return self.renderer.render()

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel (column, row) of world points (n, 3) in the camera's frame (row 0 at the top)."""
        cam = self.camera.fixedcamid
        pos, rot = self.data.cam_xpos[cam], self.data.cam_xmat[cam].reshape(3, 3)
        local = (np.asarray(points, dtype=float) - pos) @ rot  # camera axes: x right, y up, -z ahead
        focal = (self.size / 2) / math.tan(math.radians(self.model.cam_fovy[cam]) / 2)
        depth = -local[:, 2]
        return np.stack(
            [self.size / 2 + focal * local[:, 0] / depth, self.size / 2 - focal * local[:, 1] / depth], axis=1
        )

    def close(self) -> None:
        self.renderer.close()
