"""Restricted searches on an ANN (non-Flat) FAISS index: the plan (an exact scan of the candidates' stored
vectors, an over-fetching unfiltered search kept to the candidates, or the index's own filtered search probing
wider by the selectivity), chosen so recall holds at every selectivity, and each way of answering.

Flat indexes answer restricted searches exactly in flat_search.py; this module is the approximate side.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import faiss
import numpy as np

from echosearch.server.storage.flat_search import topk_desc
from echosearch.server.storage.positions import CostModel

# Starting ratios of seconds per row only; timings replace them. "postfilter" and "index" count the rows of the
# whole index (times the probe widening for "index"), "exact" the candidates.
STRATEGY_PRIORS = {"postfilter": 0.05, "index": 0.05, "exact": 1.0}
SELECTOR_CACHE_ENTRIES = 4
# Post-filter: an unfiltered search for OVERFETCH x k / selectivity hits, keeping the candidates. The filtered
# top-k lie within the unfiltered top k / selectivity in expectation; 3x covers the spread of where they fall.
OVERFETCH = 3
# Only while the hits needed stay near the top: the index's recall falls deeper in its ranking (at 1 %, 3,000
# hits of IVF256 at nprobe 32 kept recall@10 at 0.91; at 10 %, 3,600 hits of IVF4096,SQ8 over 1M frames gave
# 0.92 of the top-10 videos), where probing wider with the selector keeps it (the same 10 % on 400k frames of
# IVF1024,SQ8: post-filter 0.963, the selector 10x wider 1.000, in the same time per query).
MAX_POSTFILTER_DEPTH = 16  # fetch_k <= this x k, i.e. selectivity >= OVERFETCH / 16 (about 19 %)


@dataclass(frozen=True)
class Plan:
    """How a restricted ANN search is answered, and why (search --explain reports it)."""

    strategy: str  # "exact" | "postfilter" | "index"
    candidates: int
    selectivity: float  # candidates / vectors in the index
    fetch_k: int = 0  # postfilter: hits asked of the unfiltered search
    widen: float = 1.0  # index: nprobe / efSearch multiplier over the unfiltered setting
    codes: bool = False  # exact: the stored codes are SQ/PQ approximations (the store re-ranks videos exactly)

    def describe(self) -> str:
        """One line for people."""
        share = f"{self.candidates} candidates ({100 * self.selectivity:.3g} % of the index)"
        if self.strategy == "exact" and self.codes:
            return f"scan of the stored codes of {share}"
        if self.strategy == "exact":
            return f"exact scan of the stored vectors of {share}"
        if self.strategy == "postfilter":
            return f"unfiltered ANN search for {self.fetch_k} hits, keeping the {share}"
        return f"the index's filtered search over the {share}, probing {self.widen:.3g}x wider"


def plan(
    cost: CostModel,
    n_candidates: int,
    ntotal: int,
    unfiltered_s: list[float],
    *,
    exact: bool,
    k: int,
    max_widen: float,
    codes: bool = False,
) -> Plan:
    """How to answer a search restricted to `n_candidates` of `ntotal` vectors, keeping recall.

    - exact (where the stored codes are the original vectors): a scan of the candidates, recall 1; taken when
      it is expected to cost no more than the alternatives or an unfiltered search (`unfiltered_s`). With
      `codes` (an IVF index of SQ/PQ codes) the scan decodes the candidates' codes: no list can be missed, so
      its recall is the codes' own, at least the index's filtered search's (at 10M frames and a 1 % filter
      the selector scanned all 10M codes; 100k decoded candidates cost about half);
    - postfilter: an unfiltered search for OVERFETCH x k / selectivity hits, keeping the candidates: about the
      cost of an unfiltered search, at the index's own recall, while that many hits stay cheap;
    - index: the index's selector with nprobe / efSearch widened by 1 / selectivity (at most `max_widen`), so
      the probed lists still hold the candidates' nearest: the index's filtered search at a kept recall.
    """
    selectivity = n_candidates / max(ntotal, 1)
    fetch_k = int(np.ceil(OVERFETCH * k / max(selectivity, 1e-12)))
    widen = float(min(max_widen, 1.0 / max(selectivity, 1e-12)))
    rows = {"index": int(ntotal * widen)}
    if fetch_k <= min(MAX_POSTFILTER_DEPTH * k, ntotal):
        rows["postfilter"] = ntotal
    scan = exact or codes
    if scan:
        rows["exact"] = n_candidates
    best = cost.cheapest(rows)
    if (
        scan
        and best != "exact"
        and unfiltered_s
        and cost.per_row["exact"] * n_candidates <= float(np.median(unfiltered_s))
    ):
        best = "exact"  # a filter never makes a query slower than none
    return Plan(
        best,
        n_candidates,
        selectivity,
        fetch_k if best == "postfilter" else 0,
        widen if best == "index" else 1.0,
        codes=best == "exact" and not exact,
    )


def in_ranges(ids: np.ndarray, ranges: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Whether each id lies in one of the half-open `ranges` (lo sorted ascending)."""
    lo, hi = ranges
    at = np.searchsorted(lo, ids, side="right") - 1
    return (ids >= 0) & (at >= 0) & (ids < hi[np.clip(at, 0, None)])


def keep_top_k(
    scores: np.ndarray, ids: np.ndarray, ranges: tuple[np.ndarray, np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the first k hits (already best first) with ids in `ranges`; short rows pad with -1."""
    order = np.argsort(ranges[0], kind="stable")
    member = in_ranges(ids, (ranges[0][order], ranges[1][order]))
    out_s = np.full((len(ids), k), -np.inf, np.float32)
    out_i = np.full((len(ids), k), -1, np.int64)
    for qi in range(len(ids)):
        keep = np.flatnonzero(member[qi])[:k]
        out_s[qi, : len(keep)] = scores[qi, keep]
        out_i[qi, : len(keep)] = ids[qi, keep]
    return out_s, out_i


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
