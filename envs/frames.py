"""Frames for the see stage: collected in parallel straight into memory-mapped `.npy` files.

Layout of a dataset folder (cached under a content hash of the request):
  frames.npy      (N, H, W, 3) uint8   written in place by the workers (never held in RAM)
  domain_ids.npy  (N,) int16           index into meta["domain_names"]
  factors.npy     (N, K) int64         ground-truth labels, -1 where unknown
  in_view.npy     (N,) uint8           1 if an object is inside the field of view
  meta.json       the request, names, counts and statistics; written last: marks completion

The work is cut into fixed chunks, each seeded from (seed, domain, chunk), so the frames depend
on the request only, never on the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from darla.artifacts import atomic_write_json, read_json
from darla.envs.family import get_family
from darla.errors import ArtifactError, ConfigError
from darla.log import progress
from darla.seeding import derive_seed

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHUNK = 256
META = "meta.json"


def default_cache_dir() -> Path:
    """`$DARLA_CACHE/frames`, else `~/.cache/darla/frames`."""
    root = os.environ.get("DARLA_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "darla") / "frames"


@dataclass
class FrameDataset:
    """A finished frame collection, memory-mapped read-only."""

    path: Path
    frames: np.ndarray
    domain_ids: np.ndarray
    domain_names: tuple[str, ...]
    factors: np.ndarray
    factor_names: tuple[str, ...]
    in_view: np.ndarray
    meta: dict[str, Any] = field(repr=False)

    @classmethod
    def open(cls, path: str | Path) -> FrameDataset:
        path = Path(path)
        if not (path / META).is_file():
            raise ArtifactError(f"{path} is not a finished frame dataset (no {META})")
        meta = read_json(path / META)
        if meta.get("format") != FORMAT_VERSION:
            raise ArtifactError(f"{path}: frame format {meta.get('format')!r}, expected {FORMAT_VERSION}")
        try:
            frames = np.load(path / "frames.npy", mmap_mode="r")
            domain_ids = np.load(path / "domain_ids.npy", mmap_mode="r")
            factors = np.load(path / "factors.npy", mmap_mode="r")
            in_view = np.load(path / "in_view.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path}: corrupt frame files: {exc}") from None
        if not (len(frames) == len(domain_ids) == len(factors) == meta["n"]):
            raise ArtifactError(f"{path}: array lengths disagree with meta.json")
        return cls(
            path=path,
            frames=frames,
            domain_ids=domain_ids,
            domain_names=tuple(meta["domain_names"]),
            factors=factors,
            factor_names=tuple(meta["factor_names"]),
            in_view=in_view,
            meta=meta,
        )

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.frames.shape[1:])


# ---------------------------------------------------------------------------- planning
def _plan(n: int, n_domains: int, seed: int) -> list[tuple[int, int, int, int]]:
    """Chunks (start, stop, domain index, chunk seed): each domain gets n // D frames (+1)."""
    chunks = []
    start = 0
    for d in range(n_domains):
        count = n // n_domains + int(d < n % n_domains)
        for c, lo in enumerate(range(0, count, CHUNK)):
            hi = min(lo + CHUNK, count)
            chunks.append((start + lo, start + hi, d, derive_seed(seed, "frames", d, c)))
        start += count
    return chunks


