"""The sweep's figures: per-backbone returns and ratios, the probability-of-improvement matrix,
and disentanglement against transfer. PNGs written atomically, labelled with their units."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from darla.artifacts import atomic_save_figure
from darla.pipelines.analysis.correlation import DISENTANGLEMENT_METRICS, OUTCOMES, DisentanglementTransfer
from darla.pipelines.analysis.estimate import Interval, format_number
from darla.pipelines.analysis.rl_stats import PoiMatrix
from darla.pipelines.analysis.tables import MethodSummary


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _errors(ests: Sequence[Interval]) -> tuple[np.ndarray, np.ndarray]:
    """Bar heights (NaN -> 0) and asymmetric error bars (none where there is no interval)."""
    pts = np.array([e.point for e in ests], dtype=np.float64)
    lo = np.array([e.low for e in ests], dtype=np.float64)
    hi = np.array([e.high for e in ests], dtype=np.float64)
    err = np.vstack([np.nan_to_num(pts - lo), np.nan_to_num(hi - pts)])
    return np.nan_to_num(pts), np.clip(err, 0.0, None)


def plot_backbones(rows: Sequence[MethodSummary], path: str | Path, aggregate: str = "iqm") -> None:
    """Left: source and target return per method with CIs and the random floor; right: transfer ratio."""
    plt = _pyplot()
    names = [r.label for r in rows]
    y = np.arange(len(names))
    fig, (ax_ret, ax_ratio) = plt.subplots(
        1, 2, figsize=(11, 1.6 + 0.55 * max(len(names), 1)), sharey=True, constrained_layout=True
    )
    height = 0.38
    for offset, split, colour in ((-height / 2, "source", "tab:blue"), (height / 2, "target", "tab:orange")):
        ests = [r.splits.get(split, Interval(math.nan, math.nan, math.nan, 0)) for r in rows]
        pts, err = _errors(ests)
        ax_ret.barh(y + offset, pts, height, xerr=err, capsize=3, color=colour, label=f"{split} domains")
    floors = [r.random.get("target", math.nan) for r in rows]
    for i, f in enumerate(floors):
        if math.isfinite(f):
            ax_ret.vlines(f, i - 0.45, i + 0.45, colors="black", linestyles="--", linewidth=1.2)
    ax_ret.plot([], [], color="black", linestyle="--", label="random floor (target)")
    ax_ret.set_xlabel(f"episode return ({aggregate.upper()} over seeds x domains, 95% CI)")
    ax_ret.set_yticks(y)
    ax_ret.set_yticklabels(names)
    ax_ret.invert_yaxis()
    ax_ret.legend(fontsize=8, loc="best")
    ax_ret.set_title("return in source and target domains")
    pts, err = _errors([r.transfer_ratio for r in rows])
    ax_ratio.barh(y, pts, 0.6, xerr=err, capsize=3, color="tab:green")
    ax_ratio.axvline(1.0, color="grey", linestyle=":", linewidth=1.2)
    ax_ratio.set_xlabel("transfer ratio (target / source return; 1 = nothing lost)")
    ax_ratio.set_title("zero-shot transfer")
    atomic_save_figure(fig, path)


def plot_poi(matrix: PoiMatrix, path: str | Path, split: str = "target") -> None:
    """Heatmap of P(row > column) with each cell's CI written in it."""
    plt = _pyplot()
    names = matrix.names
    k = len(names)
    values = np.full((k, k), np.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            est = matrix.get(a, b)
            if est is not None:
                values[i, j] = est.point
    side = 2.5 + 1.1 * k
    fig, ax = plt.subplots(figsize=(side + 1.5, side), constrained_layout=True)
    image = ax.imshow(values, cmap="RdBu", vmin=0.0, vmax=1.0)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            est = matrix.get(a, b)
            text = "-" if est is None else format_number(est.point)
            if est is not None and est.has_ci:
                text += f"\n[{format_number(est.low)}, {format_number(est.high)}]"
            dark = est is not None and abs(est.point - 0.5) > 0.3  # white on the strong colours
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(k))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_yticks(range(k))
    ax.set_yticklabels(names)
    ax.set_xlabel("method Y")
    ax.set_ylabel("method X")
    ax.set_title(f"P(X > Y): chance a run of X beats a run of Y on a {split} domain (95% CI)")
    fig.colorbar(image, ax=ax, label="probability of improvement (0.5 = no difference)")
    atomic_save_figure(fig, path)


def plot_disentanglement_vs_transfer(result: DisentanglementTransfer, path: str | Path) -> None:
    """One column per score, one row per outcome; points coloured by backbone, rho [CI] in each title."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    cols, rows = result.metrics, result.outcomes
    fig, axes = plt.subplots(
        max(len(rows), 1),
        max(len(cols), 1),
        figsize=(3.6 * max(len(cols), 1), 3.3 * max(len(rows), 1)),
        squeeze=False,
        constrained_layout=True,
    )
    backbones = sorted({b for pts in result.points.values() for b in pts.backbones})
    palette = plt.get_cmap("tab10")
    colour = {b: palette(i % 10) for i, b in enumerate(backbones)}
    for r, outcome in enumerate(rows):
        for c, metric in enumerate(cols):
            ax = axes[r][c]
            pts = result.points[(metric, outcome)]
            for b in backbones:
                mask = np.array([pb == b for pb in pts.backbones], dtype=bool)
                if mask.any():
                    ax.scatter(pts.x[mask], pts.y[mask], s=28, color=colour[b], label=b, alpha=0.85)
            if outcome == "transfer_ratio":
                ax.axhline(1.0, color="grey", linestyle=":", linewidth=1.0)
            ax.set_title(
                f"{DISENTANGLEMENT_METRICS.get(metric, metric)}\n"
                f"{result.correlations[(metric, outcome)].short()}",
                fontsize=9,
            )
            ax.set_xlabel(f"{DISENTANGLEMENT_METRICS.get(metric, metric)} (score, 0-1)")
            ax.xaxis.set_major_locator(MaxNLocator(4))
            if c == 0:
                ax.set_ylabel(OUTCOMES[outcome].label)
    if backbones:
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=colour[b], label=b) for b in backbones]
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncol=min(len(backbones), 6),
            fontsize=8,
            title="vision backbone (one point per vision model x agent seed)",
        )
    fig.suptitle(
        "Disentanglement against zero-shot transfer (Spearman's rho, 95% bootstrap CI over vision models; "
        f"policies: {', '.join(result.modes)})",
        fontsize=10,
    )
    atomic_save_figure(fig, path)
