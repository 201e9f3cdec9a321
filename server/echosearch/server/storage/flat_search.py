"""Exact search over a FAISS `IndexFlat` by row, restricted to candidate rows, on the CPU.

Two strategies, chosen per call by their measured cost per row (storage/positions.CostModel):
- "bitmap": FAISS scans every row, skipping those not set in an `IDSelectorBitmap` (one bit test a row);
- "gather": copy the candidate rows out and score them with one BLAS product (cost ∝ candidates).
Both are exact; results are (scores, rows), rows -1 where fewer than k candidates exist.
"""

from __future__ import annotations

import time

import faiss
import numpy as np

from echosearch.server.storage.positions import CostModel

# Starting ratio only (measured ~20 ns per scanned row vs ~0.5-4 µs per gathered row on the shared dev box)
STRATEGY_PRIORS = {"bitmap": 1.0, "gather": 30.0}


def flat_vectors(flat: faiss.IndexFlat) -> np.ndarray:
    """The stored (n, d) matrix of a flat index, as a view (no copy)."""
    n, d = int(flat.ntotal), int(flat.d)
    if n == 0:
        return np.empty((0, d), np.float32)
    return faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)


def topk_desc(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest scores per row, best first."""
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def gather_search(flat: faiss.IndexFlat, q: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sub = flat_vectors(flat)[rows]
    scores = q @ sub.T
    top = topk_desc(scores, k)
    return np.take_along_axis(scores, top, axis=1), rows[top]


def bitmap_search(
    flat: faiss.IndexFlat, q: np.ndarray, k: int, mask: np.ndarray, bits: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's own scan over the rows set in `mask` (bool per row); `bits` may pass the packed mask."""
    if bits is None:
        bits = np.packbits(mask, bitorder="little")
    sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
    scores, rows = flat.search(q, k, params=faiss.SearchParameters(sel=sel))
    return scores, rows.astype(np.int64)


def search_rows(
    flat: faiss.IndexFlat,
    q: np.ndarray,
    k: int,
    rows: np.ndarray,
    alive: np.ndarray,
    cost: CostModel,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the candidate `rows` (all live) of `flat`, by the cheaper strategy."""
    n = int(flat.ntotal)
    k = min(k, len(rows))
    if k <= 0:
        return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
    how = cost.cheapest({"gather": len(rows), "bitmap": n})
    t0 = time.perf_counter()
    if how == "gather":
        out = gather_search(flat, q, k, rows)
    else:
        mask = np.zeros(n, bool)
        mask[rows] = True
        out = bitmap_search(flat, q, k, mask & alive[:n])
    cost.learn(how, time.perf_counter() - t0, len(rows) if how == "gather" else n)
    return out
