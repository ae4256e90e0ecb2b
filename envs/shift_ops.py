"""Pixel shifts in numpy, applied per frame to uint8 batches (B, H, W, 3).

Three operations, each cheap enough to run inside `env.step` (see `darla bench shift`):
- colour: one affine map of RGB (hue rotation about the grey axis, channel mixing, saturation,
  per-channel tint, brightness, contrast about mid-grey) composed into a 3x3 matrix and a bias, so a
  frame costs one float32 matmul whatever the strength;
- distractors: coloured discs and squares that move and bounce off the frame's edges; each shape
  is one small slice write (positions stay inside the frame, so no clipping);
- background: a periodic procedural texture composited where a keyer says the env drew its
  background (soft alpha, so anti-aliased edges do not leave halos); it may drift.

An op's `reset(rng, batch)` starts an episode (draws distractor positions, texture colours) from
the generator it is given, so one seed fixes every frame; `apply(frames)` shifts the frames of the
current step and then advances the motion by one step.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from darla.errors import ConfigError
from darla.registry import Registry

LUMA = np.array([0.299, 0.587, 0.114])
MID_GREY = 127.5


# ---------------------------------------------------------------------------- colour
def hue_matrix(degrees: float) -> np.ndarray:
    """Rotation of RGB about the grey axis (Rodrigues): greys stay grey, hues turn by `degrees`."""
    theta = math.radians(degrees)
    u = np.ones(3) / math.sqrt(3.0)
    cross = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    return math.cos(theta) * np.eye(3) + (1 - math.cos(theta)) * np.outer(u, u) + math.sin(theta) * cross


def saturation_matrix(saturation: float) -> np.ndarray:
    """Blend with the luma grey: 0 = greyscale, 1 = unchanged, > 1 = more saturated."""
    return saturation * np.eye(3) + (1 - saturation) * np.outer(np.ones(3), LUMA)


def mix_matrix(mix: float) -> np.ndarray:
    """Channel mixing: each channel takes `mix` of the next one (R <- G, G <- B, B <- R)."""
    return (1 - mix) * np.eye(3) + mix * np.roll(np.eye(3), 1, axis=1)


def colour_affine(
    hue: float,
    saturation: float,
    brightness: float,
    contrast: float,
    mix: float,
    tint: tuple[float, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with shifted = contrast * (brightness * tint * S * H * M @ rgb - 127.5) + 127.5."""
    linear = np.diag(tint) @ saturation_matrix(saturation) @ hue_matrix(hue) @ mix_matrix(mix)
    a = contrast * brightness * linear
    b = np.full(3, MID_GREY * (1 - contrast))
    return a.astype(np.float32), b.astype(np.float32)


AFFINE_CHUNK = 16384
"""Pixels per matmul: numpy's (N, 3) @ (3, 3) was measured ~10x slower per pixel at N = 1M
(a batch of 256 64x64 frames) than in chunks of one to four frames."""


def apply_affine(
    frames: np.ndarray, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None
) -> np.ndarray:
    """Affine colour map of uint8 frames (any leading shape, last axis RGB), clipped to uint8.

    The bias is added as one flat, pre-tiled vector: a ufunc broadcasting a (3,) bias over
    (N, 3) runs an inner loop of length 3 and cost more than the matmul (47 against 14 us per
    64x64 frame, measured). `bias`: `b` tiled AFFINE_CHUNK times, if the caller keeps one."""
    flat = frames.reshape(-1, 3)
    out = np.empty(flat.shape, dtype=np.uint8)
    at = np.ascontiguousarray(a.T, dtype=np.float32)
    if bias is None:
        bias = np.tile(np.asarray(b, dtype=np.float32), min(len(flat), AFFINE_CHUNK))
    for start in range(0, len(flat), AFFINE_CHUNK):
        chunk = flat[start : start + AFFINE_CHUNK].astype(np.float32) @ at
        values = chunk.reshape(-1)
        values += bias[: values.size]
        np.clip(values, 0.0, 255.0, out=values)
        out[start : start + AFFINE_CHUNK] = chunk
    return out.reshape(frames.shape)


