"""Frames of gymnasium's CarRacing, drawn straight at the observation size.

gymnasium draws every frame of CarRacing on a 1000x800 pygame surface (about 800 polygons, each
culled in Python) and shrinks it to 96x96: ~60 frames/s on one core here, 15 agent steps/s with
a frame skip of 4. Published PPO setups then keep the top 84 of the 96 rows (the indicator bar
goes) and resize to 64x64 (LUSR, Xing et al. 2021). This module draws that same view, with
gymnasium's geometry and colours, on a small supersampled canvas: the polygons are transformed
and culled with numpy, only the visible ones are drawn, and the canvas is box-filtered down.

Differences from gymnasium's `state_pixels`, all invisible after the crop or below a pixel:
no zoom-in animation during the first second (the view is at full zoom from the first frame),
no skid marks and no white stripes on the wheels.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws headless
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # keep stdout clean for `--json`

import numpy as np
import pygame
from gymnasium.envs.box2d import car_racing as gym_cr

Color = tuple[float, float, float]

# gymnasium's view: the car sits at x = W/2 and (after its vertical flip) y = 3H/4 of the
# 1000x800 window; the observation keeps the top 84/96 of the rows (700 of 800)
WINDOW_W = float(gym_cr.WINDOW_W)
VIEW_H = gym_cr.WINDOW_H * 84.0 / 96.0
CAR_X = WINDOW_W / 2.0
CAR_Y = gym_cr.WINDOW_H * 3.0 / 4.0
ZOOM = gym_cr.ZOOM * gym_cr.SCALE  # window pixels per world unit at full zoom
GRASS_DIM = gym_cr.GRASS_DIM
PLAYFIELD = gym_cr.PLAYFIELD
ROAD_HALF_WIDTH = gym_cr.TRACK_WIDTH
"""Half the road's width in world units (gymnasium's TRACK_WIDTH)."""
# the farthest view corner from the car, in world units (culling radius for grass patches)
VIEW_RADIUS = math.hypot(CAR_X, CAR_Y) / ZOOM + GRASS_DIM
BAR_FRACTION = 3.0 / 40.0
"""LUSR's side bars (CarRacing4/7): black, 3/40 of the width on each side, full height."""
BLOB_SIZE = 8.0
BLOB_OFFSET = (20.0, 10.0)
"""LUSR's marker (CarRacing5/7): an 8x8 square beside the car, offset from the first vertex of
the hull's fourth fixture, drawn in the car's frame (so it moves and turns with the car)."""
BLOB_COLOR = (0.8, 0.0, 0.0)


@dataclass(frozen=True)
class Palette:
    """What a domain changes in the picture (colours in [0, 1])."""

    bg: Color
    grass: Color
    road: Color
    car: Color
    side_bars: bool = False
    blob: bool = False


def _rgb(color: Color) -> tuple[int, int, int]:
    return (int(color[0] * 255), int(color[1] * 255), int(color[2] * 255))


