"""The report's input: every policy's transfer results as a run of a method (its label, seed, oracle)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from darla.agents.readouts import readout_name
from darla.artifacts import SAMPLED_ROLE, ActArtifact, TransferResult
from darla.errors import ArtifactError


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

    def means(self, role: str = "agent") -> dict[str, float]:
        """The role's mean return per split (empty when the role was not evaluated)."""
        return dict(self.data["policies"].get(role, {}).get("split_means", {}))

    def split_mean(self, split: str, role: str = "agent") -> float:
        value = self.data["policies"].get(role, {}).get("split_means", {}).get(split)
        return float(value) if value is not None else math.nan


def oracle_label(data: dict[str, Any]) -> str | None:
    """'oracle beta_vae_dae/frozen/ppo': the target-trained agent a results file measures its policy
    against (a run can hold several: frozen policies against a frozen oracle, pixels against pixels),
    as results.json names it (results written before it did: from the oracle's act artifact)."""
    if not data["policies"].get("oracle"):
        return None
    path = data.get("oracle")
    if not path:
        return "oracle"
    if isinstance(data.get("oracle_policy"), dict):
        return "oracle " + method_label(data["oracle_policy"])
    try:
        oracle = ActArtifact.read(path, finished=False)
    except ArtifactError:
        return f"oracle ({path})"
    return "oracle " + method_label({"mode": oracle.mode, "algo": oracle.algo, "vision": oracle.vision_model})


def _custom_name(data: dict[str, Any]) -> str | None:
    """The `--name` the policy's act folder was given (so two policies of one model and mode, two
    betas say, are not merged into one method); results written before transfer recorded it take it
    from the act artifact."""
    if "act_name" in data:
        return data["act_name"] or None
    act = TransferResult(Path("."), data).act
    return act.name if act is not None else None


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
        name: {
            **entry,
            "agent": entry[SAMPLED_ROLE],
            "mean": entry[SAMPLED_ROLE]["mean"],
            "std": entry[SAMPLED_ROLE]["std"],
        }
        for name, entry in data["domains"].items()
        if SAMPLED_ROLE in entry
    }
    return {
        **data,
        "domains": domains,
        "policies": {**data["policies"], "agent": data["policies"][SAMPLED_ROLE]},
    }


def _with_features(data: dict[str, Any]) -> dict[str, Any]:
    """Results written before transfer recorded what the policy reads (`feature_layer`,
    `feature_head`) take it from their act artifact, so their seeds join the same method."""
    if "feature_layer" in data or "feature_head" in data or not data.get("act"):
        return data
    act = TransferResult(Path("."), data).act
    return {**data, **act.readout} if act is not None else data


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
        data = _with_features(TransferResult.read(path.parent).data)
        seed = int(data.get("agent_seed") or 0)
        oracle = oracle_label(data)
        runs.append(RunResult(method_label(data), seed, path.parent, data, oracle))
        if SAMPLED_ROLE in data["policies"]:
            sampled = method_label({**data, "deterministic": False})
            runs.append(RunResult(sampled, seed, path.parent, sampled_view(data), oracle))
    if not runs:
        raise ArtifactError(f"no transfer results under {root}")
    return runs
