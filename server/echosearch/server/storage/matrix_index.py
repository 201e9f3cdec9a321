"""Exact inner-product search and task scoring over vectors resident in torch memory (GPU or CPU).

The same math as FAISS `IndexFlatIP` (GEMM + top-k), on a matrix kept on one torch device:
rows are appended on add, tombstoned on removal and compacted once tombstones pass 20 %.
Filtered searches either scan every row with a candidate mask or gather the candidate rows
first, whichever has measured cheaper per row so far. Ids are the caller's int64 ids (frame or
video ids), normally appended in increasing order, which makes id -> row a binary search.
On CPU (fp32) this is the backend CI tests against FAISS Flat and tasks/scoring_math.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from echosearch.server.storage import search_plans
from echosearch.server.storage.positions import CostModel, MatrixFull, RowMap, ranges_to_rows

__all__ = ["MatrixFull", "MatrixIndex"]

log = logging.getLogger(__name__)

COMPACT_FRACTION = 0.2  # compact once this share of rows is tombstoned
SCAN_CHUNK_ELEMENTS = 1 << 26  # queries x rows scored at once (bounds the temporary score matrix)
RESCORE_EXTRA = 16  # half-precision storage: re-score this many extra candidates in fp32


def _np_f32(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of width {dim}, got shape {x.shape}")
    return x


class MatrixIndex:
    """Inner-product search over id-tagged vectors held as one torch matrix (exact, like IndexFlatIP)."""

    factory = "Flat"
    exact_fallback = False

    def __init__(
        self,
        dim: int,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        max_bytes: int | Callable[[], int] | None = None,
        capacity: int = 4096,
    ) -> None:
        self.dim = int(dim)
        self.device = torch.device(device)
        self.dtype = dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
        self.max_bytes = max_bytes
        self._row_bytes = self.dim * torch.tensor([], dtype=self.dtype).element_size() + 1
        cap = max(16, int(capacity))
        self._check_cap(cap)
        self._m = self._alloc((cap, self.dim), self.dtype)
        self._alive = self._alloc((cap,), torch.bool, zero=True)  # device copy of rows.alive, for masks
        self.rows = RowMap()
        # seconds per row: score every row under a candidate mask, or gather the candidates first
        self.cost = CostModel({"scan": 1.0, "gather": 3.0})

    @property
    def _n(self) -> int:
        return self.rows.n

    @property
    def _dead(self) -> int:
        return self.rows.dead

    # ---- memory ------------------------------------------------------------------
    def _check_cap(self, rows: int) -> None:
        limit = self._limit()
        if limit is not None and rows * self._row_bytes > limit:
            raise MatrixFull(
                f"{rows} rows x {self.dim} ({self.dtype}) need {rows * self._row_bytes / 2**30:.2f} GiB, "
                f"over the {limit / 2**30:.2f} GiB cap"
            )

    def _limit(self) -> int | None:
        """Bytes this matrix may hold: a fixed cap, or what a shared budget leaves it (a callable)."""
        return self.max_bytes() if callable(self.max_bytes) else self.max_bytes

    def _alloc(self, shape: tuple[int, ...], dtype: torch.dtype, zero: bool = False) -> torch.Tensor:
        try:
            make = torch.zeros if zero else torch.empty
            return make(shape, dtype=dtype, device=self.device)
        except torch.cuda.OutOfMemoryError as exc:
            raise MatrixFull(f"{self.device} out of memory for {shape}: {exc}") from exc

    def memory_bytes(self) -> int:
        """Device bytes held by the matrix (capacity, not just live rows)."""
        return int(self._m.numel() * self._m.element_size() + self._alive.numel())

    def _grow(self, need: int) -> None:
        cap = self._m.shape[0]
        if need <= cap:
            return
        new_cap = max(need, int(cap * 1.5))
        limit = self._limit()
        if limit is not None and new_cap * self._row_bytes > limit:
            new_cap = need  # grow only as far as needed when near the cap
        self._check_cap(new_cap)
        m = self._alloc((new_cap, self.dim), self.dtype)
        alive = self._alloc((new_cap,), torch.bool, zero=True)
        m[: self._n] = self._m[: self._n]
        alive[: self._n] = self._alive[: self._n]
        self._m, self._alive = m, alive

    # ---- state -------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Live vectors."""
        return self._n - self._dead

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def ids(self) -> np.ndarray:
        """Every live id (insertion order)."""
        return self.rows.ids[self.rows.alive].copy()

    def tombstones(self) -> np.ndarray:
        return self.rows.dead_ids()

    def _rows_tensor(self, subset: np.ndarray | None, ranges: tuple[np.ndarray, np.ndarray] | None) -> torch.Tensor:
        rows = self.rows.rows_of(subset) if ranges is None else self.rows.rows_in_ranges(*ranges)
        return torch.from_numpy(rows).to(self.device)

    # ---- writes ------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Append vectors under `ids` (ids must not be present already). Raises MatrixFull past the cap.

        `vectors` may be a torch tensor already on the device (no host round trip)."""
        if isinstance(vectors, torch.Tensor):
            x = vectors.reshape(-1, self.dim)
        else:
            host = _np_f32(vectors, self.dim)
            # a read-only array (a zero-copy view of a catalog scan) is copied: torch tensors must be writable
            x = torch.from_numpy(host if host.flags.writeable else host.copy())
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} ids for {len(x)} vectors")
        if len(ids) == 0:
            return
        self._grow(self._n + len(ids))
        lo, hi = self._n, self._n + len(ids)
        try:
            self._m[lo:hi] = x.to(self.device, self.dtype)
        except torch.cuda.OutOfMemoryError as exc:
            raise MatrixFull(f"{self.device} out of memory while adding {len(ids)} rows") from exc
        self._alive[lo:hi] = True
        self.rows.append(ids)

    def remove(self, ids: np.ndarray) -> int:
        """Tombstone `ids`; returns how many were live. Compacts past COMPACT_FRACTION dead rows."""
        rows = self.rows.rows_of(ids)
        if len(rows) == 0:
            return 0
        removed = self.rows.kill(rows)
        self._alive[torch.from_numpy(rows).to(self.device)] = False
        if self._dead > COMPACT_FRACTION * self._n:
            self.compact()
        return removed

    def compact(self) -> None:
        """Drop tombstoned rows (keeps row order, so sorted ids stay sorted)."""
        if not self._dead:
            return
        keep = torch.from_numpy(self.rows.alive.copy()).to(self.device)
        try:
            live = self._m[: self._n][keep]
        except torch.cuda.OutOfMemoryError:
            log.warning("no device memory to compact %d tombstoned rows now; will retry", self._dead)
            return
        n = len(live)
        self._m[:n] = live
        del live
        self._alive[:n] = True
        self._alive[n:] = False
        self.rows = self.rows.compacted()

    # ---- search ------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        subset: np.ndarray | None = None,
        *,
        ranges: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; restricted to `subset` ids or ids in `ranges`; id -1 pads.

        Raises MatrixFull when the device has no memory for the temporaries (the caller falls back).
        """
        try:
            return self._search(queries, k, subset, ranges)
        except torch.cuda.OutOfMemoryError as exc:
            raise MatrixFull(f"{self.device} out of memory during a search: {exc}") from exc

    def _search(self, queries, k, subset, ranges) -> tuple[np.ndarray, np.ndarray]:
        q = _np_f32(queries, self.dim)
        k = min(int(k), self.ntotal)
        if k <= 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        qt = torch.from_numpy(q).to(self.device)
        if subset is None and ranges is None:
            search_plans.note(f"torch {self.device}: every row ({self.ntotal})")
            scores, rows = self._scan(qt, k, None)
        else:
            rows_c = self._rows_tensor(subset, ranges)
            if len(rows_c) == 0:
                return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
            k = min(k, len(rows_c))
            how = self.cost.cheapest({"gather": len(rows_c), "scan": self._n})
            search_plans.note(f"torch {self.device}: {how} of {len(rows_c)} candidate rows of {self._n}")
            t0 = time.perf_counter()
            if how == "gather":
                scores, rows = self._gather(qt, k, rows_c)
            else:
                mask = torch.zeros(self._n, dtype=torch.bool, device=self.device)
                mask[rows_c] = True
                scores, rows = self._scan(qt, k, mask)
            self._learn(how, time.perf_counter() - t0, len(rows_c) if how == "gather" else self._n, rows)
        return self._finish(scores, rows)

    def _learn(self, how: str, seconds: float, nrows: int, result: torch.Tensor) -> None:
        if result.device.type == "cuda":
            torch.cuda.synchronize(result.device)
        self.cost.learn(how, seconds, nrows)

    def _scan(self, qt: torch.Tensor, k: int, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Score every row in chunks; keep each chunk's top-k, then merge."""
        keep = self._alive[: self._n] if mask is None else mask & self._alive[: self._n]
        chunk = max(k, SCAN_CHUNK_ELEMENTS // max(1, len(qt)))
        best_s, best_r = [], []
        qd = qt.to(self.dtype)
        for lo in range(0, self._n, chunk):
            hi = min(self._n, lo + chunk)
            s = (qd @ self._m[lo:hi].T).float()
            if self._dead or mask is not None:
                s.masked_fill_(~keep[lo:hi], float("-inf"))
            kk = min(self._topk_width(k), hi - lo)
            ts, tr = torch.topk(s, kk, dim=1)
            best_s.append(ts)
            best_r.append(tr + lo)
        s, r = torch.cat(best_s, 1), torch.cat(best_r, 1)
        return self._rescore(qt, k, s, r)

    def _gather(self, qt: torch.Tensor, k: int, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sub = self._m[rows]
        s = (qt.to(self.dtype) @ sub.T).float()
        ts, tr = torch.topk(s, min(self._topk_width(k), len(rows)), dim=1)
        return self._rescore(qt, k, ts, rows[tr])

    def _topk_width(self, k: int) -> int:
        return k if self.dtype == torch.float32 else k + max(k, RESCORE_EXTRA)

    def _rescore(self, qt: torch.Tensor, k: int, s: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final top-k; half-precision candidates are re-scored in fp32 first (exact scores, exact order)."""
        if self.dtype != torch.float32:
            dead = torch.isinf(s)
            exact = torch.einsum("qd,qcd->qc", qt, self._m[r].float())
            s = exact.masked_fill(dead, float("-inf"))
        if s.shape[1] > k:
            s, pos = torch.topk(s, k, dim=1)
            r = torch.gather(r, 1, pos)
        else:
            s, pos = torch.sort(s, dim=1, descending=True)
            r = torch.gather(r, 1, pos)
        return s, r

    def _finish(self, s: torch.Tensor, r: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        s_np = s.cpu().numpy().astype(np.float32, copy=False)
        ids = self.rows.ids[r.cpu().numpy()]
        ids[~np.isfinite(s_np)] = -1
        return s_np, ids

    # ---- task scoring ------------------------------------------------------------
    def video_rows(self, lo: np.ndarray, hi: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """(rows, offsets): the live rows of each id range [lo[i], hi[i]) in turn, and (V+1,) offsets."""
        lo, hi = np.asarray(lo, np.int64).reshape(-1), np.asarray(hi, np.int64).reshape(-1)
        if self.rows.sorted:
            ids = self.rows.ids
            starts, ends = np.searchsorted(ids, lo), np.searchsorted(ids, hi)
            rows, counts = ranges_to_rows(starts, ends), ends - starts
        else:
            parts = [self.rows.rows_in_ranges(lo[i : i + 1], hi[i : i + 1], live_only=False) for i in range(len(lo))]
            rows = np.concatenate(parts) if parts else np.empty(0, np.int64)
            counts = np.array([len(p) for p in parts], np.int64)
        if self._dead and len(rows):
            alive = self.rows.alive[rows]
            rows = rows[alive]
            counts = np.bincount(np.repeat(np.arange(len(lo)), counts)[alive], minlength=len(lo)).astype(np.int64)
        offsets = np.zeros(len(lo) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return torch.from_numpy(rows).to(self.device), offsets

    def frames(self, rows: torch.Tensor) -> torch.Tensor:
        """fp32 copies of `rows` (for scoring)."""
        return self._m[rows].float()
