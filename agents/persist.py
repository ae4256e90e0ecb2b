"""Policy files and training state that load without executing anything from the file.

SB3's `load()` runs `cloudpickle.loads` on every serialised entry of a policy zip, so a crafted
`policy.zip` can run code. darla never calls it: a policy is rebuilt from darla's own config (algo,
mode, hyperparameters) and the spaces recorded as JSON in the file, and only tensors are read from
it (`torch.load(weights_only=True)`); arrays come from `.npz` with `allow_pickle=False`. A policy
file keeps SB3's zip layout (so a user who trusts a file can still open it with SB3) plus a
`darla_policy.json` member naming what darla needs.

The training state (`TrainingState`) is what decides the rest of a run: parameters and optimiser
state, the RNGs of torch, NumPy, Python and the action space, SB3's counters, the last observations,
the replay buffer of off-policy algorithms. Captured at a rollout boundary (on-policy algorithms'
rollout buffer is empty there) it makes a resumed run bit-identical to an unbroken one.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import zipfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from darla.artifacts import atomic_save
from darla.errors import ArtifactError

POLICY_META = "darla_policy.json"
POLICY_FORMAT = "darla.policy/1"
POLICY_PARAMS = "policy.pth"


# ----------------------------------------------------------------------------- safe readers
def load_tensors(data: bytes | Path, where: str) -> Any:
    """Tensors (and plain containers of them) from torch bytes or a file, refusing anything else:
    `weights_only=True` never unpickles an object that could run code."""
    try:
        source: Any = io.BytesIO(data) if isinstance(data, bytes) else str(data)
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(
            f"refusing {where}: it holds more than tensors (a pickled object that could run code): {first}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"cannot read {where}: corrupt or not a torch file ({first})") from None


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an `.npz`, refusing object arrays (they would be unpickled)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: np.asarray(data[name]) for name in data.files}
    except ValueError as exc:
        raise ArtifactError(f"refusing {path}: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ArtifactError(f"cannot read {path}: corrupt or not an .npz file ({exc})") from None


def read_member(path: Path, name: str) -> bytes:
    """One member of a zip file; a missing file, a garbage zip or a missing member is a clear error."""
    if not path.is_file():
        raise ArtifactError(f"policy file not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            if name not in zf.namelist():
                raise ArtifactError(
                    f"{path} holds no {name}: not a darla policy file (written by another tool or version?)"
                )
            return zf.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ArtifactError(f"cannot read {path}: truncated or not a zip file ({exc})") from None


# ----------------------------------------------------------------------------- spaces as JSON
def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, spaces.Box):
        low, high = np.asarray(space.low), np.asarray(space.high)
        uniform = bool((low == low.flat[0]).all() and (high == high.flat[0]).all())
        if not uniform:
            raise ArtifactError(f"cannot record a Box space with per-element bounds: {space}")
        return {
            "type": "Box",
            "shape": [int(s) for s in space.shape],
            "dtype": str(space.dtype),
            "low": float(low.flat[0]),
            "high": float(high.flat[0]),
        }
    raise ArtifactError(f"cannot record observation/action space {space}")


def space_from_dict(data: dict[str, Any]) -> spaces.Space:
    kind = data.get("type")
    if kind == "Discrete":
        return spaces.Discrete(int(data["n"]))
    if kind == "Box":
        dtype = np.dtype(str(data["dtype"]))
        low, high = float(data["low"]), float(data["high"])
        if np.issubdtype(dtype, np.integer):
            return spaces.Box(low=int(low), high=int(high), shape=tuple(data["shape"]), dtype=dtype)
        return spaces.Box(low=low, high=high, shape=tuple(data["shape"]), dtype=dtype)
    raise ArtifactError(f"unknown space type {kind!r} in a policy file")


# ----------------------------------------------------------------------------- policy files
def save_sb3_policy(model: Any, path: Path, meta: dict[str, Any]) -> None:
    """SB3's zip (written by SB3) plus `darla_policy.json` (spaces, algo, mode, steps), atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            model.save(fh)
        record = {
            "format": POLICY_FORMAT,
            **meta,
            "observation_space": space_to_dict(model.observation_space),
            "action_space": space_to_dict(model.action_space),
            "num_timesteps": int(model.num_timesteps),
        }
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(POLICY_META, json.dumps(record, indent=2))

    atomic_save(path, write)


