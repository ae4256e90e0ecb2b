"""Resumable act checkpoints: the model's training state plus the envs' episodes, committed atomically.

A checkpoint is a folder `checkpoints/step-<N>/` (the algorithm's `TrainingState`, see
`darla.agents.persist`, plus each env's episode record, see `darla.envs.replay`) and the pointer
`checkpoint.json`, written last: a kill at any moment leaves either the previous checkpoint or the new
one, never a mix. Resuming restores the envs by replaying their episodes, then the model and its
RNGs; where that cannot be exact (an env that cannot be replayed, a replay that lands elsewhere) the
resume says so, and the stage records it in DONE.json.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvWrapper

from darla.artifacts import atomic_write_json, read_json
from darla.errors import ArtifactError

from .algos import AlgoSpec
from .persist import TrainingState, read_state, write_state

logger = logging.getLogger(__name__)

CHECKPOINT_META = "checkpoint.json"
CHECKPOINT_DIR = "checkpoints"


@dataclass
class Resume:
    """Where a resumed run starts and whether it continues exactly as the unbroken run would."""

    num_timesteps: int
    exact: bool
    notes: list[str] = field(default_factory=list)


def _monitor(venv: VecEnv) -> VecMonitor | None:
    layer: Any = venv
    while isinstance(layer, VecEnvWrapper):
        if isinstance(layer, VecMonitor):
            return layer
        layer = layer.venv
    return None


def capture_envs(venv: VecEnv, state: TrainingState) -> None:
    """Each env's episode record and the episode statistics VecMonitor is accumulating."""
    try:
        state.meta["envs"] = venv.env_method("replay_state")
    except AttributeError:
        state.meta["envs"] = [
            {"exact": False, "reason": "the env does not record its episodes"} for _ in range(venv.num_envs)
        ]
    monitor = _monitor(venv)
    if monitor is not None:
        state.arrays["monitor_returns"] = np.asarray(monitor.episode_returns)
        state.arrays["monitor_lengths"] = np.asarray(monitor.episode_lengths)
        state.meta["monitor_count"] = int(monitor.episode_count)


def restore_envs(venv: VecEnv, state: TrainingState) -> list[str]:
    """Replay every env's episode; returns what keeps the resume from being exact (empty: exact)."""
    records = state.meta.get("envs") or []
    if len(records) != venv.num_envs:
        return [f"the checkpoint holds {len(records)} env record(s), the run has {venv.num_envs} envs"]
    notes = []
    for i, record in enumerate(records):
        if not record.get("exact"):
            notes.append(f"env {i}: {record.get('reason', 'no exact record')}")
            continue
        reached = venv.env_method("replay_episode", record, indices=[i])[0]
        if reached != record["digest"]:
            notes.append(f"env {i}: its replayed episode ends on another frame than the recorded one")
    monitor = _monitor(venv)
    if monitor is not None and "monitor_returns" in state.arrays:
        monitor.episode_returns = state.arrays["monitor_returns"].copy()
        monitor.episode_lengths = state.arrays["monitor_lengths"].copy()
        monitor.episode_count = int(state.meta["monitor_count"])
    return notes


def save_checkpoint(
    spec: AlgoSpec, model: Any, venv: VecEnv, folder: Path, cfg_hash: str, resumes: list[dict[str, Any]]
) -> None:
    """Write the model's and the envs' state, then point `checkpoint.json` at it, then drop the old one."""
    state = spec.persistence.capture(model)
    capture_envs(venv, state)
    steps = int(model.num_timesteps)
    name = f"step-{steps}"
    target = folder / CHECKPOINT_DIR / name
    if target.exists():
        shutil.rmtree(target)
    write_state(target, state)
    atomic_write_json(
        folder / CHECKPOINT_META,
        {
            "config_hash": cfg_hash,
            "num_timesteps": steps,
            "state": f"{CHECKPOINT_DIR}/{name}",
            "exact": all(r.get("exact") for r in state.meta["envs"]),
            "resumes": resumes,
        },
    )
    for old in (folder / CHECKPOINT_DIR).iterdir():
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    logger.info("checkpoint at %d steps", steps)


def checkpoint_meta(folder: Path, cfg_hash: str) -> dict[str, Any] | None:
    """The pointer of a checkpoint made by this very config, else None (another config's is dropped)."""
    path = folder / CHECKPOINT_META
    if not path.is_file():
        return None
    try:
        meta = read_json(path)
    except ArtifactError:
        return None
    if not isinstance(meta, dict) or meta.get("config_hash") != cfg_hash or "state" not in meta:
        logger.info("discarding a checkpoint made by another config (or version) in %s", folder)
        return None
    return meta


def load_checkpoint(spec: AlgoSpec, model: Any, venv: VecEnv, folder: Path, meta: dict[str, Any]) -> Resume:
    """Restore the envs, then the model and its RNGs (last, so the envs' replay draws nothing from
    them); a state file that is not plain tensors, arrays and JSON is refused (ArtifactError)."""
    state = read_state(folder / str(meta["state"]))
    notes = restore_envs(venv, state)
    spec.persistence.restore(model, state)
    for note in notes:
        logger.warning("resume is not exact: %s", note)
    return Resume(int(meta["num_timesteps"]), exact=not notes, notes=notes)


def clear_checkpoint(folder: Path) -> None:
    (folder / CHECKPOINT_META).unlink(missing_ok=True)
    shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)
    for legacy in ("checkpoint.zip", "checkpoint_buffer.pkl"):  # written by darla before step 6
        (folder / legacy).unlink(missing_ok=True)
