"""DARLA's Table 1 and the per-backbone table, from trials.

Table 1 of the paper compares, per RL algorithm, DARLA (beta-VAE_DAE, frozen) with the same
agent fine-tuning its encoder (DARLA_FT), on an entangled model (DARLA_ENT: beta = 1), on the
DAE's own features (DARLA_DAE) and on pixels, in source and target domains. Here a row is a
predicate over trials; a row that matches nothing says "not run" instead of vanishing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from darla.pipelines.analysis.config import AnalysisConfig
from darla.pipelines.analysis.estimate import Interval, format_number
from darla.pipelines.analysis.rl_stats import aggregate_ci, ratio_ci
from darla.pipelines.analysis.trials import SPLITS, TrialResult, group_by, split_scores, trial_key


@dataclass(frozen=True)
class Table1Row:
    name: str
    description: str
    matches: Callable[[TrialResult], bool]


def _beta(t: TrialResult) -> float | None:
    value = t.see_params.get("beta")
    return float(value) if isinstance(value, (int, float)) else None


def _frozen_latent(t: TrialResult, vision: str) -> bool:
    return t.vision == vision and t.mode == "frozen" and not t.readout


TABLE1_ROWS: tuple[Table1Row, ...] = (
    Table1Row(
        "DARLA",
        "beta-VAE_DAE, policy on its frozen latent means",
        lambda t: _frozen_latent(t, "beta_vae_dae"),
    ),
    Table1Row(
        "DARLA_FT",
        "beta-VAE_DAE encoder fine-tuned with the policy",
        lambda t: t.vision == "beta_vae_dae" and t.mode == "finetune",
    ),
    Table1Row(
        "DARLA_ENT",
        "entangled: beta-VAE with beta = 1, frozen",
        lambda t: _frozen_latent(t, "beta_vae") and _beta(t) == 1.0,
    ),
    Table1Row("DARLA_DAE", "the DAE's own features, frozen", lambda t: _frozen_latent(t, "dae")),
    Table1Row("pixels", "end-to-end CNN on pixels, no pretraining", lambda t: t.mode == "pixels"),
)
"""Table 1's rows, in the paper's order."""


@dataclass(frozen=True)
class MethodSummary:
    """One method's runs summarised: aggregate return per split, transfer ratios, floor, ceiling."""

    label: str
    method: str
    vision: str
    mode: str
    algo: str
    runs: int
    splits: Mapping[str, Interval]
    """split -> aggregate (cfg.aggregate) over runs x that split's domains, with its CI"""
    transfer_ratio: Interval
    """mean target / mean source return over runs, paired bootstrap"""
    above_floor_ratio: Interval
    """the same for the return above the random floor"""
    random: Mapping[str, float]
    """split -> the random floor (mean over runs)"""
    oracle: Mapping[str, float]
    """split -> the oracle's return (mean over runs that have one)"""
    oracle_labels: tuple[str, ...]


def _nanmean(values: Sequence[float]) -> float:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def summarise_method(
    trials: Sequence[TrialResult], cfg: AnalysisConfig, label: str | None = None
) -> MethodSummary:
    """Estimates for the runs of one method (trials sharing a method label)."""
    trials = sorted(trials, key=trial_key)
    first = trials[0]
    name = label or first.method
    splits = {}
    for split in SPLITS:
        scores = split_scores(trials, split)
        if not scores.domains:
            continue
        splits[split] = aggregate_ci(
            {name: scores}, aggregate=cfg.aggregate, reps=cfg.reps, level=cfg.level, seed=cfg.seed
        )[name]
    opts = {"reps": cfg.reps, "level": cfg.level, "seed": cfg.seed}
    src = [t.split_mean("source") for t in trials]
    tgt = [t.split_mean("target") for t in trials]
    floor_s = [t.split_mean("source", "random") for t in trials]
    floor_t = [t.split_mean("target", "random") for t in trials]
    return MethodSummary(
        label=name,
        method=first.method,
        vision=first.vision,
        mode=first.mode,
        algo=first.algo,
        runs=len(trials),
        splits=splits,
        transfer_ratio=ratio_ci(tgt, src, **opts),
        above_floor_ratio=ratio_ci(np.subtract(tgt, floor_t), np.subtract(src, floor_s), **opts),
        random={s: _nanmean([t.split_mean(s, "random") for t in trials]) for s in splits},
        oracle={s: _nanmean([t.split_mean(s, "oracle") for t in trials]) for s in splits},
        oracle_labels=tuple(sorted({t.oracle_label for t in trials if t.oracle_label})),
    )


def _params(t: TrialResult) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(t.see_params.items()))


# ----------------------------------------------------------------------------- Table 1
@dataclass(frozen=True)
class Table1Cell:
    row: Table1Row
    algo: str
    variants: tuple[MethodSummary, ...]
    """one per distinct method x vision parameters matching the row (usually one; none = not run)"""


@dataclass(frozen=True)
class Table1:
    algos: tuple[str, ...]
    cells: tuple[Table1Cell, ...]
    floor: Mapping[str, Mapping[str, float]]
    """algo -> split -> the random floor"""
    oracles: Mapping[str, Mapping[str, Mapping[str, float]]]
    """algo -> oracle label -> split -> its return"""