class FrameOp(Protocol):
    """A pixel shift with per-episode state (distractor motion, texture colours)."""

    def reset(self, rng: np.random.Generator, batch: int = 1) -> None: ...

    def apply(self, frames: np.ndarray) -> np.ndarray: ...


class ColourOp:
    """A fixed colour transform: stateless, vectorised over the whole batch."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.b = a, b
        self.identity = bool(np.allclose(a, np.eye(3)) and np.allclose(b, 0.0))
        self.bias = np.tile(np.asarray(b, dtype=np.float32), AFFINE_CHUNK)

    def reset(self, rng: np.random.Generator, batch: int = 1) -> None:
        return None

    def apply(self, frames: np.ndarray) -> np.ndarray:
        return frames if self.identity else apply_affine(frames, self.a, self.b, self.bias)


# ---------------------------------------------------------------------------- distractors
def _bright_colours(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Saturated random colours (a random hue at full saturation), uint8 (..., 3)."""
    hue = rng.uniform(0.0, 360.0, size=shape)
    base = np.array([255.0, 40.0, 40.0])  # saturated red, turned to the drawn hue
    mats = np.stack([hue_matrix(h) for h in hue.ravel()]) if hue.size else np.zeros((0, 3, 3))
    rgb = np.clip(mats @ base, 0, 255).reshape(*shape, 3)
    return rgb.astype(np.uint8)


class DistractorOp:
    """`count` shapes (discs and squares, alternating) of radius `radius` * size, moving
    `speed` * size pixels per step in a random direction, bouncing off the frame's edges.

    Drawing works on the frame viewed as rows of H x (W * 3) bytes: a square is one slice write
    of a pre-coloured row, a disc one masked copy of a pre-coloured stamp (a few microseconds each,
    where a (3,)-colour broadcast into a masked window costs about five times as much)."""

    def __init__(self, count: int, radius: float, speed: float, size: int) -> None:
        self.count = int(count)
        self.size = int(size)
        self.r = max(1, round(radius * size)) if count else 0
        self.speed = float(speed) * size
        if self.count and 2 * self.r + 1 > self.size:
            raise ConfigError(f"distractor radius {radius} is too large for {size}x{size} frames")
        self.side = 2 * self.r + 1
        yy, xx = np.mgrid[-self.r : self.r + 1, -self.r : self.r + 1]
        disc = (xx**2 + yy**2) <= self.r * (self.r + 1)  # r(r+1): round, without one-pixel nubs
        self.disc = np.repeat(disc, 3, axis=1)  # (side, side * 3): the mask of a disc's bytes
        self.pos = np.zeros((0, self.count, 2))
        self.vel = np.zeros((0, self.count, 2))
        self.stamps = np.zeros((0, self.count, self.side, self.side * 3), dtype=np.uint8)

    def reset(self, rng: np.random.Generator, batch: int = 1) -> None:
        lo, hi = self.r, self.size - 1 - self.r
        self.pos = rng.uniform(lo, hi, size=(batch, self.count, 2))
        angle = rng.uniform(0.0, 2 * math.pi, size=(batch, self.count))
        self.vel = self.speed * np.stack([np.sin(angle), np.cos(angle)], axis=-1)
        colours = _bright_colours(rng, (batch, self.count))  # (B, K, 3)
        rows = np.tile(colours, (1, 1, self.side))  # (B, K, side * 3)
        self.stamps = np.ascontiguousarray(
            np.broadcast_to(rows[:, :, None, :], (batch, self.count, self.side, self.side * 3))
        )

    def apply(self, frames: np.ndarray) -> np.ndarray:
        if not self.count:
            return frames
        if len(self.pos) != len(frames):
            raise ConfigError(f"distractors were reset for {len(self.pos)} frames, got {len(frames)}")
        out = np.ascontiguousarray(frames).copy()
        rows = out.reshape(len(out), self.size, self.size * 3)
        corners = (np.rint(self.pos).astype(int) - self.r).tolist()  # Python ints slice faster
        side, width = self.side, 3 * self.side
        for i in range(len(out)):
            for k in range(self.count):
                y, x = corners[i][k]
                window = rows[i, y : y + side, 3 * x : 3 * x + width]
                if k % 2:  # a square
                    window[...] = self.stamps[i, k, 0]
                else:
                    np.copyto(window, self.stamps[i, k], where=self.disc)
        self._advance()
        return out

    def _advance(self) -> None:
        """Move one step; a shape past an edge is reflected back inside and turns around."""
        lo, hi = float(self.r), float(self.size - 1 - self.r)
        self.pos += self.vel
        out = (self.pos < lo) | (self.pos > hi)
        if out.any():  # rare: only on the steps a shape hits an edge
            self.pos[out] = np.where(self.pos[out] < lo, 2 * lo - self.pos[out], 2 * hi - self.pos[out])
            self.vel[out] *= -1.0


