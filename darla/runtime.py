"""Device and thread setup shared by every stage (torch is imported lazily)."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def num_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; anything else is checked by torch."""
    import torch

    from darla.errors import ConfigError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}. Valid: auto, cpu, cuda, cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return device


def setup_torch(threads: int = 0) -> None:
    """Use every core for intra-op parallelism (threads=0 means all cores)."""
    import torch

    n = threads if threads > 0 else num_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
