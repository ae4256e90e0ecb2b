"""The run report: what transferred, with honest uncertainty.

`darla report --run runs/quick` reads every `<run>/transfer/**/results.json` and writes
`<run>/report/`: `report.md` (tables and how to read them), `transfer.png` (bar plot with 95%
CIs, random floor and oracle), `results.csv` (one row per method x domain x seed) and
`summary.json` (the same numbers for machines). Estimates are rliable's: across seeds, the mean
(or the interquartile mean with >= 4 seeds) with its stratified-bootstrap CI over seeds and
domains, seeded; ratios take a paired bootstrap over seeds (rliable has none).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from darla import locks
from darla.artifacts import SPLITS, atomic_write_json, atomic_write_text, read_json
from darla.cli import Command
from darla.errors import ConfigError
from darla.pipelines.analysis.estimate import Interval
from darla.pipelines.analysis.report_plot import plot
from darla.pipelines.analysis.report_runs import load_run
from darla.pipelines.analysis.report_summary import IQM_MIN_RUNS, _csv_text, csv_rows, summarise, summary_json
from darla.pipelines.analysis.report_text import markdown, render_table
from darla.pipelines.analysis.report_trials import write_sweep_section

logger = logging.getLogger(__name__)


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


def write_report(cfg: ReportConfig | str | Path, folders: Sequence[Path] | None = None) -> Path:
    """Write <run>/report/{report.md, transfer.png, results.csv, summary.json} and the sweep analysis
    (sweep/: DARLA's Table 1, backbones, probability of improvement, disentanglement against
    transfer; tensorboard HParams in <run>/tb/hparams/); returns the folder.

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
    sweep = write_sweep_section(runs, run_dir, out, reps=cfg.reps, level=cfg.level, seed=cfg.seed)
    atomic_write_text(out / "report.md", markdown(summary, runs, run_dir, cfg) + "\n" + sweep)
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
                **{s: Interval(**_none_to_nan(row["splits"][s])).format() for s in SPLITS},
                "transfer_ratio": Interval(**_none_to_nan(row["transfer_ratio"])).format(),
                "to_oracle": Interval(**_none_to_nan(row["oracle_ratio"])).format(),
            }
        )
    return rows


def _none_to_nan(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (math.nan if v is None and k in ("point", "low", "high") else v) for k, v in d.items()}


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
