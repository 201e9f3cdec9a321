"""Restricted searches on an ANN (non-Flat) FAISS index: the plan (an exact scan of the candidates' stored
vectors, or the index's own filtered search at its recall) and each way of answering.

Flat indexes answer restricted searches exactly in flat_search.py; this module is the approximate side.
"""

from __future__ import annotations

from collections import OrderedDict

import faiss
import numpy as np

from echosearch.server.storage.flat_search import topk_desc
from echosearch.server.storage.positions import CostModel

STRATEGY_PRIORS = {"index": 0.05, "exact": 1.0}  # starting ratio only; timings replace it
SELECTOR_CACHE_ENTRIES = 4


def plan(cost: CostModel, n_candidates: int, ntotal: int, unfiltered_s: list[float], *, exact: bool) -> str:
    """How to answer a search restricted to `n_candidates` of `ntotal` vectors: "exact" or "index".

    Exact (only where the stored codes are the original vectors) whenever it is expected to cost no more than
    the index's own filtered search or an unfiltered search of this index (`unfiltered_s`: recent seconds per
    query), so a filter never makes a query slower than none and small candidate sets are answered exactly;
    otherwise the index's selector, at its recall.
    """
    if not exact:
        return "index"
    cheapest = cost.cheapest({"exact": n_candidates, "index": ntotal})
    exact_s = cost.per_row["exact"] * n_candidates
    if cheapest == "index" and not (unfiltered_s and exact_s <= float(np.median(unfiltered_s))):
        return "index"
    return "exact"


def exact_top_k(vectors: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) of the candidates' `vectors` (row i holds ids[i]) by one product."""
    scores = q @ vectors.T
    top = topk_desc(scores, k)
    return np.take_along_axis(scores, top, axis=1), ids[top]


def selector_top_k(
    index: faiss.Index, params: faiss.SearchParameters, q: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The index's own search under `params` (a selector of the candidates); IVF probes wider when short."""
    scores, ids = index.search(q, k, params=params)
    # IVF: the probed lists may hold fewer than k candidates; probe wider rather than answer short
    while (ids < 0).any() and isinstance(params, faiss.SearchParametersIVF):
        nlist = faiss.extract_index_ivf(index).nlist
        if params.nprobe >= nlist:
            break
        params.nprobe = min(nlist, params.nprobe * 4)
        scores, ids = index.search(q, k, params=params)
    return scores, ids.astype(np.int64)


class SelectorCache:
    """IDSelectorBatch objects over recent candidate sets, reused while the same ranges come back (a cohort
    searched again)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[int, faiss.IDSelector] = OrderedDict()

    def get(self, ranges: tuple[np.ndarray, np.ndarray], cand: np.ndarray) -> faiss.IDSelector:
        """The selector over `cand`, the ids in `ranges`."""
        key = hash((np.asarray(ranges[0]).tobytes(), np.asarray(ranges[1]).tobytes()))
        sel = self._cache.get(key)
        if sel is None:
            sel = faiss.IDSelectorBatch(cand)  # absent ids in it are harmless, so no invalidation
            self._cache[key] = sel
            while len(self._cache) > SELECTOR_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return sel