def _json_member(path: Path, name: str) -> Any:
    try:
        return json.loads(read_member(path, name).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: corrupt {name} ({exc})") from None


def _has_member(path: Path, name: str) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return name in zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ArtifactError(f"cannot read {path}: truncated or not a zip file ({exc})") from None


def legacy_record(path: Path) -> dict[str, Any]:
    """The spaces of a policy file written before darla recorded them (SB3's zip alone), from the
    plain fields of SB3's `data` JSON: shape, dtype, n. Its `:serialized:` entries are never read."""
    data = _json_member(path, "data")
    try:
        obs, act = data["observation_space"], data["action_space"]
        shape, dtype = [int(v) for v in obs["_shape"]], str(obs["dtype"])
        n = int(act["n"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read its spaces ({exc}); re-run act to rewrite it") from None
    bounds = {"uint8": (0.0, 255.0), "float32": (-np.inf, np.inf)}  # frames, or frozen features
    if dtype not in bounds:
        raise ArtifactError(f"{path}: observations of dtype {dtype!r} are not darla's; re-run act")
    low, high = bounds[dtype]
    return {
        "format": POLICY_FORMAT,
        "observation_space": {"type": "Box", "shape": shape, "dtype": dtype, "low": low, "high": high},
        "action_space": {"type": "Discrete", "n": n},
        "legacy": True,
    }


def read_sb3_policy(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(darla's record, the policy's state dict) of a policy file; nothing else in it is read."""
    meta = _json_member(path, POLICY_META) if _has_member(path, POLICY_META) else legacy_record(path)
    if not isinstance(meta, dict) or meta.get("format") != POLICY_FORMAT:
        raise ArtifactError(f"{path}: not a {POLICY_FORMAT} policy file")
    state = load_tensors(read_member(path, POLICY_PARAMS), f"{path}:{POLICY_PARAMS}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{path}:{POLICY_PARAMS} is not a state dict of tensors")
    return meta, state


# ----------------------------------------------------------------------------- training state
@dataclass
class TrainingState:
    """Everything that decides the rest of a training run, as JSON (`meta`), tensors and arrays."""

    meta: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    buffer: dict[str, np.ndarray] = field(default_factory=dict)
    """an off-policy replay buffer's filled rows (kept in a file of its own: it can be large)"""


def capture_rngs(state: TrainingState, action_space: spaces.Space | None) -> None:
    """torch's, NumPy's global, Python's and the action space's generators."""
    state.tensors["torch_rng"] = torch.get_rng_state()
    if torch.cuda.is_available():
        state.tensors["cuda_rng"] = torch.cuda.get_rng_state_all()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state.arrays["numpy_rng_keys"] = np.asarray(keys)
    state.meta["numpy_rng"] = {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached": cached}
    version, internal, gauss = random.getstate()
    state.meta["python_rng"] = {"version": version, "state": list(internal), "gauss": gauss}
    rng = getattr(action_space, "_np_random", None) if action_space is not None else None
    state.meta["action_space_rng"] = dict(rng.bit_generator.state) if rng is not None else None


def restore_rngs(state: TrainingState, action_space: spaces.Space | None) -> None:
    torch.set_rng_state(state.tensors["torch_rng"])
    if "cuda_rng" in state.tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state.tensors["cuda_rng"])
    np_rng = state.meta["numpy_rng"]
    np.random.set_state(
        (np_rng["kind"], state.arrays["numpy_rng_keys"], np_rng["pos"], np_rng["has_gauss"], np_rng["cached"])
    )
    py = state.meta["python_rng"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if action_space is not None and state.meta.get("action_space_rng") is not None:
        action_space.np_random.bit_generator.state = state.meta["action_space_rng"]


SB3_COUNTERS = ("num_timesteps", "_n_updates", "_episode_num", "_current_progress_remaining", "_n_calls")
SB3_SCALARS = ("exploration_rate",)
BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def capture_sb3(model: Any) -> TrainingState:
    """The training state of an SB3 algorithm between two rollouts."""
    state = TrainingState()
    state.tensors["params"] = model.get_parameters()
    for name in (*SB3_COUNTERS, *SB3_SCALARS):
        if hasattr(model, name):
            state.meta[name] = getattr(model, name)
    state.meta["ep_info_buffer"] = list(model.ep_info_buffer or [])
    state.meta["ep_success_buffer"] = [bool(x) for x in (model.ep_success_buffer or [])]
    state.arrays["last_obs"] = np.asarray(model._last_obs)
    if getattr(model, "_last_episode_starts", None) is not None:
        state.arrays["last_episode_starts"] = np.asarray(model._last_episode_starts)
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None:
        rows = buffer.buffer_size if buffer.full else buffer.pos
        state.meta["replay_buffer"] = {"pos": int(buffer.pos), "full": bool(buffer.full), "rows": int(rows)}
        for name in BUFFER_ARRAYS:
            value = getattr(buffer, name, None)
            if isinstance(value, np.ndarray):
                state.buffer[name] = value[:rows]
    capture_rngs(state, model.action_space)
    return state


def restore_sb3(model: Any, state: TrainingState) -> None:
    """Put a captured state into a freshly built model of the same config; RNGs last, so nothing
    drawn while restoring shifts them."""
    model.set_parameters(state.tensors["params"], exact_match=True, device=model.device)
    for name in (*SB3_COUNTERS, *SB3_SCALARS):
        if name in state.meta:
            setattr(model, name, state.meta[name])
    window = model._stats_window_size
    model.ep_info_buffer = deque(state.meta.get("ep_info_buffer", []), maxlen=window)
    model.ep_success_buffer = deque(state.meta.get("ep_success_buffer", []), maxlen=window)
    model._last_obs = state.arrays["last_obs"]
    if "last_episode_starts" in state.arrays:
        model._last_episode_starts = state.arrays["last_episode_starts"]
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None:
        info = state.meta.get("replay_buffer")
        if info is None:
            raise ArtifactError("the checkpoint holds no replay buffer for an off-policy algorithm")
        rows = int(info["rows"])
        for name, value in state.buffer.items():
            target = getattr(buffer, name, None)
            if (
                not isinstance(target, np.ndarray)
                or target.shape[1:] != value.shape[1:]
                or rows > len(target)
            ):
                raise ArtifactError(f"the checkpoint's replay buffer {name!r} does not fit this model")
            target[:rows] = value
        buffer.pos, buffer.full = int(info["pos"]), bool(info["full"])
    restore_rngs(state, model.action_space)


# ----------------------------------------------------------------------------- checkpoint folders
def write_state(folder: Path, state: TrainingState) -> None:
    """`state.json`, `tensors.pth`, `arrays.npz` (and `buffer.npz`) in a new folder, each atomically."""
    folder.mkdir(parents=True, exist_ok=True)

    def npz(arrays: dict[str, np.ndarray]) -> Callable[[Path], None]:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]

        return write

    if state.buffer:
        atomic_save(folder / "buffer.npz", npz(state.buffer))
    atomic_save(folder / "arrays.npz", npz(state.arrays))
    atomic_save(folder / "tensors.pth", lambda tmp: torch.save(state.tensors, tmp))
    atomic_save(folder / "state.json", lambda tmp: _write_text(tmp, json.dumps(state.meta, default=_plain)))


def _plain(value: Any) -> Any:
    """NumPy scalars (SB3's episode statistics hold float32s) as Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON: {value!r}")


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)


def read_state(folder: Path) -> TrainingState:
    """A checkpoint folder's state, read without unpickling (see the module docstring)."""
    meta_path = folder / "state.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read {meta_path}: {exc}") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path} does not hold a mapping")
    tensors = load_tensors(folder / "tensors.pth", str(folder / "tensors.pth"))
    if not isinstance(tensors, dict):
        raise ArtifactError(f"{folder / 'tensors.pth'} does not hold a mapping of tensors")
    arrays = load_arrays(folder / "arrays.npz")
    buffer = load_arrays(folder / "buffer.npz") if (folder / "buffer.npz").is_file() else {}
    return TrainingState(meta=meta, tensors=tensors, arrays=arrays, buffer=buffer)
