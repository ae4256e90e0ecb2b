"""A run's policies as the sweep analysis takes them (`TrialResult`s), and the sweep part of the
report: DARLA's Table 1, per-backbone IQMs with rliable CIs, probability of improvement,
disentanglement against transfer, and every trial's hyperparameters for tensorboard's HParams view."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from darla.artifacts import TransferResult
from darla.pipelines.analysis.config import AnalysisConfig
from darla.pipelines.analysis.evaluate import metrics_dir, read_scores
from darla.pipelines.analysis.report_runs import RunResult
from darla.pipelines.analysis.sweep import write_sweep_report
from darla.pipelines.analysis.tensorboard import write_trial_hparams
from darla.pipelines.analysis.trials import TrialResult

logger = logging.getLogger(__name__)

SWEEP = "sweep"
"""The report's subfolder of the sweep analysis (its own results.csv, summary.json and figures)."""


def _means(data: dict[str, Any], role: str) -> dict[str, float]:
    out = {}
    for domain, entry in data["domains"].items():
        stats = entry.get(role)
        if stats and stats.get("mean") is not None:
            out[domain] = float(stats["mean"])
    return out


def trial_of(run: RunResult, run_dir: Path) -> TrialResult:
    """One policy's results with what made it: its vision model (parameters, seed, disentanglement
    scores when the run measured them) and its hyperparameters, read from the artifacts."""
    data = run.data
    act = TransferResult(run.path, data).act
    see = act.see if act is not None else None
    scores = read_scores(metrics_dir(run_dir, see.name)) if see is not None else None
    readout = "+".join(v for v in (data.get("feature_layer"), data.get("feature_head")) if v and v != "mlp")
    return TrialResult(
        method=run.method,
        vision=str(data.get("vision") or "pixels"),
        mode=str(data.get("mode") or "pixels"),
        algo=str(data.get("algo") or ""),
        seed=run.seed,
        env=str(data.get("env") or ""),
        returns=_means(data, "agent"),
        splits={d: str(e.get("split")) for d, e in data["domains"].items()},
        random=_means(data, "random"),
        oracle=_means(data, "oracle"),
        oracle_label=run.oracle_name,
        see_seed=int(see.raw.get("seed") or 0) if see is not None else None,
        see_params=see.params if see is not None else {},
        act_params=dict(act.raw.get("hparams") or {}) if act is not None else {},
        readout=readout,
        disentanglement=scores,
        episodes=data.get("episodes"),
        difficulty={d: e.get("difficulty") for d, e in data["domains"].items()},
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+-]+", "_", text).strip("_")


def write_sweep_section(
    runs: list[RunResult], run_dir: Path, out: Path, *, reps: int, level: float, seed: int
) -> str:
    """Write the sweep analysis into `<out>/sweep/` and every trial's HParams session into
    `<run>/tb/hparams/`; returns its markdown for report.md (headings one level down, figures linked
    into the subfolder)."""
    trials = [trial_of(r, run_dir) for r in runs]
    cfg = AnalysisConfig(reps=reps, level=level, seed=seed)
    written = write_sweep_report(trials, out / SWEEP, cfg)
    for trial in trials:
        write_trial_hparams(trial, run_dir / "tb" / "hparams" / _slug(trial.method) / f"s{trial.seed}")
    text = written.report.read_text()
    text = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.M)
    text = re.sub(r"\]\((?!https?:)([^)]+\.(?:png|csv|json))\)", rf"]({SWEEP}/\1)", text)
    return text.replace("`results.csv`", f"`{SWEEP}/results.csv`")
