"""The report's figure: mean return per method and split (top) and per domain (bottom), with CIs,
the random floor and each method's oracle."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from darla.artifacts import SPLITS, atomic_save_figure
from darla.pipelines.analysis.estimate import Interval
from darla.pipelines.analysis.report_summary import DomainRow
from darla.pipelines.analysis.report_text import _first_finite


def plot(summary: dict[str, Any], path: Path) -> None:
    """Bars: mean return per method and split (top) and per domain (bottom), CIs, floor, oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods: dict[str, dict[str, Any]] = summary["methods"]
    names = list(methods)
    splits = [s for s in SPLITS if any(math.isfinite(r["splits"][s].point) for r in methods.values())]
    domain_rows: list[DomainRow] = summary["domains"]
    width = 0.8 / max(len(names), 1)
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, 1, figsize=(max(7.0, 1.2 * len(domain_rows) + 3), 8), constrained_layout=True)

    def bars(
        ax: Any, groups: list[str], est: list[list[Interval]], floor: list[float], ceil: list[list[float]]
    ) -> None:
        """`ceil[g][m]`: method m's own oracle in group g, drawn over that method's bar only."""
        x = np.arange(len(groups))
        for m, name in enumerate(names):
            pts = np.array([e[m].point for e in est])
            lo = np.array([e[m].low for e in est])
            hi = np.array([e[m].high for e in est])
            err = np.vstack([np.nan_to_num(pts - lo), np.nan_to_num(hi - pts)])
            centre = x + (m - (len(names) - 1) / 2) * width
            ax.bar(centre, np.nan_to_num(pts), width, yerr=err, capsize=3, label=name, color=colors(m % 10))
            tops = np.array([c[m] for c in ceil])
            ok = np.isfinite(tops)
            if ok.any():
                ax.hlines(
                    tops[ok],
                    centre[ok] - width / 2,
                    centre[ok] + width / 2,
                    colors="crimson",
                    linestyles=":",
                    linewidth=1.8,
                )
        for i in range(len(groups)):
            if math.isfinite(floor[i]):
                ax.hlines(floor[i], i - 0.45, i + 0.45, colors="black", linestyles="--", linewidth=1.2)
        ax.set_xticks(x)
        ax.set_xticklabels(groups, rotation=20 if len(groups) > 4 else 0)
        ax.set_ylabel("mean episode return")
        ax.axhline(0.0, color="grey", linewidth=0.5)

    rnd = _first_finite([r["random"] for r in methods.values()])
    bars(
        axes[0],
        splits,
        [[methods[n]["splits"][s] for n in names] for s in splits],
        [rnd.get(s, math.nan) for s in splits],
        [[methods[n]["oracle"][s] for n in names] for s in splits],
    )
    axes[0].set_title("zero-shot return per domain split (95% CI over seeds)")
    bars(
        axes[1],
        [f"{d.domain}\n({d.split})" for d in domain_rows],
        [[d.per_method[n] for n in names] for d in domain_rows],
        [d.random for d in domain_rows],
        [[methods[n]["oracle_domains"][d.domain] for n in names] for d in domain_rows],
    )
    axes[1].set_title("per domain")
    from matplotlib.lines import Line2D

    handles, _labels = axes[0].get_legend_handles_labels()
    handles += [
        Line2D([], [], color="black", linestyle="--", label="random floor"),
        Line2D([], [], color="crimson", linestyle=":", label="each method's oracle (target-trained)"),
    ]
    axes[0].legend(handles=handles, fontsize=8, loc="best")
    atomic_save_figure(fig, path)
