"""Headless OpenGL for MuJoCo: pick the backend before `mujoco` is imported, fail clearly.

MuJoCo's Python package reads `MUJOCO_GL` once, when it is first imported, and on Linux falls
back to GLFW (a window) when it is unset, which fails without a screen. darla therefore sets
`MUJOCO_GL` itself: EGL (GPU or Mesa's llvmpipe, no display needed); OSMesa when the EGL library
is missing (pure software, slower; said in a warning); a clear `ConfigError` when the value is not
a backend darla can use or its library is missing. `mujoco` is imported lazily (only when a
MuJoCo env is built), so a broken GL setup never breaks the MiniWorld families.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from types import ModuleType
from typing import Any

from darla.errors import ConfigError
from darla.registry import unknown_name_message

logger = logging.getLogger(__name__)

GL_LIBRARIES: dict[str, tuple[str, ...]] = {
    "egl": ("libEGL.so.1", "libEGL.so"),
    "osmesa": ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"),
    "glfw": (),  # a real window system; the glfw package brings its own library
}
"""MUJOCO_GL values darla accepts, and the shared libraries each one needs."""

INSTALL_HINT = (
    "install Mesa's EGL (Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri) or OSMesa "
    "(apt-get install libosmesa6), or set MUJOCO_GL to one of: " + ", ".join(GL_LIBRARIES)
)

OSMESA_FALLBACK = (
    "EGL (libEGL) not found: MuJoCo renders with OSMesa, in software and slower; install libegl1 for "
    "EGL, or set MUJOCO_GL=osmesa to silence this warning"
)

_chosen: dict[str, str] = {}
"""requested MUJOCO_GL value -> backend chosen for it (the choice is made once per process)."""


def _loadable(backend: str) -> bool:
    """Whether the shared library of `backend` can be loaded (no GL context is made)."""
    names = GL_LIBRARIES[backend]
    if not names:
        return True
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def select_backend() -> str:
    """The GL backend for MuJoCo, written to `MUJOCO_GL` (once per process).

    A user's `MUJOCO_GL` is honoured but checked; unset, EGL is used if its library loads, else
    OSMesa with a warning, else a ConfigError saying what to install.
    """
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    if requested in _chosen:
        return _chosen[requested]
    if requested and requested not in GL_LIBRARIES:
        raise ConfigError(
            "MUJOCO_GL: " + unknown_name_message("headless GL backend", requested, list(GL_LIBRARIES))
        )
    if "mujoco" in sys.modules:
        # too late to choose: mujoco took its backend when it was imported (GLFW if MUJOCO_GL was unset)
        if not requested:
            logger.warning(
                "mujoco was imported before darla set MUJOCO_GL: it renders with GLFW (needs a display)"
            )
        _chosen[requested] = requested or "glfw"
        return _chosen[requested]
    if requested and not _loadable(requested):
        raise ConfigError(
            f"MUJOCO_GL={requested!r} but its library ({' or '.join(GL_LIBRARIES[requested])}) "
            f"cannot be loaded: {INSTALL_HINT}"
        )
    if requested:
        backend = requested
    elif _loadable("egl"):
        backend = "egl"
    elif _loadable("osmesa"):
        logger.warning(OSMESA_FALLBACK)
        backend = "osmesa"
    else:
        raise ConfigError(f"no headless GL backend for MuJoCo: neither EGL nor OSMesa loads; {INSTALL_HINT}")
    os.environ["MUJOCO_GL"] = backend
    _chosen[requested] = _chosen[backend] = backend
    return backend


def prefer_headless() -> None:
    """Default `MUJOCO_GL` to a headless backend whose library loads (EGL, else OSMesa), without
    importing mujoco or raising: called when darla.envs is imported, so that a `mujoco` imported
    afterwards by anyone renders headless too. Errors wait until a MuJoCo env is built."""
    if os.environ.get("MUJOCO_GL") or "mujoco" in sys.modules:
        return
    for backend in ("egl", "osmesa"):
        if _loadable(backend):
            if backend == "osmesa":
                logger.warning(OSMESA_FALLBACK)
            os.environ["MUJOCO_GL"] = backend
            _chosen[backend] = backend
            return


def import_mujoco() -> ModuleType:
    """`mujoco`, imported after `select_backend` (its import error becomes a ConfigError)."""
    backend = select_backend()
    try:
        import mujoco
    except (ImportError, RuntimeError, AttributeError) as exc:
        raise ConfigError(f"cannot import mujoco with MUJOCO_GL={backend!r}: {exc}; {INSTALL_HINT}") from None
    return mujoco


def make_renderer(model: Any, size: int) -> Any:
    """One `mujoco.Renderer` of `size` x `size` pixels; a GL failure becomes a ConfigError."""
    mujoco = import_mujoco()
    try:
        return mujoco.Renderer(model, height=size, width=size)
    except Exception as exc:  # the GL stacks raise many types (ImportError, RuntimeError, GLError...)
        backend = os.environ.get("MUJOCO_GL")
        raise ConfigError(
            f"cannot create a MuJoCo {backend} GL context ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
        ) from None