# ---------------------------------------------------------------------------- background
def _waves(size: int, frequency: float, rng: np.random.Generator) -> np.ndarray:
    """Three plane waves with integer cycles per frame (so the texture tiles)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((size, size))
    cycles = max(1, round(frequency))
    for _ in range(3):
        ky, kx = rng.integers(-cycles, cycles + 1, size=2)
        if ky == 0 and kx == 0:
            kx = cycles
        out += np.sin(2 * math.pi * (ky * yy + kx * xx) + rng.uniform(0, 2 * math.pi))
    return (out - out.min()) / max(float(np.ptp(out)), 1e-9)


def _checker(size: int, frequency: float, rng: np.random.Generator) -> np.ndarray:
    cells = max(1, round(frequency))
    idx = (np.arange(size) * 2 * cells) // size
    shift = rng.integers(0, 2)
    return ((idx[:, None] + idx[None, :] + shift) % 2).astype(float)


def _stripes(size: int, frequency: float, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    cycles = max(1, round(frequency))
    ky, kx = (cycles, 0) if rng.random() < 0.5 else (cycles, cycles)
    return (np.sin(2 * math.pi * (ky * yy + kx * xx) + rng.uniform(0, 2 * math.pi)) > 0).astype(float)


def _blobs(size: int, frequency: float, rng: np.random.Generator) -> np.ndarray:
    """Value noise: a random `frequency` x `frequency` grid, periodic bilinear upsampling."""
    cells = max(2, round(frequency))
    grid = rng.random((cells, cells))
    pos = np.arange(size) * cells / size
    i0 = np.floor(pos).astype(int)
    t = pos - i0
    i1 = (i0 + 1) % cells
    rows = grid[i0] * (1 - t)[:, None] + grid[i1] * t[:, None]
    return rows[:, i0] * (1 - t)[None, :] + rows[:, i1] * t[None, :]


PATTERNS: Registry[object] = Registry("background pattern")
for _name, _fn in (("waves", _waves), ("checker", _checker), ("stripes", _stripes), ("blobs", _blobs)):
    PATTERNS.register(_name, _fn)


def texture(pattern: str, frequency: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """A periodic grey texture in [0, 1] of shape (size, size)."""
    fn = PATTERNS.get(pattern)
    return np.asarray(fn(size, frequency, rng), dtype=np.float32)  # type: ignore[operator]


class Keyer(Protocol):
    """Where a frame shows the env's background: alpha (B, H, W) float32, 1 = background.
    `colour` is the background's own colour (textures fade from it as strength goes to 0)."""

    colour: tuple[int, int, int]

    def alpha(self, frames: np.ndarray) -> np.ndarray: ...


class ColourKey:
    """Background = pixels near a known colour; soft between `tolerance` and 4x it (anti-aliasing).

    Channels are handled one plane at a time: broadcasting a (3,) key over (..., 3), or reducing
    over that last axis, runs numpy inner loops of length 3 (measured ~10x slower at 64x64)."""

    def __init__(self, colour: tuple[int, int, int], tolerance: int = 10) -> None:
        self.colour = colour
        self.lo, self.hi = float(tolerance), float(4 * tolerance)

    def alpha(self, frames: np.ndarray) -> np.ndarray:
        f = frames.astype(np.int16)
        dist = np.abs(f[..., 0] - self.colour[0])
        for c in (1, 2):
            np.maximum(dist, np.abs(f[..., c] - self.colour[c]), out=dist)
        alpha = (self.hi - dist).astype(np.float32)
        alpha *= 1.0 / (self.hi - self.lo)
        return np.clip(alpha, 0.0, 1.0, out=alpha)


