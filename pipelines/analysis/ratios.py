"""The transfer ratios, defined once: a policy's own (transfer's results.json) and across seeds
with CIs (the report) both take their numerators and denominators from `ratio_terms`.

The *normalised* ratios measure return above the random floor, so a ratio is not flattered by the
reward a random walk collects anyway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from darla.pipelines.analysis.trials import safe_ratio

HELD_OUT_SPLITS = ("target", "ood")


def prefix(split: str) -> str:
    """Key prefix of a held-out split's ratios: '' for target, 'ood_' for ood."""
    return "" if split == "target" else f"{split}_"


def ratio_terms(
    split: str,
    agent: Mapping[str, float],
    floor: Mapping[str, float],
    oracle: Mapping[str, float],
) -> dict[str, tuple[float, float]]:
    """(numerator, denominator) of every ratio of `split`, from split means (NaN where missing)."""

    def get(means: Mapping[str, float], key: str) -> float:
        value = means.get(key)
        return math.nan if value is None else float(value)

    value, source = get(agent, split), get(agent, "source")
    low, low_source, top = get(floor, split), get(floor, "source"), get(oracle, split)
    p = prefix(split)
    return {
        f"{p}transfer_ratio": (value, source),
        f"{p}normalized_transfer_ratio": (value - low, source - low_source),
        f"{p}oracle_ratio": (value, top),
        f"{p}normalized_oracle_ratio": (value - low, top - low),
    }


def gap(split: str, agent: Mapping[str, float]) -> float:
    """Procgen's generalisation gap: source return minus the split's."""
    source, value = agent.get("source"), agent.get(split)
    return math.nan if source is None or value is None else float(source) - float(value)


def policy_metrics(
    agent: Mapping[str, float], floor: Mapping[str, float], oracle: Mapping[str, float]
) -> dict[str, float | None]:
    """Every ratio and gap of one policy for target and ood (None where undefined)."""
    out: dict[str, float | None] = {}
    for split in HELD_OUT_SPLITS:
        terms = ratio_terms(split, agent, floor, oracle)
        p = prefix(split)
        out[f"{p}transfer_ratio"] = _none(safe_ratio(*terms[f"{p}transfer_ratio"]))
        out[f"{p}gap"] = _none(gap(split, agent))
        for name in (f"{p}normalized_transfer_ratio", f"{p}oracle_ratio", f"{p}normalized_oracle_ratio"):
            out[name] = _none(safe_ratio(*terms[name]))
    return out


def _none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