def table1(
    trials: Sequence[TrialResult],
    cfg: AnalysisConfig,
    rows: Sequence[Table1Row] = TABLE1_ROWS,
    known: Sequence[MethodSummary] = (),
) -> Table1:
    """Table 1 of DARLA on this sweep: every row x algorithm, floor and oracle per algorithm.

    `known`: summaries already computed by `backbone_summaries` on the same trials; a row holding
    exactly one method's trials reuses its numbers (the bootstrap is the costly part).
    """
    trials = sorted(trials, key=trial_key)
    by_method = group_by(trials, lambda t: t.method)
    done = {s.method: s for s in known if s.runs == len(by_method.get(s.method, ()))}
    algos = tuple(sorted({t.algo for t in trials}))
    cells = []
    for row in rows:
        for algo in algos:
            matched = [t for t in trials if t.algo == algo and row.matches(t)]
            groups = group_by(matched, lambda t: f"{t.method} {_params(t)}".strip())
            variants = []
            for key, ts in groups.items():
                label = f"{row.name} ({key})" if len(groups) > 1 else row.name
                whole = ts == by_method[ts[0].method] and ts[0].method in done
                variants.append(
                    replace(done[ts[0].method], label=label) if whole else summarise_method(ts, cfg, label)
                )
            cells.append(Table1Cell(row, algo, tuple(variants)))
    floor: dict[str, dict[str, float]] = {}
    oracles: dict[str, dict[str, dict[str, float]]] = {}
    for algo in algos:
        ts = [t for t in trials if t.algo == algo]
        floor[algo] = {s: _nanmean([t.split_mean(s, "random") for t in ts]) for s in ("source", "target")}
        by_oracle = group_by([t for t in ts if t.oracle_label], lambda t: str(t.oracle_label))
        oracles[algo] = {
            name: {s: _nanmean([t.split_mean(s, "oracle") for t in os_]) for s in ("source", "target")}
            for name, os_ in by_oracle.items()
        }
    return Table1(algos, tuple(cells), floor, oracles)


def table1_markdown(table: Table1) -> str:
    """Rows = Table 1's methods, columns = per algorithm: runs, source, target, transfer ratio."""
    head = ["method", "what it is"]
    for algo in table.algos:
        head += [f"{algo} runs", f"{algo} source", f"{algo} target", f"{algo} transfer ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_row: dict[str, list[Table1Cell]] = {}
    for cell in table.cells:
        by_row.setdefault(cell.row.name, []).append(cell)
    for cells in by_row.values():
        row = cells[0].row
        depth = max(1, *(len(c.variants) for c in cells))
        for i in range(depth):
            label = row.name
            parts = []
            for c in cells:
                if i < len(c.variants):
                    v = c.variants[i]
                    label = v.label
                    parts += [
                        str(v.runs),
                        _split(v, "source"),
                        _split(v, "target"),
                        v.transfer_ratio.format(),
                    ]
                else:
                    parts += ["not run" if not c.variants else "", "", "", ""]
            lines.append(f"| {label} | {row.description} | " + " | ".join(parts) + " |")
    floor_cells = []
    for algo in table.algos:
        f = table.floor[algo]
        floor_cells += ["", format_number(f["source"]), format_number(f["target"]), ""]
    lines.append(
        "| *random floor* | uniform-random policy, same episodes | " + " | ".join(floor_cells) + " |"
    )
    names = sorted({name for per in table.oracles.values() for name in per})
    for name in names:
        cells_ = []
        for algo in table.algos:
            o = table.oracles[algo].get(name)
            cells_ += ["", "", format_number(o["target"]), ""] if o else ["", "", "", ""]
        lines.append(f"| *{name}* | trained on the target domains (ceiling) | " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def _split(s: MethodSummary, split: str) -> str:
    est = s.splits.get(split)
    return est.format() if est is not None else "n/a"


# ----------------------------------------------------------------------------- per backbone
def backbone_summaries(trials: Sequence[TrialResult], cfg: AnalysisConfig) -> list[MethodSummary]:
    """One summary per method label (vision x mode x algo), sorted by label."""
    return [summarise_method(ts, cfg) for ts in group_by(trials, lambda t: t.method).values()]


def backbone_markdown(rows: Sequence[MethodSummary], aggregate: str) -> str:
    splits = [s for s in SPLITS if any(s in r.splits for r in rows)]
    head = ["method", "runs", *(f"{s} ({aggregate})" for s in splits), "transfer ratio", "above floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.label, str(r.runs), *(_split(r, s) for s in splits)]
        cells += [r.transfer_ratio.format(), r.above_floor_ratio.format()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(rows: Sequence[MethodSummary]) -> list[str]:
    """Why an estimate is missing or what was dropped, one line per method and estimate."""
    out = []
    for r in rows:
        ests = {**{s: e for s, e in r.splits.items()}, "transfer ratio": r.transfer_ratio}
        for name, est in ests.items():
            if est.reason:
                out.append(f"{r.label}, {name}: {est.reason}")
    return out
