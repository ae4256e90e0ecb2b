"""What one trained policy scored, as plain typed data: the input of every analysis here.

A *trial* is one policy (one vision backbone, mode, algorithm and seed) evaluated zero-shot on
every domain of an env family. The caller (`darla report` / `darla compare`) builds
`TrialResult`s from the transfer artifacts; nothing in this package reads run folders, so every
statistic can be tested on numbers written by hand.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from darla.errors import ConfigError
from darla.registry import check_choice

SPLITS = ("source", "target", "ood")
"""The domain splits, in table order (the same as darla.envs.domains.SPLITS; a test checks it)."""

RATIO_EPS = 1e-8
"""A source return closer to zero than this makes a transfer ratio undefined (NaN)."""


def safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when either is not finite or the denominator is ~0."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or abs(denominator) < RATIO_EPS:
        return math.nan
    return numerator / denominator


@dataclass(frozen=True)
class TrialResult:
    """One policy's zero-shot results, with what made it (backbone, its parameters, seeds)."""

    method: str
    """table label, e.g. 'beta_vae_dae/frozen/ppo' or 'pixels/ppo' (trials of one method are its seeds)"""
    vision: str
    """vision backbone (zoo model name); 'pixels' for the end-to-end baseline"""
    mode: str
    """'frozen' (policy on frozen features, DARLA), 'finetune' (encoder trained on), 'pixels'"""
    algo: str
    """RL algorithm (ppo, a2c, dqn, mfec)"""
    seed: int
    """the agent's seed"""
    env: str
    """env family name"""
    returns: Mapping[str, float]
    """domain -> the agent's mean episode return there"""
    splits: Mapping[str, str]
    """domain -> 'source', 'target' or 'ood'"""
    random: Mapping[str, float] = field(default_factory=dict)
    """domain -> a uniform-random policy's mean return on the same episodes (the floor)"""
    oracle: Mapping[str, float] = field(default_factory=dict)
    """domain -> mean return of the agent trained on the target domains itself (the ceiling)"""
    oracle_label: str | None = None
    """which oracle that is (several can serve one sweep: frozen vs pixels)"""
    see_seed: int | None = None
    """seed of the vision model (None for pixels); with `vision` and `see_params` it names the model"""
    see_params: Mapping[str, Any] = field(default_factory=dict)
    """the vision model's hyperparameters (e.g. {'beta': 1.0}); Table 1's DARLA_ENT needs 'beta'"""
    act_params: Mapping[str, Any] = field(default_factory=dict)
    """the policy's hyperparameters (for tensorboard's HParams view)"""
    readout: str = ""
    """what a frozen policy reads: '' = the latent means (DARLA), else a layer readout like 'conv1+cnn'"""
    disentanglement: Mapping[str, float] | None = None
    """the vision model's scores (darla.vision.metrics keys: 'mig', 'dci.disentanglement', ...)"""
    episodes: int | None = None
    """evaluation episodes per domain"""
    difficulty: Mapping[str, Any] = field(default_factory=dict)
    """domain -> the env family's difficulty level (optional)"""

    def __post_init__(self) -> None:
        for domain, split in self.splits.items():
            check_choice(f"split of domain {domain!r} in trial {self.method} s{self.seed}", split, SPLITS)
        for name, table in (("returns", self.returns), ("random", self.random), ("oracle", self.oracle)):
            unknown = sorted(set(table) - set(self.splits))
            if unknown:
                raise ConfigError(
                    f"trial {self.method} s{self.seed}: {name} has domains without a split: {unknown}; "
                    f"known domains: {sorted(self.splits)}"
                )

    def domains(self, split: str) -> list[str]:
        """This trial's domains of one split, in the order given."""
        return [d for d, s in self.splits.items() if s == split]

    def split_mean(self, split: str, role: str = "agent") -> float:
        """Mean over the split's domains of the per-domain mean return (NaN if any is missing)."""
        check_choice("role", role, tuple(ROLES))
        table = ROLES[role](self)
        values = [table.get(d, math.nan) for d in self.domains(split)]
        return float(np.mean(values)) if values else math.nan

    @property
    def transfer_ratio(self) -> float:
        """Target return / source return (1: nothing lost in transfer)."""
        return safe_ratio(self.split_mean("target"), self.split_mean("source"))

    @property
    def above_floor_ratio(self) -> float:
        """The same ratio for the return above the random floor (rewards can be negative)."""
        return safe_ratio(
            self.split_mean("target") - self.split_mean("target", "random"),
            self.split_mean("source") - self.split_mean("source", "random"),
        )

    @property
    def see_model(self) -> str:
        """Names the trained vision model: trials sharing it share its disentanglement scores."""
        params = ",".join(f"{k}={v}" for k, v in sorted(self.see_params.items()))
        return f"{self.vision}[{params}]/s{self.see_seed}"


ROLES: dict[str, Callable[[TrialResult], Mapping[str, float]]] = {
    "agent": lambda t: t.returns,
    "random": lambda t: t.random,
    "oracle": lambda t: t.oracle,
}
"""Whose returns a score table reads: the trained policy, the random floor, the oracle."""


