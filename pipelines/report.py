"""The run report: what transferred, with honest uncertainty.

`darla report --run runs/quick` reads every `<run>/transfer/**/results.json` and writes
`<run>/report/`: `report.md` (tables and how to read them), `transfer.png` (bar plot with 95%
CIs, random floor and oracle), `results.csv` (one row per method x domain x seed) and
`summary.json` (the same numbers for machines). Estimates follow rliable: across seeds, the
mean (or the interquartile mean with >= 4 seeds) with a seeded stratified-bootstrap CI.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darla import locks
from darla.agents.config import readout_name
from darla.artifacts import atomic_save_figure, atomic_write_json, atomic_write_text, read_json
from darla.cli import Command
from darla.errors import ArtifactError, ConfigError
from darla.pipelines.stats import (
    IQM_MIN_RUNS,
    NAN_ESTIMATE,
    Estimate,
    aggregate_name,
    bootstrap_mean_ci,
    ratio_ci,
    stratified_aggregate_ci,
)
from darla.pipelines.transfer import SAMPLED, SPLITS, policy_reads, read_act_config

logger = logging.getLogger(__name__)

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
class ReportConfig:
    """Tables, CIs and plots from a run folder's transfer results."""

    run: Path | None = None
    """run folder holding transfer/ (e.g. runs/quick)"""
    out: Path | None = None
    """report folder (default: <run>/report)"""
    reps: int = 2000
    """bootstrap resamples"""
    level: float = 0.95
    """confidence level of the intervals"""
    seed: int = 0
    """bootstrap seed (the same inputs give the same intervals)"""
    iqm_min_runs: int = IQM_MIN_RUNS
    """aggregate over seeds with the interquartile mean from this many runs on (else the mean)"""

    def validate(self) -> None:
        if self.reps < 1:
            raise ConfigError(f"report reps must be >= 1, got {self.reps}")
        if not 0.0 < self.level < 1.0:
            raise ConfigError(f"report level must be in (0, 1), got {self.level}")
        if self.iqm_min_runs < 1:
            raise ConfigError(f"iqm_min_runs must be >= 1, got {self.iqm_min_runs}")


# ----------------------------------------------------------------------------- loading
@dataclass
class RunResult:
    """One policy's transfer results (one seed of one method)."""

    method: str
    seed: int
    path: Path
    data: dict[str, Any]
    oracle_name: str | None = None
    """`oracle_label` of the results file (read once, when the run is loaded)"""

    def domain_mean(self, domain: str, role: str = "agent") -> float:
        entry = self.data["domains"].get(domain, {}).get(role)
        return float(entry["mean"]) if entry and entry.get("mean") is not None else math.nan

    def split_mean(self, split: str, role: str = "agent") -> float:
        value = self.data["policies"].get(role, {}).get("split_means", {}).get(split)
        return float(value) if value is not None else math.nan


def oracle_label(data: dict[str, Any]) -> str | None:
    """'oracle beta_vae_dae/frozen/ppo': the target-trained agent a results file measures its policy
    against (a run can hold several: frozen policies against a frozen oracle, pixels against pixels),
    named from the oracle's act config, or from its folder names when that is gone."""
    if not data["policies"].get("oracle"):
        return None
    path = data.get("oracle")
    if not path:
        return "oracle"
    folder = Path(path)
    try:
        cfg = read_act_config(folder)
    except (ArtifactError, ConfigError):
        return f"oracle {folder.parent.parent.name}/{folder.parent.name}"
    return "oracle " + method_label(
        {"mode": cfg.get("mode"), "algo": cfg.get("algo"), "vision": cfg.get("vision_model")}
    )


def _custom_name(data: dict[str, Any]) -> str | None:
    """The act folder's name (`act --name`) where it is not the default one, so two policies of one
    model and mode (two betas, say) are not merged into one method."""
    act = data.get("act")
    parts = Path(str(act)).parts if act else ()
    if len(parts) < 4 or parts[-4] != "act":
        return None
    name, vision, mode = parts[-3], data.get("vision"), data.get("mode")
    return None if name in {str(vision), f"{vision}-{mode}", f"{vision}@{_readout(data)}", "pixels"} else name


def _readout(data: dict[str, Any]) -> str:
    return readout_name(str(data.get("feature_layer") or ""), str(data.get("feature_head") or "mlp"))


