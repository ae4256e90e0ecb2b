"""darla.envs: MiniWorld env families with named appearance domains, ground truth and frames;
pixel shift suites that turn any env with RGB frames into a family (`get_family("CartPole-v1@colour")`).

Importing this package makes pyglet render headless (EGL) and single-threaded *before* MiniWorld is
imported, and
registers every family (darla's and plug-ins from the `darla.envs` entry points) with Gymnasium
(`gymnasium.make("darla/SeekAvoid-v0", domain=...)`).
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGLET_HEADLESS", "true")
# Mesa's software rasteriser (llvmpipe) splits each frame over helper threads by default; for
# 64x64 frames the thread hand-off costs more than it saves (SeekAvoid: ~1,250 -> ~2,500 env
# steps/s, identical pixels), and it would contend with torch and the other env workers.
os.environ.setdefault("LP_NUM_THREADS", "0")
# pygame (Gymnasium's classic-control renders, for shifted families such as CartPole-v1@colour):
# no display, no audio, no greeting on stdout (it would break `--json`), and no SDL signal
# handlers: SDL turns SIGTERM into a quit event nobody reads, so a process that had rendered
# CartPole survived SIGTERM (measured: a frame-collection pool hung at exit waiting for it)
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")

import pyglet

pyglet.options["headless"] = os.environ["PYGLET_HEADLESS"].lower() in ("1", "true", "yes")
# pyglet calls glGetError after every GL call unless told otherwise (~50 calls per frame)
pyglet.options["debug_gl"] = os.environ.get("DARLA_DEBUG_GL", "").lower() in ("1", "true", "yes")

from darla.envs import car_racing, fetch_object, reaching, seek_avoid, shift  # noqa: E402
from darla.envs.domains import SPLITS, DomainSpec, ObjectSpec  # noqa: E402
from darla.envs.family import FAMILIES, EnvFamily, get_family  # noqa: E402
from darla.envs.frames import FrameDataset, collect_frames  # noqa: E402
from darla.envs.ground_truth import GroundTruth  # noqa: E402
from darla.envs.shift import SUITES  # noqa: E402
from darla.envs.shift_family import register_background_key  # noqa: E402
from darla.envs.vec import make_vec_env  # noqa: E402

FAMILIES.load_plugins()  # plug-in families join now, so gymnasium.make knows their ids too

__all__ = [
    "FAMILIES",
    "SPLITS",
    "SUITES",
    "DomainSpec",
    "EnvFamily",
    "FrameDataset",
    "GroundTruth",
    "ObjectSpec",
    "car_racing",
    "collect_frames",
    "fetch_object",
    "get_family",
    "make_vec_env",
    "reaching",
    "register_background_key",
    "seek_avoid",
    "shift",
]
