"""A sweep in tensorboard's HParams view: each trial's hyperparameters and final metrics.

    write_trial_hparams(trial, Path("runs/sweep/tb/beta_vae_dae-frozen-ppo-s0"))
    tensorboard --logdir runs/sweep/tb      # HParams tab: one row per trial

Writes the three summaries of `torch.utils.tensorboard.SummaryWriter.add_hparams` (experiment,
session start with the hparams, session end) and one scalar per metric, into the given folder
itself: `add_hparams` would nest them in a timestamped subfolder, so writing a trial twice would
show it twice.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from darla.errors import ConfigError
from darla.pipelines.analysis.trials import SPLITS, TrialResult

logger = logging.getLogger(__name__)

HParam = int | float | str

EVENTS = "events.out.tfevents."
"""Prefix of tensorboard's event files."""


def _hparam(value: Any) -> HParam | None:
    """What tensorboard takes (int, float, str); sequences as JSON text, None dropped. Booleans
    become 'True'/'False': torch's `hparams` would write them as the numbers 1.0/0.0."""
    if isinstance(value, bool):
        return str(value)
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), default=str)
    return str(value)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, HParam]:
    """{'see': {'beta': 4}} -> {'see.beta': 4}; None values left out (tensorboard has no null)."""
    out: dict[str, HParam] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
            continue
        converted = _hparam(value)
        if converted is not None:
            out[name] = converted
    return out


def trial_hparams(trial: TrialResult) -> dict[str, HParam]:
    """What made the trial: backbone, mode, algorithm, seeds, readout, vision and policy parameters."""
    return flatten(
        {
            "method": trial.method,
            "env": trial.env,
            "vision": trial.vision,
            "mode": trial.mode,
            "algo": trial.algo,
            "seed": trial.seed,
            "see_seed": trial.see_seed,
            "readout": trial.readout or "latent",
            "see": dict(trial.see_params),
            "act": dict(trial.act_params),
        }
    )


def trial_metrics(trial: TrialResult) -> dict[str, float]:
    """Final numbers: return per split (and floor, oracle), transfer ratios, disentanglement scores.

    Undefined values (NaN) are left out: the HParams table shows them blank.
    """
    metrics: dict[str, float] = {}
    for split in SPLITS:
        if trial.domains(split):
            metrics[f"final/{split}_return"] = trial.split_mean(split)
            metrics[f"final/{split}_random"] = trial.split_mean(split, "random")
            metrics[f"final/{split}_oracle"] = trial.split_mean(split, "oracle")
    metrics["final/transfer_ratio"] = trial.transfer_ratio
    metrics["final/above_floor_ratio"] = trial.above_floor_ratio
    for key, value in (trial.disentanglement or {}).items():
        metrics[f"disentanglement/{key}"] = float(value)
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


def write_hparams(folder: str | Path, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> Path:
    """Write one session (hparams + final metrics) into `folder`, the trial's own folder (event
    files already there are replaced); returns the event file."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    flat = flatten(hparams)
    bad = {k: v for k, v in metrics.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
    if bad:
        raise ConfigError(f"tensorboard metrics must be numbers, got {bad}")
    if not metrics:
        raise ConfigError("tensorboard HParams needs at least one metric to show against the hparams")
    finite = {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
    if len(finite) < len(metrics):
        logger.info("tensorboard: left out undefined metrics %s", sorted(set(metrics) - set(finite)))
    experiment, start, end = hparams_summaries(flat, finite)
    folder = Path(folder)
    for old in folder.glob(f"{EVENTS}*"):  # a rewritten trial replaces its session, not adds one
        old.unlink()
    with SummaryWriter(log_dir=str(folder)) as writer:
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)
        for tag, value in finite.items():
            writer.add_scalar(tag, value)
    (path,) = folder.glob(f"{EVENTS}*")
    return path


def write_trial_hparams(trial: TrialResult, folder: str | Path) -> Path:
    """One trial's hyperparameters and final metrics, for tensorboard's HParams view."""
    return write_hparams(folder, trial_hparams(trial), trial_metrics(trial))