def method_label(data: dict[str, Any]) -> str:
    """'beta_vae_dae/frozen/ppo', or 'pixels/ppo' for the end-to-end baseline; 'beta_vae_dae[b8]/...'
    for an act folder given its own name; 'frozen@conv1+cnn' for a policy reading an encoder layer
    (with a conv head); ' clone' for a policy cloned from an expert; ' (sampled)' when the agent was
    evaluated with sampled actions only."""
    mode, algo, vision = data.get("mode"), data.get("algo"), data.get("vision")
    pixels = mode == "pixels" or vision in (None, "pixels")
    if readout := _readout(data):
        mode = f"{mode}@{readout}"
    name = _custom_name(data)
    base = f"{'pixels' if pixels else vision}[{name}]" if name else ("pixels" if pixels else str(vision))
    label = f"{base}/{algo}" if pixels else f"{base}/{mode}/{algo}"
    if data.get("expert"):
        label += " clone"  # `act --expert`: fit to another policy's actions, not trained by RL
    return label if data.get("deterministic", True) else f"{label} (sampled)"


def sampled_view(data: dict[str, Any]) -> dict[str, Any]:
    """The results of the agent's sampled-action evaluation in the place of the greedy ones."""
    domains = {
        name: {**entry, "agent": entry[SAMPLED], "mean": entry[SAMPLED]["mean"], "std": entry[SAMPLED]["std"]}
        for name, entry in data["domains"].items()
        if SAMPLED in entry
    }
    return {**data, "domains": domains, "policies": {**data["policies"], "agent": data["policies"][SAMPLED]}}


def _with_features(data: dict[str, Any]) -> dict[str, Any]:
    """Results written before transfer recorded what the policy reads (`feature_layer`,
    `feature_head`) take it from their act config, so their seeds join the same method."""
    if "feature_layer" in data or "feature_head" in data or not data.get("act"):
        return data
    try:
        cfg = read_act_config(Path(str(data["act"])))
    except (ArtifactError, ConfigError):
        return data
    return {**data, **policy_reads(cfg)}


def load_run(run_dir: Path, folders: Sequence[Path] | None = None) -> list[RunResult]:
    """Every finished transfer results.json under <run>/transfer (episode caches skipped), or
    only those of `folders` (what `darla run` just evaluated, leaving out stale policies)."""
    root = run_dir / "transfer"
    if not root.is_dir():
        raise ArtifactError(f"{run_dir} holds no transfer/ folder: run `darla transfer` or `darla run` first")
    runs: list[RunResult] = []
    if folders is not None:
        paths = [Path(f) / "results.json" for f in folders]
    else:
        paths = sorted(root.rglob("results.json"))
    for path in paths:
        if folders is None and any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        data = read_json(path)
        if not isinstance(data, dict) or "domains" not in data or "policies" not in data:
            raise ArtifactError(f"{path} is not a darla transfer results file")
        data = _with_features(data)
        seed = int(data.get("agent_seed") or 0)
        oracle = oracle_label(data)
        runs.append(RunResult(method_label(data), seed, path.parent, data, oracle))
        if SAMPLED in data["policies"]:
            sampled = method_label({**data, "deterministic": False})
            runs.append(RunResult(sampled, seed, path.parent, sampled_view(data), oracle))
    if not runs:
        raise ArtifactError(f"no transfer results under {root}")
    return runs


# ----------------------------------------------------------------------------- estimates
@dataclass
class DomainRow:
    domain: str
    split: str
    difficulty: Any
    random: float
    oracle: dict[str, float]
    """mean return of each target-trained agent (by `RunResult.oracle_name`) on this domain"""
    per_method: dict[str, Estimate]


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
        row["aggregate"] = aggregate_name(len(rs), cfg.iqm_min_runs)
        splits: dict[str, Estimate] = {}
        for split in SPLITS:
            per_domain = [[r.domain_mean(d) for r in rs] for d in order if domains[d][0] == split]
            per_domain = [list(_finite(v)) for v in per_domain]
            per_domain = [v for v in per_domain if v]
            splits[split] = (
                stratified_aggregate_ci(per_domain, iqm_min_runs=cfg.iqm_min_runs, **opts)
                if per_domain
                else NAN_ESTIMATE
            )
        row["splits"] = splits
        src = [r.split_mean("source") for r in rs]
        for split, prefix in (("target", ""), ("ood", "ood_")):
            tgt = [r.split_mean(split) for r in rs]
            pairs = [(t, s) for t, s in zip(tgt, src) if math.isfinite(t) and math.isfinite(s)]
            row[f"{prefix}transfer_ratio"] = (
                ratio_ci([p[0] for p in pairs], [p[1] for p in pairs], **opts) if pairs else NAN_ESTIMATE
            )
            row[f"{prefix}gap"] = (
                bootstrap_mean_ci([s - t for t, s in pairs], iqm_min_runs=cfg.iqm_min_runs, **opts)
                if pairs
                else NAN_ESTIMATE
            )
            orc = [r.split_mean(split, "oracle") for r in rs]
            opairs = [(t, o) for t, o in zip(tgt, orc) if math.isfinite(t) and math.isfinite(o)]
            row[f"{prefix}oracle_ratio"] = (
                ratio_ci([p[0] for p in opairs], [p[1] for p in opairs], **opts) if opairs else NAN_ESTIMATE
            )
            # the same ratio for the return above the random floor (rewards can be negative)
            floor_t = [r.split_mean(split, "random") for r in rs]
            floor_s = [r.split_mean("source", "random") for r in rs]
            above = [
                (t - ft, s - fs)
                for t, s, ft, fs in zip(tgt, src, floor_t, floor_s)
                if all(math.isfinite(v) for v in (t, s, ft, fs))
            ]
            row[f"{prefix}normalized_transfer_ratio"] = (
                ratio_ci([a[0] for a in above], [a[1] for a in above], **opts) if above else NAN_ESTIMATE
            )
        row["random"] = {s: _nanmean([r.split_mean(s, "random") for r in rs]) for s in SPLITS}
        row["oracle"] = {s: _nanmean([r.split_mean(s, "oracle") for r in rs]) for s in SPLITS}
        row["oracle_names"] = sorted({r.oracle_name for r in rs if r.oracle_name})
        row["oracle_domains"] = {d: _nanmean([r.domain_mean(d, "oracle") for r in rs]) for d in order}
        row["domains"] = {
            d: bootstrap_mean_ci(
                _finite([r.domain_mean(d) for r in rs]), iqm_min_runs=cfg.iqm_min_runs, **opts
            )
            for d in order
        }
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


