"""`darla validate`'s figures: latent traversals, mutual information per latent and factor, and
scores along training."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from darla.artifacts import atomic_write_bytes
from darla.vision.figures import tile


def traversal_image(
    model: Any, ranking: tuple[np.ndarray, np.ndarray, np.ndarray], values: int = 7
) -> tuple[np.ndarray, list[str]]:
    """Grey traversal grid (rows = latents by KL, columns = values in [-3, 3] for two seed images)."""
    import torch

    reference, order, score = ranking
    seeds = reference[:2]
    with torch.inference_mode():
        mu, _ = model.posterior(model.to_float(model.as_batch(seeds)))
        sweep = torch.linspace(-3.0, 3.0, values)
        rows = []
        for d in order:
            z = mu[:, None, :].repeat(1, values, 1)
            z[:, :, d] = sweep
            img = model.decode(z.flatten(0, 1)).clamp(0, 1)
            rows.append((img * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    grid = tile(np.concatenate(rows), len(order), values * len(seeds))
    return grid[..., 0], [f"z{d} KL {score[d]:.2f}" for d in order]


def save_traversals(path: Path, panels: list[tuple[str, np.ndarray, list[str]]]) -> None:
    """One panel per model, latents labelled on the left, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [p[1].shape[0] for p in panels]
    width = max(p[1].shape[1] for p in panels)
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(width / 60 + 1.5, sum(heights) / 60 + 0.4 * len(panels)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, (title, grid, labels) in zip(axes[:, 0], panels):
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255)
        step = (grid.shape[0] - 2) / max(len(labels), 1)
        ax.set_yticks([2 + step * (i + 0.5) for i in range(len(labels))], labels, fontsize=7)
        ax.set_xticks([])
        ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_mi_figure(path: Path, panels: list[tuple[str, dict[str, Any]]]) -> None:
    """One heat map per model: rows = latents (by KL), columns = factors, colour = MI / H(factor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels) + 0.8, 3.6), squeeze=False)
    image = None
    for ax, (title, table) in zip(axes[0], panels):
        image = ax.imshow(np.array(table["matrix"]), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(table["factors"])), table["factors"], rotation=60, fontsize=7)
        ax.set_yticks(range(len(table["latents"])), [f"z{d}" for d in table["latents"]], fontsize=7)
        ax.set_title(title, fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="MI / H(factor)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_curves(path: Path, rows: list[dict[str, Any]], metrics: tuple[str, ...]) -> None:
    """One panel per metric: each model's score (mean over seeds) against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for row in rows:
            points = [p for p in row.get("curve") or [] if metric in p]
            ax.plot([p["step"] for p in points], [p[metric] for p in points], marker="o", label=row["model"])
        ax.set_xlabel("training step")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
