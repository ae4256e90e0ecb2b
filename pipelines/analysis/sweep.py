"""A backbone sweep's report: results.csv, summary.json, report.md and its figures, from trials.

    from darla.pipelines.analysis import AnalysisConfig, write_sweep_report
    write_sweep_report(trials, Path("runs/sweep/report"), AnalysisConfig(seed=0))

Pure over its inputs: the same trials (in any order) and config give the same numbers and text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darla.artifacts import atomic_write_json, atomic_write_text
from darla.errors import ConfigError
from darla.pipelines.analysis import figures
from darla.pipelines.analysis.config import AnalysisConfig
from darla.pipelines.analysis.correlation import (
    DISENTANGLEMENT_METRICS,
    OUTCOMES,
    DisentanglementTransfer,
    disentanglement_vs_transfer,
)
from darla.pipelines.analysis.rl_stats import PoiMatrix, poi_matrix
from darla.pipelines.analysis.tables import (
    MethodSummary,
    Table1,
    backbone_markdown,
    backbone_summaries,
    notes,
    table1,
    table1_markdown,
)
from darla.pipelines.analysis.trials import (
    TrialResult,
    group_by,
    results_csv,
    split_domains,
    split_scores,
    trial_key,
)

logger = logging.getLogger(__name__)

FIGURES = {
    "backbones": "backbones.png",
    "poi": "poi.png",
    "disentanglement": "disentanglement_vs_transfer.png",
}


@dataclass(frozen=True)
class SweepAnalysis:
    """Every number of the report."""

    env: str
    config: AnalysisConfig
    table1: Table1
    backbones: tuple[MethodSummary, ...]
    poi: PoiMatrix
    disentanglement: DisentanglementTransfer
    trials: int


def check_trials(trials: Sequence[TrialResult]) -> str:
    """The one env family the trials share (a sweep's domains are only comparable within one)."""
    if not trials:
        raise ConfigError("no trials to analyse: the sweep produced no transfer results")
    envs = sorted({t.env for t in trials})
    if len(envs) != 1:
        raise ConfigError(f"analyse one env family at a time; the trials come from {', '.join(envs)}")
    return envs[0]


def analyse(trials: Sequence[TrialResult], cfg: AnalysisConfig | None = None) -> SweepAnalysis:
    """Table 1, the per-backbone summaries, the P(improvement) matrix and the disentanglement check."""
    cfg = cfg or AnalysisConfig()
    cfg.validate()
    env = check_trials(trials)
    trials = sorted(trials, key=trial_key)
    domains = split_domains(trials, cfg.poi_split)
    scores = {
        name: split_scores(ts, cfg.poi_split, domains=domains)
        for name, ts in group_by(trials, lambda t: t.method).items()
    }
    backbones = tuple(backbone_summaries(trials, cfg))
    return SweepAnalysis(
        env=env,
        config=cfg,
        table1=table1(trials, cfg, known=backbones),
        backbones=backbones,
        poi=poi_matrix(scores, reps=cfg.poi_reps, level=cfg.level, seed=cfg.seed),
        disentanglement=disentanglement_vs_transfer(
            trials,
            metrics=cfg.metrics or None,
            modes=cfg.correlation_modes,
            reps=cfg.reps,
            level=cfg.level,
            seed=cfg.seed,
        ),
        trials=len(trials),
    )


def poi_markdown(matrix: PoiMatrix) -> str:
    """P(row > column) with CIs, as a table."""
    head = ["P(row > column)", *matrix.names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for x in matrix.names:
        cells = [(est.format() if (est := matrix.get(x, y)) is not None else "-") for y in matrix.names]
        lines.append(f"| {x} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def correlation_markdown(result: DisentanglementTransfer) -> str:
    head = ["score", *(OUTCOMES[o].label for o in result.outcomes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in result.metrics:
        cells = [result.correlations[(m, o)].format() for o in result.outcomes]
        lines.append(f"| {DISENTANGLEMENT_METRICS.get(m, m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


HOW_TO_READ = """\
## How to read this

A *trial* is one policy: a vision backbone, a mode (`frozen`: the policy reads the backbone's
frozen features, DARLA; `finetune`: the encoder trains on with the policy; `pixels`: an
end-to-end CNN) and an RL algorithm, trained with one seed on the source domains and evaluated
zero-shot on every domain. Returns are the {agg} over runs x domains (rliable; IQM = the mean of
the middle 50% of all run x domain scores); brackets are {level:.0%} stratified-bootstrap CIs
({reps} resamples, runs resampled within each domain). The transfer ratio is mean target return /
mean source return over runs (paired bootstrap over runs); "above floor" is the same for the
return minus the random floor. P(X > Y) is rliable's probability of improvement: the chance a
run of X scores above a run of Y on a domain, averaged over domains (0.5: no difference).
Spearman's rho is scipy's; its CI resamples whole vision models, since the policies of one model
share its score. "n/a" marks an undefined estimate; the notes say why.
"""


def sweep_markdown(analysis: SweepAnalysis, title: str = "") -> str:
    cfg = analysis.config
    agg = cfg.aggregate.upper() if cfg.aggregate == "iqm" else cfg.aggregate
    lines = [
        f"# Backbone sweep{': ' + title if title else ''}",
        "",
        f"Env family **{analysis.env}**; {analysis.trials} trials, {len(analysis.backbones)} methods; "
        f"{agg} with {cfg.level:.0%} CIs, bootstrap seed {cfg.seed}.",
        "",
        f"## DARLA's Table 1 on {analysis.env}",
        "",
        table1_markdown(analysis.table1),
        "",
        "## Per backbone",
        "",
        backbone_markdown(analysis.backbones, agg),
        "",
        f"![per backbone]({FIGURES['backbones']})",
        "",
        f"## Probability of improvement on {cfg.poi_split} domains",
        "",
    ]
    if len(analysis.poi.names) > 1:
        lines += [poi_markdown(analysis.poi), "", f"![probability of improvement]({FIGURES['poi']})", ""]
    else:
        lines += ["One method only: nothing to compare.", ""]
    lines += ["## Disentanglement against transfer", ""]
    dis = analysis.disentanglement
    if dis.metrics:
        lines += [
            f"Spearman's rho between each vision model's score and its policies' transfer "
            f"({', '.join(dis.modes)} policies; one point per vision model x agent seed). "
            "DARLA's claim: more disentangled, better transfer (rho > 0).",
            "",
            correlation_markdown(dis),
            "",
            f"![disentanglement vs transfer]({FIGURES['disentanglement']})",
            "",
        ]
    else:
        lines += ["No trial carries disentanglement scores (run `darla evaluate` on the vision models).", ""]
    why = notes(analysis.backbones) + [
        f"{DISENTANGLEMENT_METRICS.get(m, m)} vs {o}: {c.reason}"
        for (m, o), c in dis.correlations.items()
        if c.reason
    ]
    if why:
        lines += ["## Notes", "", *(f"- {w}" for w in why), ""]
    lines += [
        HOW_TO_READ.format(agg=agg, level=cfg.level, reps=cfg.reps),
        "Per-domain numbers: `results.csv`.",
        "",
    ]
    return "\n".join(lines)


def analysis_json(analysis: SweepAnalysis) -> dict[str, Any]:
    """summary.json: the report's numbers for machines (NaN -> null, with reasons)."""

    def method(s: MethodSummary) -> dict[str, Any]:
        return {
            "label": s.label,
            "method": s.method,
            "vision": s.vision,
            "mode": s.mode,
            "algo": s.algo,
            "runs": s.runs,
            "splits": {k: v.as_dict() for k, v in s.splits.items()},
            "transfer_ratio": s.transfer_ratio.as_dict(),
            "above_floor_ratio": s.above_floor_ratio.as_dict(),
            "oracle_labels": list(s.oracle_labels),
        }

    t1 = analysis.table1
    return {
        "env": analysis.env,
        "trials": analysis.trials,
        "config": {k: getattr(analysis.config, k) for k in AnalysisConfig.__dataclass_fields__},
        "table1": [
            {"row": c.row.name, "algo": c.algo, "variants": [method(v) for v in c.variants]} for c in t1.cells
        ],
        "backbones": [method(s) for s in analysis.backbones],
        "probability_of_improvement": [
            {"x": a, "y": b, **est.as_dict()} for (a, b), est in sorted(analysis.poi.cells.items())
        ],
        "disentanglement_vs_transfer": [
            {"metric": m, "outcome": o, **c.as_dict()}
            for (m, o), c in analysis.disentanglement.correlations.items()
        ],
    }


@dataclass(frozen=True)
class SweepReport:
    """Where `write_sweep_report` put things."""

    folder: Path
    report: Path
    csv: Path
    summary: Path
    figures: dict[str, Path] = field(default_factory=dict)


def write_sweep_report(
    trials: Sequence[TrialResult], out: str | Path, cfg: AnalysisConfig | None = None, title: str = ""
) -> SweepReport:
    """Write results.csv, summary.json, the figures and report.md (last) into `out`."""
    analysis = analyse(trials, cfg)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "results.csv", results_csv(trials))
    atomic_write_json(folder / "summary.json", analysis_json(analysis))
    written = {"backbones": folder / FIGURES["backbones"]}
    figures.plot_backbones(analysis.backbones, written["backbones"], analysis.config.aggregate)
    if len(analysis.poi.names) > 1:
        written["poi"] = folder / FIGURES["poi"]
        figures.plot_poi(analysis.poi, written["poi"], analysis.config.poi_split)
    if analysis.disentanglement.metrics:
        written["disentanglement"] = folder / FIGURES["disentanglement"]
        figures.plot_disentanglement_vs_transfer(analysis.disentanglement, written["disentanglement"])
    atomic_write_text(folder / "report.md", sweep_markdown(analysis, title))
    logger.info("sweep report: %d trials, %d methods -> %s", len(trials), len(analysis.backbones), folder)
    return SweepReport(folder, folder / "report.md", folder / "results.csv", folder / "summary.json", written)