# ----------------------------------------------------------------------------- writers
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


def _num(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else "n/a"


HOW_TO_READ = """\
## How to read this

Each method is a vision model, a mode (`frozen`: the policy reads the vision model's frozen
features, DARLA; `finetune`: the encoder is trained on with the policy; `pixels`: an
end-to-end CNN, no pretraining) and an RL algorithm, trained with several seeds on the
**source** domains only. It is then evaluated, without any further training, on the same fixed
episodes of every domain: **source** (seen in training), **target** (held-out combinations of
factor values seen in the sources; DARLA's zero-shot transfer) and **ood** (values never seen).
Returns are the {agg} over seeds of each seed's mean episode return; brackets are {level:.0%}
stratified-bootstrap confidence intervals over seeds (wide with 3 seeds: read overlap as "not
shown different"). The **random** floor is a uniform-random policy on the same episodes; the
**oracle** is the same kind of agent trained directly on the target domains, the ceiling.
**Transfer ratio** = mean target return / mean source return (1.0: nothing lost in transfer;
it can mislead when the source return is near the floor, so read it with the returns);
**above floor** = the same ratio of returns minus the random floor (what the policy earns
beyond chance);
**gap** = source - target return (Procgen's generalisation gap); **to oracle** = target
return / the oracle's target return.
"""


def markdown(summary: dict[str, Any], runs: list[RunResult], run_dir: Path, cfg: ReportConfig) -> str:
    methods: dict[str, dict[str, Any]] = summary["methods"]
    first = runs[0].data
    env = first.get("env")
    episodes = first.get("episodes")
    aggs = sorted({row["aggregate"] for row in methods.values()})
    lines = [
        f"# Transfer report: {run_dir}",
        "",
        f"Env family **{env}**; {len(methods)} method(s), {len(runs)} policies; "
        f"{episodes} evaluation episodes per domain (seed {first.get('eval_seed')}); "
        f"{' / '.join(aggs)} over seeds with {cfg.level:.0%} CIs ({cfg.reps} bootstrap resamples).",
        "",
        "## Returns per split",
        "",
        "| method | seeds | source | target | ood | transfer ratio | above floor | ood ratio | gap (src - tgt) "
        "| to oracle |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in methods.items():
        s = row["splits"]
        lines.append(
            f"| {method} | {row['n']} | {s['source'].format()} | {s['target'].format()} | {s['ood'].format()} "
            f"| {row['transfer_ratio'].format()} | {row['normalized_transfer_ratio'].format()} "
            f"| {row['ood_transfer_ratio'].format()} "
            f"| {row['gap'].format()} | {row['oracle_ratio'].format()} |"
        )
    rnd = _first_finite([row["random"] for row in methods.values()])
    lines.append(
        "| *random floor* | | " + " | ".join(_num(rnd.get(s, math.nan)) for s in SPLITS) + " | | | | | |"
    )
    oracles: dict[str, dict[str, Any]] = summary["oracles"]
    for name, orc in oracles.items():
        lines.append(
            f"| *{name} (target-trained; ceiling of {', '.join(orc['methods'])})* | | "
            + " | ".join(_num(orc["splits"].get(s, math.nan)) for s in SPLITS)
            + " | | | | | |"
        )
    names = list(methods)
    lines += [
        "",
        "## Returns per domain",
        "",
        "| domain | split | difficulty | random | "
        + "".join(f"{name} | " for name in oracles)
        + " | ".join(names)
        + " |",
        "|---|---|---|---|" + "---|" * (len(oracles) + len(names)),
    ]
    for d in summary["domains"]:
        lines.append(
            f"| {d.domain} | {d.split} | {'' if d.difficulty is None else d.difficulty} | {_num(d.random)} | "
            + "".join(f"{_num(d.oracle[name])} | " for name in oracles)
            + " | ".join(d.per_method[m].format() for m in names)
            + " |"
        )
    lines += probe_lines(run_dir)
    lines += [
        "",
        "![transfer](transfer.png)",
        "",
        HOW_TO_READ.format(agg=" / ".join(aggs), level=cfg.level),
        "Per-seed numbers: `results.csv`; per-episode returns: each policy's `results.json`.",
        "",
    ]
    return "\n".join(lines)


def probe_lines(run_dir: Path) -> list[str]:
    """The run's `darla probe` results (<run>/probe/<model>/probe.json), one row per model x factor."""
    files = sorted(Path(run_dir).glob("probe/*/probe.json"))
    if not files:
        return []
    lines = [
        "",
        "## Features: what a linear probe reads from each vision model, per split",
        "",
        "Accuracy of a linear probe fitted on the model's source domains (ground-truth frames, "
        "held-out source frames), scored on every target and ood domain (`probe/<model>/probe.png`). "
        "A factor readable in the sources but not in a target is one the frozen features lose there.",
        "",
        "| model | factor | source | target | ood | chance | lowest domain |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in files:
        data = read_json(path)
        for factor, per in data["accuracy"].items():
            summ = data["summary"][factor]
            low = min(per, key=lambda d: per[d])
            lines.append(
                f"| {data['model']} | {factor} | "
                + " | ".join(_num(summ.get(s, math.nan)) for s in SPLITS)
                + f" | {_num(data['chance'][factor])} | {low} ({_num(per[low])}) |"
            )
    return lines


def _first_finite(dicts: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for d in dicts:
        for k, v in d.items():
            if k not in out or not math.isfinite(out[k]):
                out[k] = v
    return out


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
        ax: Any, groups: list[str], est: list[list[Estimate]], floor: list[float], ceil: list[list[float]]
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


def _estimate_dict(e: Estimate) -> dict[str, Any]:
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


def write_report(cfg: ReportConfig | str | Path, folders: Sequence[Path] | None = None) -> Path:
    """Write <run>/report/{report.md, transfer.png, results.csv, summary.json}; returns the folder.

    `folders` limits the report to these transfer folders (default: all under <run>/transfer).
    """
    if not isinstance(cfg, ReportConfig):
        cfg = ReportConfig(run=Path(cfg))
    if cfg.run is None:
        raise ConfigError("report needs --run: the run folder (holding transfer/)")
    run_dir = Path(cfg.run)
    out = Path(cfg.out) if cfg.out is not None else run_dir / "report"
    runs = load_run(run_dir, folders)
    summary = summarise(runs, cfg)
    locks.hold_stage(out, run_dir)  # one writer; a run in progress holds its own report folder
    atomic_write_text(out / "results.csv", _csv_text(csv_rows(runs)))
    atomic_write_json(out / "summary.json", summary_json(summary))
    plot(summary, out / "transfer.png")
    atomic_write_text(out / "report.md", markdown(summary, runs, run_dir, cfg))
    logger.info("report: %d policies, %d methods -> %s", len(runs), len(summary["methods"]), out)
    return out


def read_headline(report_dir: Path) -> list[dict[str, Any]]:
    """The headline rows of a written report (from summary.json)."""
    data = read_json(Path(report_dir) / "summary.json")
    rows = []
    for method, row in data["methods"].items():
        rows.append(
            {
                "method": method,
                "seeds": len(row["seeds"]),
                **{s: Estimate(**_none_to_nan(row["splits"][s])).format() for s in SPLITS},
                "transfer_ratio": Estimate(**_none_to_nan(row["transfer_ratio"])).format(),
                "to_oracle": Estimate(**_none_to_nan(row["oracle_ratio"])).format(),
            }
        )
    return rows


def _none_to_nan(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (math.nan if v is None and k != "n" else v) for k, v in d.items()}


def render_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of headline rows."""
    if not rows:
        return "(no results)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _command(cfg: ReportConfig) -> dict[str, Any]:
    out = write_report(cfg)
    return {
        "report": str(out / "report.md"),
        "plot": str(out / "transfer.png"),
        "csv": str(out / "results.csv"),
        "table": read_headline(out),
    }


def render(result: dict[str, Any]) -> str:
    return f"{render_table(result['table'])}\n\nreport: {result['report']}\nplot:   {result['plot']}"


COMMAND = Command(
    words=("report",),
    config=ReportConfig,
    run=_command,
    help="tables, CIs and plots from a run folder",
    render=render,
)
