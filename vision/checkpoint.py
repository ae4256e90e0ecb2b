"""Saving and loading zoo models: one self-describing file, loadable with weights_only=True.

A file holds a format tag, the method name, image shape, the method's config, the weights, and
optionally the training state (optimisers, step, RNG states as tensors) and free `extra` data.
Only plain types and tensors are stored, so `torch.load(weights_only=True)` reads it safely.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from darla.artifacts import atomic_save
from darla.config import from_dict, to_dict
from darla.errors import ArtifactError, ConfigError
from darla.registry import unknown_name_message
from darla.runtime import resolve_device
from darla.vision.base import MODELS, VisionModel

FORMAT = "darla.vision/1"
MODEL_FILE = "model.pt"


def checkpoint_path(see_dir: str | Path) -> Path:
    """The model file of a see folder (a path to a file is returned unchanged)."""
    path = Path(see_dir)
    return path if path.suffix == ".pt" else path / MODEL_FILE


def see_folder(ref: str | Path) -> Path:
    """The see folder of a reference to a model: the folder itself, or its checkpoint file."""
    path = Path(ref)
    return path.parent if path.suffix == ".pt" else path


def base_order(bases: dict[str, str | None]) -> list[str]:
    """Models (keys) ordered so that each comes after the model its `base` names (iin, scan)."""
    order: list[str] = []
    visiting: list[str] = []

    def visit(model: str) -> None:
        if model in order:
            return
        if model in visiting:
            cycle = " -> ".join([*visiting[visiting.index(model) :], model])
            raise ConfigError(f"the models build on each other in a cycle: {cycle}")
        visiting.append(model)
        base = bases.get(model)
        if base is not None:
            visit(base)
        visiting.pop()
        order.append(model)

    for model in bases:
        visit(model)
    return order


def model_payload(model: VisionModel, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model": model.name,
        "image_shape": list(model.image_shape),
        "config": to_dict(model.config),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "extra": to_dict(extra or {}),
    }


def write_payload(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically: a killed process never leaves a half-written checkpoint."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()

    def writer(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_save(path, writer)


def save(model: VisionModel, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Save `model` (config + weights + `extra`) atomically to `path` (a .pt file or a folder)."""
    target = checkpoint_path(path)
    write_payload(target, model_payload(model, extra))
    return target


def read_payload(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint file; missing, corrupt or foreign files raise ArtifactError."""
    file = checkpoint_path(path)
    if not file.is_file():
        where = f" (no {MODEL_FILE} in folder {path})" if Path(path).is_dir() else ""
        raise ArtifactError(f"vision checkpoint not found: {file}{where}")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        # torch's own message would advise weights_only=False, which runs whatever code the file holds
        raise ArtifactError(
            f"cannot read vision checkpoint {file}: {_damage(exc)}. darla reads only checkpoints of "
            f"tensors and plain values; retrain it (delete {see_folder(file)} and re-run the "
            "`darla see` or `darla run` that made it) or point to another model"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ArtifactError(
            f"{file} is not a darla vision checkpoint (format {found!r}, expected {FORMAT!r})"
        )
    for key in ("model", "image_shape", "config", "state_dict"):
        if key not in payload:
            raise ArtifactError(f"{file}: checkpoint lacks {key!r}; corrupt or foreign")
    return payload


def _damage(exc: BaseException) -> str:
    """What is wrong with a file torch cannot load, in our words (never torch's advice)."""
    text = str(exc).lower()
    if isinstance(exc, pickle.UnpicklingError) or "weights only load failed" in text:
        return "it is not a darla checkpoint (it holds objects other than tensors, or is not a torch file)"
    if (
        isinstance(exc, (EOFError, zipfile.BadZipFile))
        or "zip archive" in text
        or "central directory" in text
    ):
        return "the file is truncated or damaged"
    return f"the file is damaged or not a torch file ({type(exc).__name__})"


def model_from_payload(payload: dict[str, Any], where: str = "checkpoint") -> VisionModel:
    name = payload["model"]
    if name not in MODELS:
        raise ArtifactError(
            f"{where}: "
            + unknown_name_message("model", name, MODELS.names())
            + " (written by another version?)"
        )
    cls = MODELS.get(name)
    try:
        cfg = from_dict(cls.config_cls, payload["config"], where=name)
        model = cls(cfg, tuple(payload["image_shape"]))
    except ConfigError as exc:
        raise ArtifactError(f"{where}: invalid model config: {exc}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ArtifactError(
            f"{where}: weights do not fit model {name!r}: {str(exc).splitlines()[0]}"
        ) from None
    return model


def load(path: str | Path, device: str = "auto") -> VisionModel:
    """A trained model from a see folder or a model file: eval mode, frozen, on `device`."""
    payload = read_payload(path)
    model = model_from_payload(payload, where=str(checkpoint_path(path)))
    model.to(resolve_device(device))
    model.eval()
    model.requires_grad_(False)
    return model
