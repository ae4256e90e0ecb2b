"""darla.envs: MiniWorld env families with named appearance domains, ground truth and frames.

Importing this package makes pyglet render headless (EGL) and single-threaded *before* MiniWorld is
imported, and
registers every family with Gymnasium (`gymnasium.make("darla/SeekAvoid-v0", domain=...)`).
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGLET_HEADLESS", "true")
# Mesa's software rasteriser (llvmpipe) splits each frame over helper threads by default; for
# 64x64 frames the thread hand-off costs more than it saves (SeekAvoid: ~1,250 -> ~2,500 env
# steps/s, identical pixels), and it would contend with torch and the other env workers.
os.environ.setdefault("LP_NUM_THREADS", "0")

import pyglet

pyglet.options["headless"] = os.environ["PYGLET_HEADLESS"].lower() in ("1", "true", "yes")
# pyglet calls glGetError after every GL call unless told otherwise (~50 calls per frame)
pyglet.options["debug_gl"] = os.environ.get("DARLA_DEBUG_GL", "").lower() in ("1", "true", "yes")

import gymnasium  # noqa: E402

from darla.envs import fetch_object, reaching, seek_avoid  # noqa: E402
from darla.envs.domains import SPLITS, DomainSpec, ObjectSpec  # noqa: E402
from darla.envs.family import FAMILIES, EnvFamily, get_family  # noqa: E402
from darla.envs.frames import FrameDataset, collect_frames  # noqa: E402
from darla.envs.ground_truth import GroundTruth  # noqa: E402
from darla.envs.vec import make_vec_env  # noqa: E402

for _name, _family in FAMILIES.items():
    if _family.gym_id not in gymnasium.registry:
        gymnasium.register(id=_family.gym_id, entry_point=_family.entry_point)

__all__ = [
    "FAMILIES",
    "SPLITS",
    "DomainSpec",
    "EnvFamily",
    "FrameDataset",
    "GroundTruth",
    "ObjectSpec",
    "collect_frames",
    "fetch_object",
    "get_family",
    "make_vec_env",
    "reaching",
    "seek_avoid",
]