@dataclass(frozen=True)
class ScoreMatrix:
    """Scores of one method's runs on the domains of one split, as rliable wants them."""

    values: np.ndarray
    """(runs, domains) mean returns; only runs with a finite score on every domain"""
    runs: tuple[str, ...]
    """one label per row, e.g. 's3' (the agent seed)"""
    domains: tuple[str, ...]
    dropped: tuple[str, ...] = ()
    """runs left out and why (a missing domain, a NaN return)"""


def split_domains(trials: Iterable[TrialResult], split: str) -> tuple[str, ...]:
    """Every domain of a split over all trials, in first-seen order."""
    check_choice("split", split, SPLITS)
    seen: dict[str, None] = {}
    for t in sorted(trials, key=trial_key):
        for d in t.domains(split):
            seen.setdefault(d, None)
    return tuple(seen)


def split_scores(
    trials: Sequence[TrialResult],
    split: str,
    role: str = "agent",
    domains: Sequence[str] | None = None,
) -> ScoreMatrix:
    """The (runs, domains) matrix of one split (domains: the trials' own unless given)."""
    check_choice("role", role, tuple(ROLES))
    cols = tuple(domains) if domains is not None else split_domains(trials, split)
    rows: list[list[float]] = []
    labels: list[str] = []
    dropped: list[str] = []
    for t in sorted(trials, key=trial_key):
        table = ROLES[role](t)
        values = [float(table.get(d, math.nan)) for d in cols]
        label = f"s{t.seed}" if t.see_seed is None else f"s{t.seed}/see s{t.see_seed}"
        bad = [d for d, v in zip(cols, values) if not math.isfinite(v)]
        if bad:
            dropped.append(f"{t.method} {label}: no finite {role} return on {', '.join(bad)}")
            continue
        rows.append(values)
        labels.append(label)
    matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(cols))
    return ScoreMatrix(matrix, tuple(labels), cols, tuple(dropped))


def trial_key(t: TrialResult) -> tuple[str, int, int, str]:
    """A canonical order of trials, so no estimate depends on the order they were listed in."""
    return (t.method, t.seed, -1 if t.see_seed is None else t.see_seed, t.see_model)


def group_by(
    trials: Iterable[TrialResult], key: Callable[[TrialResult], str]
) -> dict[str, list[TrialResult]]:
    """Trials grouped by a key, groups and their trials in sorted order."""
    groups: dict[str, list[TrialResult]] = {}
    for t in sorted(trials, key=trial_key):
        groups.setdefault(key(t), []).append(t)
    return dict(sorted(groups.items()))


# ----------------------------------------------------------------------------- results.csv
CSV_FIELDS = (
    "method",
    "vision",
    "mode",
    "algo",
    "seed",
    "see_seed",
    "readout",
    "env",
    "domain",
    "split",
    "difficulty",
    "episodes",
    "mean_return",
    "random_mean",
    "oracle_mean",
    "oracle_label",
    "source_return",
    "target_return",
    "transfer_ratio",
    "above_floor_ratio",
)
"""Fixed columns of results.csv; then `see.<param>` columns, then one per disentanglement score."""


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def results_csv(trials: Sequence[TrialResult]) -> str:
    """results.csv: one row per trial x domain (empty cell = not measured or undefined)."""
    see_keys = sorted({k for t in trials for k in t.see_params})
    metric_keys = sorted({k for t in trials for k in (t.disentanglement or {})})
    clash = set(metric_keys) & set(CSV_FIELDS)
    if clash:
        raise ConfigError(f"disentanglement score names clash with results.csv columns: {sorted(clash)}")
    fields = [*CSV_FIELDS, *(f"see.{k}" for k in see_keys), *metric_keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    order = {s: i for i, s in enumerate(SPLITS)}
    for t in sorted(trials, key=trial_key):
        common = {
            "method": t.method,
            "vision": t.vision,
            "mode": t.mode,
            "algo": t.algo,
            "seed": t.seed,
            "see_seed": t.see_seed,
            "readout": t.readout,
            "env": t.env,
            "episodes": t.episodes,
            "oracle_label": t.oracle_label,
            "source_return": t.split_mean("source"),
            "target_return": t.split_mean("target"),
            "transfer_ratio": t.transfer_ratio,
            "above_floor_ratio": t.above_floor_ratio,
            **{f"see.{k}": t.see_params.get(k) for k in see_keys},
            **{k: (t.disentanglement or {}).get(k) for k in metric_keys},
        }
        for domain in sorted(t.splits, key=lambda d: order[t.splits[d]]):
            row = {
                **common,
                "domain": domain,
                "split": t.splits[domain],
                "difficulty": t.difficulty.get(domain),
                "mean_return": t.returns.get(domain),
                "random_mean": t.random.get(domain),
                "oracle_mean": t.oracle.get(domain),
            }
            writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()
