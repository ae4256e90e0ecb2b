"""The report as text: report.md (tables and how to read them) and the fixed-width headline table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from darla.artifacts import SPLITS, read_json
from darla.pipelines.analysis.report_runs import RunResult

if TYPE_CHECKING:
    from darla.pipelines.analysis.report import ReportConfig


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


def render_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of headline rows."""
    if not rows:
        return "(no results)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)
