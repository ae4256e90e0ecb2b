"""The transfer stage's results document (`results.json`): returns per domain, split means, ratios."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from darla.artifacts import SAMPLED_ROLE, SPLITS
from darla.pipelines.analysis.ratios import policy_metrics

if TYPE_CHECKING:
    from darla.envs import EnvFamily


def _stats(returns: Sequence[float]) -> dict[str, Any]:
    x = np.asarray(returns, dtype=np.float64)
    return {
        "returns": x.tolist(),
        "mean": float(x.mean()) if x.size else None,
        "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "episodes": int(x.size),
    }


def _difficulty(family: EnvFamily, domain: str) -> Any:
    try:
        spec = family.domain(domain)
    except Exception:  # the family may not resolve every name the same way; difficulty is optional
        return None
    value = getattr(spec, "difficulty", None)
    return value if isinstance(value, (int, float, str)) or value is None else str(value)


def build_results(
    family: EnvFamily,
    domains: Sequence[tuple[str, str]],
    evals: dict[str, dict[str, dict[str, Any]]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The results.json document: per domain returns and stats, per split and per policy summaries."""
    per_domain: dict[str, Any] = {}
    for domain, split in domains:
        entry: dict[str, Any] = {"split": split, "difficulty": _difficulty(family, domain)}
        for role, by_domain in evals.items():
            if domain in by_domain:
                rec = by_domain[domain]
                stats = _stats(rec["returns"])
                stats["mean_length"] = float(np.mean(rec["lengths"])) if rec["lengths"] else None
                entry[role] = stats
        if "agent" in entry:
            entry["mean"] = entry["agent"]["mean"]
            entry["std"] = entry["agent"]["std"]
        entry["random_mean"] = entry["random"]["mean"] if "random" in entry else None
        entry["oracle_mean"] = entry["oracle"]["mean"] if "oracle" in entry else None
        per_domain[domain] = entry

    split_names = [s for s in SPLITS if any(sp == s for _, sp in domains)]
    split_means: dict[str, dict[str, float]] = {}
    for role, by_domain in evals.items():
        means: dict[str, float] = {}
        for split in split_names:
            vals = [np.mean(by_domain[d]["returns"]) for d, s in domains if s == split and d in by_domain]
            if vals:
                means[split] = float(np.mean(vals))
        split_means[role] = means
    floor = split_means.get("random", {})
    oracle = split_means.get("oracle", {})
    policies: dict[str, Any] = {}
    for role, means in split_means.items():
        entry = {"split_means": means}
        entry.update(policy_metrics(means, floor, oracle if role != "oracle" else {}))
        policies[role] = entry
    splits = {
        split: {
            "domains": [d for d, s in domains if s == split],
            "mean": split_means.get("agent", {}).get(split),
            "random_mean": floor.get(split),
            "oracle_mean": oracle.get(split),
        }
        for split in split_names
    }
    return {**meta, "domains": per_domain, "splits": splits, "policies": policies}


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one results.json (what the CLI prints)."""
    policies = results["policies"]
    agent = policies["agent"]
    return {
        "vision": results.get("vision"),
        "mode": results.get("mode"),
        "algo": results.get("algo"),
        "seed": results.get("agent_seed"),
        "returns": agent["split_means"],
        "random": policies.get("random", {}).get("split_means"),
        "oracle": policies.get("oracle", {}).get("split_means"),
        "sampled": policies.get(SAMPLED_ROLE, {}).get("split_means"),
        "sampled_transfer_ratio": policies.get(SAMPLED_ROLE, {}).get("transfer_ratio"),
        "transfer_ratio": agent.get("transfer_ratio"),
        "ood_transfer_ratio": agent.get("ood_transfer_ratio"),
        "gap": agent.get("gap"),
        "oracle_ratio": agent.get("oracle_ratio"),
    }
