"""Figures of a vision model: reconstructions and latent traversals, as uint8 image grids.

Traversals follow the beta-VAE papers: from a few seed frames, each latent is swept over
[-3, 3] (prior units) while the others keep the seed's posterior mean; rows are sorted by KL so
the informative latents come first. Deterministic codes (AE, DAE) are swept over their mean +-3
standard deviations across the frames instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from darla.artifacts import atomic_write_bytes
from darla.vision.base import VisionModel


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """float NCHW [0,1] -> uint8 NHWC."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def tile(images: np.ndarray, rows: int, cols: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """(rows*cols, H, W, C) uint8 -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, C) grid."""
    n, h, w, c = images.shape
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
    for k in range(min(n, rows * cols)):
        r, q = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = images[k]
    return grid


@torch.inference_mode()
def recon_grid(model: VisionModel, frames: np.ndarray, cols: int = 8) -> np.ndarray:
    """Originals and their reconstructions in alternating rows (uint8 HxWx3)."""
    model.eval()
    x = model.to_float(model.as_batch(frames))
    rec = _to_uint8(model.reconstruct(x))
    orig = _to_uint8(x)
    n = orig.shape[0]
    rows = -(-n // cols)
    blocks = []
    for r in range(rows):
        a, b = orig[r * cols : (r + 1) * cols], rec[r * cols : (r + 1) * cols]
        if a.shape[0] < cols:  # pad the last row with white frames
            extra = np.full((cols - a.shape[0], *a.shape[1:]), 255, np.uint8)
            a, b = np.concatenate([a, extra]), np.concatenate([b, extra])
        blocks += [a, b]
    return tile(np.concatenate(blocks), 2 * rows, cols)


@torch.inference_mode()
def latent_order(model: VisionModel, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order of latents, score per latent, code std per latent): KL for VAEs, variance otherwise."""
    model.eval()
    x = model.to_float(model.as_batch(frames))
    mu, logvar = model.posterior(x)
    std = mu.std(0) if mu.shape[0] > 1 else torch.ones(mu.shape[1])
    if logvar is not None:
        score = (0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)).mean(0)
    else:
        score = mu.var(0) if mu.shape[0] > 1 else torch.zeros(mu.shape[1])
    s = score.cpu().numpy()
    return np.argsort(-s, kind="stable"), s, std.cpu().numpy()


@torch.inference_mode()
def traversal_grid(
    model: VisionModel,
    seeds: np.ndarray,
    reference: np.ndarray | None = None,
    values: Sequence[float] = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
    max_latents: int | None = None,
) -> np.ndarray:
    """Rows = latents sorted by KL (labelled), columns = sweep values for each seed frame."""
    model.eval()
    ref = seeds if reference is None else reference
    order, score, std = latent_order(model, ref)
    if max_latents is not None:
        order = order[:max_latents]
    x = model.to_float(model.as_batch(seeds))
    mu, _ = model.posterior(x)
    mean = model.posterior(model.to_float(model.as_batch(ref)))[0].mean(0)
    vals = torch.tensor(list(values), dtype=mu.dtype, device=mu.device)
    h, w, c = model.image_shape
    blank = np.full((h, w, c), 255, np.uint8)
    rows = []
    for d in order:
        z = mu[:, None, :].repeat(1, len(vals), 1)  # (seeds, values, D)
        if model.variational:
            z[:, :, d] = vals
        else:
            z[:, :, d] = mean[d] + vals * float(std[d])
        imgs = _to_uint8(model.decode(z.flatten(0, 1))).reshape(mu.shape[0], len(vals), *blank.shape)
        # one blank frame between seeds keeps the sweeps of different seed frames apart
        rows.append(np.concatenate([np.concatenate([blank[None], s]) for s in imgs])[1:])
    k = (len(vals) + 1) * mu.shape[0] - 1
    grid = tile(np.concatenate(rows), len(order), k)
    return _label_rows(grid, [f"z{d} {'KL' if model.variational else 'var'} {score[d]:.2f}" for d in order])


def _label_rows(grid: np.ndarray, labels: list[str], width: int = 96, pad: int = 2) -> np.ndarray:
    rows = len(labels)
    h = (grid.shape[0] - pad) // max(rows, 1)
    img = Image.new("RGB", (grid.shape[1] + width, grid.shape[0]), "white")
    img.paste(Image.fromarray(grid), (width, 0))
    draw = ImageDraw.Draw(img)
    for r, text in enumerate(labels):
        draw.text((4, pad + r * h + h // 2 - 5), text, fill=(0, 0, 0))
    return np.asarray(img)


def save_png(path: str | Path, image: np.ndarray) -> None:
    buf = BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