class MaskKey:
    """Background = a mask the env exposes (`background_mask()`); the env sets `mask` (B or 1, H, W)
    every step."""

    colour = (128, 128, 128)

    def __init__(self) -> None:
        self.mask: np.ndarray | None = None

    def alpha(self, frames: np.ndarray) -> np.ndarray:
        if self.mask is None:
            raise ConfigError("MaskKey: no background mask was set for this frame")
        return np.broadcast_to(self.mask, frames.shape[:-1])


class BackgroundOp:
    """A texture in two random colours (per episode), faded from the background's colour by
    `strength`, drifting `drift` * size pixels per step, composited where `keyer` finds the
    background."""

    def __init__(
        self, pattern: str, frequency: float, strength: float, drift: float, size: int, keyer: Keyer | None
    ) -> None:
        if pattern != "none":
            PATTERNS.get(pattern)  # a clear error for an unknown pattern
            if keyer is None:
                raise ConfigError("a background shift needs an env whose background can be keyed")
        self.pattern = pattern
        self.frequency = float(frequency)
        self.strength = float(strength)
        self.drift = float(drift) * size
        self.size = int(size)
        self.keyer = keyer
        self.tiles = np.zeros((0, 2 * size, 2 * size, 3), dtype=np.float32)
        self.t = 0

    def reset(self, rng: np.random.Generator, batch: int = 1) -> None:
        self.t = 0
        if self.pattern == "none":
            return
        assert self.keyer is not None  # checked in __init__ for every pattern but "none"
        base = np.array(self.keyer.colour, dtype=np.float32)
        tiles = []
        for _ in range(batch):
            grey = texture(self.pattern, self.frequency, self.size, rng)[..., None]
            c1, c2 = _bright_colours(rng, (2,)).astype(np.float32) * rng.uniform(0.4, 1.0, size=(2, 1))
            faded = base + self.strength * (c1 + grey * (c2 - c1) - base)
            tiles.append(np.tile(faded, (2, 2, 1)))
        self.tiles = np.stack(tiles).astype(np.float32)

    def window(self) -> np.ndarray:
        """The texture under the frame at this step (B, size, size, 3)."""
        off = int(self.drift * self.t) % self.size
        return self.tiles[:, off : off + self.size, off : off + self.size]

    def apply(self, frames: np.ndarray) -> np.ndarray:
        if self.pattern == "none":
            return frames
        if len(self.tiles) != len(frames):
            raise ConfigError(f"background was reset for {len(self.tiles)} frames, got {len(frames)}")
        assert self.keyer is not None
        alpha = np.repeat(self.keyer.alpha(frames).reshape(-1), 3).reshape(frames.shape)
        f = frames.astype(np.float32)
        out = self.window() - f
        out *= alpha  # same shapes: no length-3 inner loops (see ColourKey)
        out += f
        out += 0.5  # round half up (values are in [0, 255])
        self.t += 1
        return out.astype(np.uint8)


# ---------------------------------------------------------------------------- resizing
def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """A square uint8 (size, size, 3) frame: area-averaged (thin lines fade instead of vanishing),
    the aspect ratio stretched so the whole frame stays in view.

    PIL's integer `reduce` per axis first, then a box filter to the exact size: CartPole's 600x400
    to 64x64 measured ~4x faster than one box resize (395 against 1,620 us on a loaded host),
    mean difference 0.6 grey levels."""
    if frame.shape[:2] == (size, size):
        return frame
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(frame[..., :3]))
    factors = (max(1, image.width // size), max(1, image.height // size))
    if factors != (1, 1):
        image = image.reduce(factors)
    return np.asarray(image.resize((size, size), Image.Resampling.BOX))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A background mask (H, W) in [0, 1] resized like its frame: alpha (size, size) float32."""
    from PIL import Image

    image = Image.fromarray(np.asarray(mask, dtype=np.float32))
    small = np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    return np.clip(small, 0.0, 1.0)
