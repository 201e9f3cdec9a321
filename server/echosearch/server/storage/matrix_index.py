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

import numpy as np
import torch

log = logging.getLogger(__name__)

COMPACT_FRACTION = 0.2  # compact once this share of rows is tombstoned
SCAN_CHUNK_ELEMENTS = 1 << 26  # queries x rows scored at once (bounds the temporary score matrix)
RESCORE_EXTRA = 16  # half-precision storage: re-score this many extra candidates in fp32


class MatrixFull(MemoryError):
    """The matrix would outgrow its memory cap (or the device ran out of memory)."""


def _np_f32(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of width {dim}, got shape {x.shape}")
    return x


def ranges_to_rows(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenate the half-open row ranges [starts[i], ends[i]) into one int64 array."""
    lengths = np.maximum(np.asarray(ends, np.int64) - np.asarray(starts, np.int64), 0)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, np.int64)
    # rows = start of my range + my position within it, built without a Python loop
    first = np.repeat(np.asarray(starts, np.int64) - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return first + np.arange(total, dtype=np.int64)


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
        max_bytes: int | None = None,
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
        self._alive = self._alloc((cap,), torch.bool, zero=True)
        self._ids = np.empty(cap, np.int64)  # row -> id (host copy)
        self._n = 0  # rows used, dead included
        self._dead = 0
        self._sorted = True  # ids[:n] ascending: id -> row is a binary search
        self._order: np.ndarray | None = None  # argsort of ids when not sorted (built lazily)
        # measured seconds per row: scan all rows with a mask vs gather the candidate rows
        self._cost = {"scan": 1.0, "gather": 3.0}  # priors (relative); replaced by measurements
        self._measured: set[str] = set()

    # ---- memory ------------------------------------------------------------------
    def _check_cap(self, rows: int) -> None:
        if self.max_bytes is not None and rows * self._row_bytes > self.max_bytes:
            raise MatrixFull(
                f"{rows} rows x {self.dim} ({self.dtype}) need {rows * self._row_bytes / 2**30:.2f} GiB, "
                f"over the {self.max_bytes / 2**30:.2f} GiB cap"
            )

    def _alloc(self, shape: tuple[int, ...], dtype: torch.dtype, zero: bool = False) -> torch.Tensor:
        try:
            make = torch.zeros if zero else torch.empty
            return make(shape, dtype=dtype, device=self.device)
        except torch.OutOfMemoryError as exc:
            raise MatrixFull(f"{self.device} out of memory for {shape}: {exc}") from exc

    def memory_bytes(self) -> int:
        """Device bytes held by the matrix (capacity, not just live rows)."""
        return int(self._m.numel() * self._m.element_size() + self._alive.numel())

    def _grow(self, need: int) -> None:
        cap = self._m.shape[0]
        if need <= cap:
            return
        new_cap = max(need, int(cap * 1.5))
        if self.max_bytes is not None and new_cap * self._row_bytes > self.max_bytes:
            new_cap = need  # grow only as far as needed when near the cap
        self._check_cap(new_cap)
        m = self._alloc((new_cap, self.dim), self.dtype)
        alive = self._alloc((new_cap,), torch.bool, zero=True)
        m[: self._n] = self._m[: self._n]
        alive[: self._n] = self._alive[: self._n]
        ids = np.empty(new_cap, np.int64)
        ids[: self._n] = self._ids[: self._n]
        self._m, self._alive, self._ids = m, alive, ids

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
        alive = self._alive[: self._n].cpu().numpy()
        return self._ids[: self._n][alive].copy()

    def tombstones(self) -> np.ndarray:
        return np.empty(0, np.int64)  # compacted away; nothing to persist

    def _rows_in_ranges(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Rows (live or not) whose ids fall in any half-open id range [lo[i], hi[i])."""
        ids = self._ids[: self._n]
        if self._sorted:
            return ranges_to_rows(np.searchsorted(ids, lo), np.searchsorted(ids, hi))
        if self._order is None:
            self._order = np.argsort(ids, kind="stable")
        srt = ids[self._order]
        return self._order[ranges_to_rows(np.searchsorted(srt, lo), np.searchsorted(srt, hi))]

    def rows_for(self, ids: np.ndarray | None = None, *, ranges: tuple[np.ndarray, np.ndarray] | None = None):
        """Live rows holding `ids` (or ids inside the half-open `ranges`), as a device tensor."""
        if ranges is None:
            ids = np.asarray(ids, np.int64).reshape(-1)
            ranges = (ids, ids + 1)
        lo, hi = (np.asarray(a, np.int64).reshape(-1) for a in ranges)
        rows = torch.from_numpy(self._rows_in_ranges(lo, hi)).to(self.device)
        if self._dead and len(rows):
            rows = rows[self._alive[rows]]
        return rows

    # ---- writes ------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Append vectors under `ids` (ids must not be present already). Raises MatrixFull past the cap."""
        x = _np_f32(vectors, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} ids for {len(x)} vectors")
        if len(ids) == 0:
            return
        self._grow(self._n + len(ids))
        lo, hi = self._n, self._n + len(ids)
        try:
            self._m[lo:hi] = torch.from_numpy(x).to(self.device, self.dtype)
        except torch.OutOfMemoryError as exc:
            raise MatrixFull(f"{self.device} out of memory while adding {len(ids)} rows") from exc
        self._alive[lo:hi] = True
        self._ids[lo:hi] = ids
        if self._sorted and (np.any(np.diff(ids) <= 0) or (lo and ids[0] <= self._ids[lo - 1])):
            self._sorted = False
        self._order = None
        self._n = hi

    def remove(self, ids: np.ndarray) -> int:
        """Tombstone `ids`; returns how many were live. Compacts past COMPACT_FRACTION dead rows."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        if len(ids) == 0 or self._n == 0:
            return 0
        rows = self.rows_for(ids)
        self._alive[rows] = False
        self._dead += len(rows)
        if self._dead > COMPACT_FRACTION * self._n:
            self.compact()
        return len(rows)

    def compact(self) -> None:
        """Drop tombstoned rows (keeps row order, so sorted ids stay sorted)."""
        if not self._dead:
            return
        keep = self._alive[: self._n]
        try:
            live = self._m[: self._n][keep]
        except torch.OutOfMemoryError:
            log.warning("no device memory to compact %d tombstoned rows now; will retry", self._dead)
            return
        n = len(live)
        keep_np = keep.cpu().numpy()
        self._ids[:n] = self._ids[: self._n][keep_np]
        self._m[:n] = live
        del live
        self._alive[:n] = True
        self._alive[n:] = False
        self._n, self._dead, self._order = n, 0, None

    # ---- search ------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        subset: np.ndarray | None = None,
        *,
        ranges: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; restricted to `subset` ids or ids in `ranges`; id -1 pads."""
        q = _np_f32(queries, self.dim)
        k = min(int(k), self.ntotal)
        if k <= 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        qt = torch.from_numpy(q).to(self.device)
        if subset is None and ranges is None:
            scores, rows = self._scan(qt, k, None)
        else:
            rows_c = self.rows_for(subset, ranges=ranges)
            if len(rows_c) == 0:
                return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
            k = min(k, len(rows_c))
            how = "gather" if len(rows_c) * self._cost["gather"] < self._n * self._cost["scan"] else "scan"
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
        """Update the per-row cost of a strategy (EWMA) from one measured call."""
        if nrows < 1024:
            return  # too small to time meaningfully
        if result.device.type == "cuda":
            torch.cuda.synchronize(result.device)
        per_row = seconds / nrows
        if not self._measured:  # the first measurement sets the scale of both priors
            ratio = per_row / self._cost[how]
            self._cost = {name: c * ratio for name, c in self._cost.items()}
        elif how not in self._measured:
            self._cost[how] = per_row
        else:
            self._cost[how] = 0.8 * self._cost[how] + 0.2 * per_row
        self._measured.add(how)

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
        ids = self._ids[r.cpu().numpy()]
        ids[~np.isfinite(s_np)] = -1
        return s_np, ids

    # ---- task scoring ------------------------------------------------------------
    def video_rows(self, video_lo: np.ndarray, video_hi: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """(rows, offsets): the live rows of each id range in turn, and (V+1,) prefix offsets."""
        lo, hi = np.asarray(video_lo, np.int64), np.asarray(video_hi, np.int64)
        if self._sorted:
            ids = self._ids[: self._n]
            starts, ends = np.searchsorted(ids, lo), np.searchsorted(ids, hi)
            rows = ranges_to_rows(starts, ends)
            counts = ends - starts
        else:
            parts = [self._rows_in_ranges(lo[i : i + 1], hi[i : i + 1]) for i in range(len(lo))]
            rows = np.concatenate(parts) if parts else np.empty(0, np.int64)
            counts = np.array([len(p) for p in parts], np.int64)
        rows_t = torch.from_numpy(rows).to(self.device)
        if self._dead and len(rows):
            alive = self._alive[rows_t].cpu().numpy()
            rows_t = rows_t[torch.from_numpy(alive).to(self.device)]
            owner = np.repeat(np.arange(len(lo)), counts)
            counts = np.bincount(owner[alive], minlength=len(lo)).astype(np.int64)
        offsets = np.zeros(len(lo) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return rows_t, offsets

    def frames(self, rows: torch.Tensor) -> torch.Tensor:
        """fp32 copies of `rows` (for scoring)."""
        return self._m[rows].float()