class TrackRenderer:
    """Draws the car-centred view of a CarRacing simulator (`gymnasium`'s env) on a canvas of
    `size * supersample` pixels, then box-filters it to `size`."""

    def __init__(self, size: int, supersample: int = 4) -> None:
        self.size = int(size)
        self.canvas_px = int(size) * int(supersample)
        self.canvas = pygame.Surface((self.canvas_px, self.canvas_px))
        self.small = pygame.Surface((self.size, self.size))
        self.scale = np.array([self.canvas_px / WINDOW_W, self.canvas_px / VIEW_H])
        self.tiles = np.zeros((0, 4, 2))
        self.stripes = np.zeros(0)
        self.borders = np.zeros((0, 4, 2))
        self.border_colors: list[tuple[int, int, int]] = []
        self.centre = np.zeros((0, 2))
        self._shapes: list[tuple[Any, np.ndarray]] = []
        self._shapes_of: Any = None

    # ------------------------------------------------------------------ track
    def set_track(self, sim: Any) -> None:
        """Cache the polygons of the simulator's new track (call after every reset)."""
        tile_ids = {id(t.color) for t in sim.road}
        self.tiles = np.array([[tuple(v) for v in t.fixtures[0].shape.vertices] for t in sim.road])
        self.stripes = np.array([0.01 * (i % 3) * 255 for i in range(len(sim.road))])
        borders = [(poly, color) for poly, color in sim.road_poly if id(color) not in tile_ids]
        self.borders = np.array([poly for poly, _ in borders]).reshape(-1, 4, 2)
        self.border_colors = [(int(c[0]), int(c[1]), int(c[2])) for _, c in borders]
        self.centre = np.array([(x, y) for _, _, x, y in sim.track])

    # ------------------------------------------------------------------ geometry
    def to_canvas(self, points: np.ndarray, pos: np.ndarray, angle: float) -> np.ndarray:
        """World points (..., 2) -> canvas pixels, for a car at `pos` with hull angle `angle`."""
        c, s = math.cos(-angle), math.sin(-angle)
        d = points - pos
        rx = c * d[..., 0] - s * d[..., 1]
        ry = s * d[..., 0] + c * d[..., 1]
        return np.stack([(CAR_X + ZOOM * rx), (CAR_Y - ZOOM * ry)], axis=-1) * self.scale

    def _visible(self, polys: np.ndarray) -> np.ndarray:
        """Indices of canvas polygons (n, k, 2) whose bounding box meets the canvas."""
        if len(polys) == 0:
            return np.zeros(0, dtype=int)
        lo, hi = polys.min(axis=1), polys.max(axis=1)
        inside = (hi > 0).all(axis=1) & (lo < self.canvas_px).all(axis=1)
        return np.flatnonzero(inside)

    def road_in_view(self, pos: np.ndarray, angle: float) -> bool:
        """Whether any road tile shows in the frame of a car at `pos`, `angle`."""
        return len(self._visible(self.to_canvas(self.tiles, pos, angle))) > 0

    # ------------------------------------------------------------------ drawing
    def _grass(self, pos: np.ndarray, angle: float, color: tuple[int, int, int]) -> None:
        """gymnasium's grass patches: every other square of a GRASS_DIM grid in both axes."""
        lo = np.floor((pos - VIEW_RADIUS) / GRASS_DIM).astype(int)
        hi = np.ceil((pos + VIEW_RADIUS) / GRASS_DIM).astype(int)
        xs = [x for x in range(max(lo[0], -20), min(hi[0], 20)) if x % 2 == 0]
        ys = [y for y in range(max(lo[1], -20), min(hi[1], 20)) if y % 2 == 0]
        if not xs or not ys:
            return
        gx, gy = np.meshgrid(np.array(xs) * GRASS_DIM, np.array(ys) * GRASS_DIM, indexing="ij")
        corners = np.array([[GRASS_DIM, 0.0], [0.0, 0.0], [0.0, GRASS_DIM], [GRASS_DIM, GRASS_DIM]])
        squares = np.stack([gx.ravel(), gy.ravel()], axis=-1)[:, None, :] + corners[None]
        polys = self.to_canvas(squares, pos, angle)
        for i in self._visible(polys):
            pygame.draw.polygon(self.canvas, color, polys[i].tolist())

    def _car_shapes(self, car: Any) -> list[tuple[Any, np.ndarray]]:
        """(body, local vertices (k, 2)) of every fixture of the car, wheels first (gymnasium's
        draw order); cached per car (a new one comes with every reset)."""
        if self._shapes_of is not car:
            self._shapes = [
                (body, np.array([tuple(v) for v in fixture.shape.vertices]))
                for body in car.drawlist
                for fixture in body.fixtures
            ]
            self._shapes_of = car
        return self._shapes

    def _car(self, sim: Any, pos: np.ndarray, angle: float, palette: Palette) -> None:
        car = sim.car
        shapes = list(self._car_shapes(car))
        if palette.blob:
            ox, oy = car.hull.fixtures[3].shape.vertices[0]
            ox, oy = ox + BLOB_OFFSET[0], oy + BLOB_OFFSET[1]
            s = BLOB_SIZE
            shapes.append((None, np.array([(ox, oy + s), (ox + s, oy + s), (ox + s, oy), (ox, oy)])))
        world = []
        for body, local in shapes:
            b = car.hull if body is None else body
            c, s_ = math.cos(b.angle), math.sin(b.angle)
            px, py = b.position
            world.append(local @ np.array([[c, s_], [-s_, c]]) + (px, py))
        polys = self.to_canvas(np.concatenate(world), pos, angle)
        hull, start = _rgb(palette.car), 0
        for (body, _), n in zip(shapes, (len(w) for w in world)):
            color = _rgb(BLOB_COLOR) if body is None else hull if body is car.hull else _rgb(body.color)
            pygame.draw.polygon(self.canvas, color, polys[start : start + n].tolist())
            start += n

    def draw(self, sim: Any, palette: Palette, out_size: int | None = None) -> np.ndarray:
        """The view of `sim`'s car as uint8 (out_size, out_size, 3); default: the observation size."""
        hull = sim.car.hull
        pos = np.array(tuple(hull.position))
        angle = float(hull.angle)
        canvas = self.canvas
        canvas.fill((0, 0, 0))  # beyond the playfield gymnasium's surface stays black
        field = PLAYFIELD * np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]])
        pygame.draw.polygon(canvas, _rgb(palette.bg), self.to_canvas(field, pos, angle).tolist())
        self._grass(pos, angle, _rgb(palette.grass))
        tiles = self.to_canvas(self.tiles, pos, angle)
        road = np.array(palette.road) * 255
        for i in self._visible(tiles):
            # gymnasium: a tile is road + a faint stripe (0, 1 or 2 %) until the car touches it
            shade = road if sim.road[i].road_visited else road + self.stripes[i]
            pygame.draw.polygon(canvas, tuple(int(c) for c in shade), tiles[i].tolist())
        borders = self.to_canvas(self.borders, pos, angle)
        for i in self._visible(borders):
            pygame.draw.polygon(canvas, self.border_colors[i], borders[i].tolist())
        self._car(sim, pos, angle, palette)
        if palette.side_bars:
            bar = round(BAR_FRACTION * self.canvas_px)
            canvas.fill((0, 0, 0), pygame.Rect(0, 0, bar, self.canvas_px))
            canvas.fill((0, 0, 0), pygame.Rect(self.canvas_px - bar, 0, bar, self.canvas_px))
        size = self.size if out_size is None else int(out_size)
        if size == self.canvas_px:
            out = canvas
        else:
            out = self.small if size == self.size else pygame.Surface((size, size))
            pygame.transform.smoothscale(canvas, (size, size), out)
        return np.ascontiguousarray(pygame.surfarray.array3d(out).transpose(1, 0, 2))
