"""The report's numbers: per method and split / domain, aggregates over seeds with CIs, ratios, floor
and ceiling; the CSV rows and the JSON summary."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from darla.artifacts import SPLITS
from darla.pipelines.analysis.estimate import Interval, missing
from darla.pipelines.analysis.ratios import HELD_OUT_SPLITS, gap, prefix, ratio_terms
from darla.pipelines.analysis.report_runs import RunResult
from darla.pipelines.analysis.rl_stats import aggregate_ci, ratio_ci

IQM_MIN_RUNS = 4
"""With at least this many runs the aggregate over seeds is the IQM, otherwise the mean (as rliable)."""


def aggregate_of(n_runs: int, iqm_min_runs: int = IQM_MIN_RUNS) -> str:
    """The aggregate over `n_runs` runs: rliable's interquartile mean of many, the mean of few."""
    return "iqm" if n_runs >= iqm_min_runs else "mean"


if TYPE_CHECKING:
    from darla.pipelines.analysis.report import ReportConfig


CSV_FIELDS = (
    "method",
    "vision",
    "mode",
    "algo",
    "seed",
    "domain",
    "split",
    "difficulty",
    "episodes",
    "mean_return",
    "std_return",
    "random_mean",
    "oracle_mean",
    "transfer_ratio",
    "ood_transfer_ratio",
    "gap",
    "oracle_ratio",
    "results",
)


@dataclass
class DomainRow:
    domain: str
    split: str
    difficulty: Any
    random: float
    oracle: dict[str, float]
    """mean return of each target-trained agent (by `RunResult.oracle_name`) on this domain"""
    per_method: dict[str, Interval]


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def _nanmean(values: Sequence[float]) -> float:
    x = _finite(values)
    return float(x.mean()) if x.size else math.nan


def summarise(runs: list[RunResult], cfg: ReportConfig) -> dict[str, Any]:
    """Per method and split / domain: aggregates with CIs, ratios, floor and ceiling."""
    methods: dict[str, list[RunResult]] = defaultdict(list)
    for r in runs:
        methods[r.method].append(r)
    domains: dict[str, tuple[str, Any]] = {}
    for r in runs:
        for name, entry in r.data["domains"].items():
            domains.setdefault(name, (entry.get("split", "?"), entry.get("difficulty")))
    # split order (source, target, ood), the env family's order within a split
    order = sorted(
        domains, key=lambda d: SPLITS.index(domains[d][0]) if domains[d][0] in SPLITS else len(SPLITS)
    )
    opts = {"reps": cfg.reps, "level": cfg.level, "seed": cfg.seed}

    method_rows: dict[str, dict[str, Any]] = {}
    for method, rs in sorted(methods.items()):
        rs.sort(key=lambda r: r.seed)
        row: dict[str, Any] = {"seeds": [r.seed for r in rs], "n": len(rs)}
        agg = aggregate_of(len(rs), cfg.iqm_min_runs)
        row["aggregate"] = "IQM" if agg == "iqm" else "mean"

        def over_runs(matrix: list[list[float]], agg: str = agg) -> Interval:
            """rliable's aggregate of runs x domains with its stratified bootstrap CI."""
            if not matrix or not matrix[0]:
                return missing("no domain of this split")
            return aggregate_ci({"m": np.asarray(matrix, dtype=np.float64)}, aggregate=agg, **opts)["m"]

        splits: dict[str, Interval] = {}
        for split in SPLITS:
            names = [d for d in order if domains[d][0] == split]
            splits[split] = over_runs([[r.domain_mean(d) for d in names] for r in rs] if names else [])
        row["splits"] = splits
        for split in HELD_OUT_SPLITS:
            p = prefix(split)
            terms = [ratio_terms(split, r.means(), r.means("random"), r.means("oracle")) for r in rs]
            for name in (f"{p}transfer_ratio", f"{p}oracle_ratio", f"{p}normalized_transfer_ratio"):
                pairs = [t[name] for t in terms if all(math.isfinite(v) for v in t[name])]
                row[name] = (
                    ratio_ci([a for a, _ in pairs], [d for _, d in pairs], **opts)
                    if pairs
                    else missing("no seed with both returns")
                )
            gaps = [g for g in (gap(split, r.means()) for r in rs) if math.isfinite(g)]
            row[f"{p}gap"] = over_runs([[g] for g in gaps]) if gaps else missing("no seed with both returns")
        row["random"] = {s: _nanmean([r.split_mean(s, "random") for r in rs]) for s in SPLITS}
        row["oracle"] = {s: _nanmean([r.split_mean(s, "oracle") for r in rs]) for s in SPLITS}
        row["oracle_names"] = sorted({r.oracle_name for r in rs if r.oracle_name})
        row["oracle_domains"] = {d: _nanmean([r.domain_mean(d, "oracle") for r in rs]) for d in order}
        row["domains"] = {d: over_runs([[r.domain_mean(d)] for r in rs]) for d in order}
        method_rows[method] = row

    by_oracle: dict[str, list[RunResult]] = defaultdict(list)
    for r in runs:
        if r.oracle_name:
            by_oracle[r.oracle_name].append(r)
    oracles = {
        name: {
            "splits": {s: _nanmean([r.split_mean(s, "oracle") for r in rs]) for s in SPLITS},
            "methods": sorted({r.method for r in rs}),
        }
        for name, rs in sorted(by_oracle.items())
    }
    domain_rows = [
        DomainRow(
            domain=d,
            split=domains[d][0],
            difficulty=domains[d][1],
            random=_nanmean([r.domain_mean(d, "random") for r in runs]),
            oracle={
                name: _nanmean([r.domain_mean(d, "oracle") for r in rs])
                for name, rs in sorted(by_oracle.items())
            },
            per_method={m: row["domains"][d] for m, row in method_rows.items()},
        )
        for d in order
    ]
    return {"methods": method_rows, "domains": domain_rows, "order": order, "oracles": oracles}