def request_hash(request: dict[str, Any]) -> str:
    text = json.dumps(request, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- workers
_WORKER_ENVS: dict[tuple[Any, ...], Any] = {}  # per process: one env reused across chunks


def _collect_chunk(folder: str, request: dict[str, Any], chunk: tuple[int, int, int, int]) -> tuple[int, int]:
    """Fill frames[start:stop] of `folder`; returns (chunk start, frames with an object in view)."""
    start, stop, domain_index, chunk_seed = chunk
    family = get_family(request["family"])
    key = (family.name, request["size"], json.dumps(request["env_params"], sort_keys=True))
    env = _WORKER_ENVS.get(key)
    if env is None:
        env = family.make(request["domains"][0], seed=0, size=request["size"], **request["env_params"])
        _WORKER_ENVS[key] = env
    raw: Any = env.unwrapped
    gt = family.ground_truth(request["size"])
    domain = request["domains"][domain_index]
    policy = family.collect_policy(request["policy"])
    rng = np.random.default_rng(chunk_seed)
    path = Path(folder)
    frames = np.load(path / "frames.npy", mmap_mode="r+")
    factors = np.load(path / "factors.npy", mmap_mode="r+")
    in_view = np.load(path / "in_view.npy", mmap_mode="r+")
    episode_steps, stride = request["episode_steps"], request["stride"]
    i = start
    obs, _ = raw.reset(seed=chunk_seed, options={"domain": domain})
    policy.reset(raw, rng)
    t = 0
    while i < stop:
        if t % stride == 0:
            frames[i] = obs
            factors[i] = gt.label(raw)
            in_view[i] = bool(raw.in_view()) if hasattr(raw, "in_view") else False
            i += 1
        obs, _, terminated, truncated, _ = raw.step(policy.act(raw, rng))
        t += 1
        if terminated or truncated or t >= episode_steps:
            obs, _ = raw.reset()
            policy.reset(raw, rng)
            t = 0
    frames.flush()
    factors.flush()
    in_view.flush()
    del frames, factors, in_view
    return start, int(np.load(path / "in_view.npy", mmap_mode="r")[start:stop].sum())


def _collect_chunk_star(args: tuple[str, dict[str, Any], tuple[int, int, int, int]]) -> tuple[int, int]:
    return _collect_chunk(*args)


# ---------------------------------------------------------------------------- entry point
def collect_frames(
    family: str,
    domains: Sequence[str],
    n: int,
    *,
    seed: int,
    size: int = 64,
    policy: str = "mixed",
    workers: int = 2,
    cache_dir: Path | str | None = None,
    episode_steps: int = 100,
    stride: int = 2,
    env_params: dict[str, Any] | None = None,
) -> FrameDataset:
    """Collect `n` frames spread evenly over `domains` (names or split names), or reuse the
    cached collection of the same request. `workers` processes write into one memmap."""
    fam = get_family(family)
    names = fam.resolve_domains(list(domains) if not isinstance(domains, str) else domains)
    fam.collect_policy(policy)  # a clear error for a policy the family does not offer
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if episode_steps < 1 or stride < 1:
        raise ConfigError(f"episode_steps and stride must be >= 1, got {episode_steps}, {stride}")
    gt = fam.ground_truth(size)
    request = {
        "format": FORMAT_VERSION,
        "family": fam.name,
        "domains": list(names),
        "domain_specs": [fam.domains[d].to_dict() for d in names],
        "n": int(n),
        "seed": int(seed),
        "size": int(size),
        "policy": policy,
        "episode_steps": int(episode_steps),
        "stride": int(stride),
        "env_params": dict(env_params or {}),
    }
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"{fam.name}-{request_hash(request)}"
    if (path / META).is_file():
        logger.info("reusing frames %s", path)
        return FrameDataset.open(path)

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        np.lib.format.open_memmap(
            tmp / "frames.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3)
        ).flush()
        np.lib.format.open_memmap(
            tmp / "factors.npy", mode="w+", dtype=np.int64, shape=(n, gt.num_factors)
        ).flush()
        np.lib.format.open_memmap(tmp / "in_view.npy", mode="w+", dtype=np.uint8, shape=(n,)).flush()
        chunks = _plan(n, len(names), seed)
        domain_ids = np.zeros(n, dtype=np.int16)
        for start, stop, d, _ in chunks:
            domain_ids[start:stop] = d
        np.save(tmp / "domain_ids.npy", domain_ids)
        t0 = time.perf_counter()
        tasks = [(str(tmp), request, chunk) for chunk in chunks]
        n_workers = max(1, min(int(workers), len(tasks)))
        bar = progress(total=n, desc=f"frames {fam.name}", unit="frame")
        if n_workers == 1:
            results = []
            for task in tasks:
                results.append(_collect_chunk_star(task))
                bar.update(task[2][1] - task[2][0])
        else:
            ctx = mp.get_context("forkserver")
            # Preload nothing into the fork server: with the env stack (pyglet's headless GL)
            # imported there, forked workers were seen to hang.
            ctx.set_forkserver_preload([])
            with ctx.Pool(n_workers) as pool:
                results = []
                for res in pool.imap_unordered(_collect_chunk_star, tasks):
                    results.append(res)
                    bar.update(next(c[1] - c[0] for c in chunks if c[0] == res[0]))
        bar.close()
        seconds = time.perf_counter() - t0
        visible = sum(v for _, v in results)
        meta = {
            **request,
            "domain_names": list(names),
            "factor_names": list(gt.factor_names),
            "factor_sizes": list(gt.factor_sizes),
            "counts": np.bincount(domain_ids, minlength=len(names)).tolist(),
            "in_view_fraction": visible / n,
            "workers": n_workers,
            "seconds": seconds,
            "frames_per_second": n / max(seconds, 1e-9),
            "created_at": time.time(),
        }
        atomic_write_json(tmp / META, meta)
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / META).is_file():
                raise
            logger.info("another process finished %s first; using it", path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info(
        "collected %d frames in %.1fs (%.0f/s), objects in view in %.0f%%",
        n, meta["seconds"], meta["frames_per_second"], 100 * meta["in_view_fraction"],
    )  # fmt: skip
    return FrameDataset.open(path)
