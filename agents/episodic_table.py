"""MFEC's memory: one table per action of (state key, best return seen), with kNN lookup and LRU
eviction, all batched numpy/torch (no Python loop over entries)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from darla.errors import ArtifactError, ConfigError


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread for the table searches.

    The search is memory bound (one pass over the keys), so extra threads buy little, while a
    busy machine makes multi-threaded small ops orders of magnitude slower (measured: ~10 ms vs
    30 us per tiny matmul at load 10 on 2 cores). One thread also makes the float summation
    order, hence the neighbours, independent of the core count.
    """
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class EpisodicTable:
    """One action's memory: keys, best returns and last-use times, with kNN lookup and LRU eviction.

    Storage is preallocated (capacity x dim); all operations are batched numpy (no Python loop
    over entries). `query` marks the entries it used as recently used, as the paper does.
    """

    def __init__(self, capacity: int, dim: int, k: int, match_tol: float = 1e-10) -> None:
        if capacity < 1 or dim < 1 or k < 1:
            raise ConfigError(f"EpisodicTable needs capacity, dim, k >= 1 (got {capacity}, {dim}, {k})")
        self.capacity = int(capacity)
        self.dim = int(dim)
        self.k = int(k)
        self.match_tol = float(match_tol)
        # storage grows by doubling up to `capacity`: a big capacity costs nothing until it is used
        start = min(self.capacity, 1024)
        self.keys = np.zeros((start, self.dim), dtype=np.float32)
        self.sqnorms = np.zeros(start, dtype=np.float32)
        self.values = np.zeros(start, dtype=np.float32)
        self.last_used = np.zeros(start, dtype=np.int64)
        self.size = 0
        self.origin: np.ndarray | None = None

    def stored_keys(self) -> np.ndarray:
        """The stored keys in the caller's coordinates (n, dim)."""
        if self.origin is None:
            return np.zeros((0, self.dim), np.float32)
        return self.keys[: self.size] + self.origin

    def _reserve(self, n: int) -> None:
        if n <= len(self.keys):
            return
        new = min(self.capacity, max(n, 2 * len(self.keys)))
        for name in ("keys", "sqnorms", "values", "last_used"):
            old = getattr(self, name)
            grown = np.zeros((new, *old.shape[1:]), dtype=old.dtype)
            grown[: self.size] = old[: self.size]
            setattr(self, name, grown)

    # -------------------------------------------------------------------- lookup
    def search(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nearest index, exact-match flag, indices of the kk nearest, nearest first) per query.

        One matmul for all queries: |q|^2 - 2 k.q + |k|^2 (keys x queries is torch's fast layout),
        then a top-k. Exact equality is tested with a relative tolerance, because the same state's
        key can differ in the last float bit depending on the batch it was computed in.
        """
        with single_thread():
            return self._search(q, kk)

    def _search(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.origin is not None
        raw = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32))
        qt = raw - torch.from_numpy(self.origin)
        keys = torch.from_numpy(self.keys[: self.size])
        qn = (qt * qt).sum(1)
        d2 = (
            qn[:, None] - 2.0 * (keys @ qt.T).T + torch.from_numpy(self.sqnorms[: self.size])[None]
        ).clamp_min_(0.0)
        _, idx = torch.topk(d2, min(kk, self.size), dim=1, largest=False, sorted=True)
        nearest = idx[:, 0]
        # the expanded formula cancels; the match test uses the direct difference to the nearest key
        direct = (qt - keys[nearest]).pow(2).sum(1)
        exact = direct <= self.match_tol * ((raw * raw).sum(1) + 1e-12)
        return nearest.numpy(), exact.numpy(), idx.numpy()

    def query(self, q: np.ndarray, now: int | None) -> np.ndarray:
        """Value estimates for a batch of keys (n, dim); NaN where the table is empty.

        An exact match returns its stored value, anything else the mean of the k nearest values.
        With `now` set, the entries used are marked as recently used (learning); with None the
        table is left untouched (evaluation).
        """
        if self.size == 0:
            return np.full(len(q), np.nan, dtype=np.float32)
        nearest, exact, idx = self.search(q, self.k)
        est = np.where(exact, self.values[nearest], self.values[idx].mean(1)).astype(np.float32)
        if now is not None:
            used = np.where(exact[:, None], nearest[:, None], idx)
            self.last_used[np.unique(used)] = now
        return est

    # -------------------------------------------------------------------- update
    def update(self, q: np.ndarray, returns: np.ndarray, now: int) -> None:
        """Write returns for keys: max with an exactly matching entry, else insert (LRU eviction)."""
        if len(q) == 0:
            return
        q = np.asarray(q, dtype=np.float32)
        returns = np.asarray(returns, dtype=np.float32)
        if self.origin is None:
            self.origin = q.mean(0).astype(np.float32)
        # the same key twice in one batch (a state revisited in an episode) keeps its best return
        uq, inverse = np.unique(q, axis=0, return_inverse=True)
        best = np.full(len(uq), -np.inf, dtype=np.float32)
        np.maximum.at(best, inverse.reshape(-1), returns)
        q, returns = uq, best
        if self.size > 0:
            nearest, exact, _ = self.search(q, 1)
            hit = nearest[exact]
            # several queries may hit one entry: maximum.at applies all of them
            np.maximum.at(self.values, hit, returns[exact])
            self.last_used[hit] = now
            q, returns = q[~exact], returns[~exact]
        self._insert(q, returns, now)

    def _insert(self, q: np.ndarray, returns: np.ndarray, now: int) -> None:
        m = len(q)
        if m == 0:
            return
        if m > self.capacity:  # keep the best-valued new keys when a batch overflows the table
            keep = np.argsort(-returns, kind="stable")[: self.capacity]
            q, returns, m = q[keep], returns[keep], self.capacity
        free = self.capacity - self.size
        n_append = min(free, m)
        slots = np.arange(self.size, self.size + n_append)
        n_evict = m - n_append
        if n_evict > 0:
            # evict the least recently used entries (stable: oldest index first on ties)
            victims = np.argsort(self.last_used[: self.size], kind="stable")[:n_evict]
            slots = np.concatenate([slots, victims])
        self._reserve(self.size + n_append)
        assert self.origin is not None
        centred = q - self.origin
        self.keys[slots] = centred
        self.sqnorms[slots] = (centred * centred).sum(1)
        self.values[slots] = returns
        self.last_used[slots] = now
        self.size += n_append

    # -------------------------------------------------------------------- state
    def state(self, prefix: str) -> dict[str, np.ndarray]:
        n = self.size
        origin = self.origin if self.origin is not None else np.zeros(self.dim, np.float32)
        return {
            f"{prefix}origin": origin.copy(),
            f"{prefix}keys": self.keys[:n].copy(),
            f"{prefix}values": self.values[:n].copy(),
            f"{prefix}last_used": self.last_used[:n].copy(),
        }

    def load_state(self, arrays: Any, prefix: str) -> None:
        keys = np.asarray(arrays[f"{prefix}keys"], dtype=np.float32)
        n = len(keys)
        if n > self.capacity or (n and keys.shape[1] != self.dim):
            raise ArtifactError(
                f"MFEC table {prefix!r} has shape {keys.shape}, expected <= ({self.capacity}, {self.dim})"
            )
        self._reserve(n)
        self.origin = np.asarray(arrays[f"{prefix}origin"], dtype=np.float32) if n else None
        self.keys[:n] = keys
        self.sqnorms[:n] = (keys * keys).sum(1)
        self.values[:n] = arrays[f"{prefix}values"]
        self.last_used[:n] = arrays[f"{prefix}last_used"]
        self.size = n