def csv_rows(runs: list[RunResult]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in sorted(runs, key=lambda r: (r.method, r.seed)):
        agent = r.data["policies"].get("agent", {})
        for domain, entry in r.data["domains"].items():
            stats = entry.get("agent") or {}
            rows.append(
                {
                    "method": r.method,
                    "vision": r.data.get("vision"),
                    "mode": r.data.get("mode"),
                    "algo": r.data.get("algo"),
                    "seed": r.seed,
                    "domain": domain,
                    "split": entry.get("split"),
                    "difficulty": entry.get("difficulty"),
                    "episodes": stats.get("episodes"),
                    "mean_return": stats.get("mean"),
                    "std_return": stats.get("std"),
                    "random_mean": entry.get("random_mean"),
                    "oracle_mean": entry.get("oracle_mean"),
                    "transfer_ratio": agent.get("transfer_ratio"),
                    "ood_transfer_ratio": agent.get("ood_transfer_ratio"),
                    "gap": agent.get("gap"),
                    "oracle_ratio": agent.get("oracle_ratio"),
                    "results": str(r.path / "results.json"),
                }
            )
    return rows


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def _estimate_dict(e: Interval) -> dict[str, Any]:
    return e.as_dict()


def summary_json(summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"methods": {}, "domains": []}
    for method, row in summary["methods"].items():
        out["methods"][method] = {
            "seeds": row["seeds"],
            "aggregate": row["aggregate"],
            "splits": {s: _estimate_dict(e) for s, e in row["splits"].items()},
            **{
                k: _estimate_dict(row[k])
                for k in (
                    "transfer_ratio",
                    "normalized_transfer_ratio",
                    "ood_transfer_ratio",
                    "ood_normalized_transfer_ratio",
                    "gap",
                    "ood_gap",
                    "oracle_ratio",
                    "ood_oracle_ratio",
                )
            },
            "random": {s: (v if math.isfinite(v) else None) for s, v in row["random"].items()},
            "oracle": {s: (v if math.isfinite(v) else None) for s, v in row["oracle"].items()},
            "oracle_names": row["oracle_names"],
        }
    for d in summary["domains"]:
        out["domains"].append(
            {
                "domain": d.domain,
                "split": d.split,
                "difficulty": d.difficulty,
                "random": d.random if math.isfinite(d.random) else None,
                "oracle": {k: (v if math.isfinite(v) else None) for k, v in d.oracle.items()},
                "methods": {m: _estimate_dict(e) for m, e in d.per_method.items()},
            }
        )
    return out


def headline(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: what `darla run` prints at the end."""
    rows = []
    for method, row in summary["methods"].items():
        rows.append(
            {
                "method": method,
                "seeds": row["n"],
                **{s: row["splits"][s].format() for s in SPLITS},
                "transfer_ratio": row["transfer_ratio"].format(),
                "to_oracle": row["oracle_ratio"].format(),
            }
        )
    return rows
