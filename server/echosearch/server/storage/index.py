"""VectorIndex: a FAISS inner-product index over (id, vector) pairs, chosen by factory string.

Ids are caller-chosen int64 (catalog frame ids or video ids). An index whose
factory needs training (IVF, PQ) stays exact (flat) until enough vectors exist,
then trains on what it holds and switches over. With GPUs present a GPU mirror
(faiss_gpu.py) answers unfiltered searches; this CPU index stays the mutable master.

Removal: IVF indexes remove ids at once (their hashtable direct map makes that O(removed)).
Indexes under an id map (Flat, HNSW, PQ...) would shift the whole store per removal, so rows are
tombstoned instead and compacted in one pass once more than COMPACT_FRACTION of them are dead
(HNSW cannot remove at all: its tombstones stay). Restricted searches: exact on Flat (flat_search.py),
planned on ANN indexes (ann_filtered.py). Parameters by factory: index_params.py; files: snapshots.py.
"""

from __future__ import annotations

import logging
import time

import faiss
import numpy as np

from echosearch.server.storage import ann_filtered, flat_search, search_plans
from echosearch.server.storage.faiss_gpu import GpuMirror, can_overfetch, gpu_count, live_top_k
from echosearch.server.storage.flat_storage import is_flat_factory, is_plain_flat, reserve_flat, stores_exact_vectors
from echosearch.server.storage.index_params import (
    as_matrix,
    configure_quantizer,
    default_efsearch,
    default_nprobe,
    max_widen,
    min_train_size,
    search_parameters,
    stored_ids,
    trained_index,
)
from echosearch.server.storage.positions import CostModel, RowMap

log = logging.getLogger(__name__)

COMPACT_FRACTION = 0.2  # compact an id-mapped index once this share of its rows is tombstoned


class VectorIndex:
    """Inner-product search over id-tagged vectors; exact until the chosen ANN index is trained."""

    def __init__(
        self,
        dim: int,
        factory: str = "Flat",
        *,
        use_gpu: bool | None = None,
        nprobe: int | None = None,
        efsearch: int | None = None,
        _loaded: faiss.Index | None = None,
    ) -> None:
        self.dim = int(dim)
        self.factory = factory
        # without these, `serve --index IVF4096,Flat` would search 1 list (FAISS's default)
        self.nprobe = default_nprobe(factory) if nprobe is None else nprobe
        self.efsearch = default_efsearch(factory) if efsearch is None else efsearch
        self.min_train = min_train_size(factory)
        self._want_gpu = gpu_count() > 0 if use_gpu is None else bool(use_gpu)
        self._gpu = GpuMirror()
        self.auto_compact = True  # compact inside remove(); the store turns this off and compacts off-lock
        self._rows: RowMap | None = None  # id-mapped indexes: row -> id and tombstones
        self._dead_sel: tuple | None = None  # cached exclusion selector for tombstoned ids
        self._selectors = ann_filtered.SelectorCache()  # recent candidate selectors
        # filtered searches: measured seconds per row of each strategy (see search)
        self.flat_cost = CostModel(flat_search.STRATEGY_PRIORS)
        self.ann_cost = CostModel(ann_filtered.STRATEGY_PRIORS)
        self._unfiltered_s: list[float] = []  # recent unfiltered search times per query (ANN indexes)
        self.last_plan: ann_filtered.Plan | None = None  # the latest restricted ANN search's plan (diagnostics)
        if _loaded is not None:
            self._index = _loaded
            self.exact_fallback = is_plain_flat(_loaded) and not is_flat_factory(factory)
        else:
            probe = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)  # validates the string
            if probe.is_trained:
                self._index, self.exact_fallback = self._with_ids(probe), False
            else:
                self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
                self.exact_fallback = True
        self._known: RowMap | None = None  # IVF indexes: the ids they hold (for filters)
        self._track_ids()
        self._configure()

    def _track_ids(self) -> None:
        if self._idmapped:
            self._rows, self._known = RowMap(faiss.vector_to_array(self._index.id_map).astype(np.int64)), None
        else:
            self._rows, self._known = None, RowMap(self._all_ids())

    # ---- state -------------------------------------------------------------------
    @staticmethod
    def _with_ids(index: faiss.Index) -> faiss.Index:
        """IVF indexes keep caller ids natively (an IDMap over IVF breaks on removal); others get IDMap2."""
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is None:
            return faiss.IndexIDMap2(index)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by id
        return index

    @property
    def _idmapped(self) -> bool:
        return isinstance(self._index, faiss.IndexIDMap2)

    def _inner(self) -> faiss.Index:
        return faiss.downcast_index(self._index.index) if self._idmapped else self._index

    def _configure(self) -> None:
        inner = self._inner()
        ivf = faiss.try_extract_index_ivf(inner) if hasattr(faiss, "try_extract_index_ivf") else None
        if ivf is not None and self.nprobe:
            ivf.nprobe = int(self.nprobe)
        if ivf is not None:
            configure_quantizer(ivf)
        if hasattr(inner, "hnsw") and self.efsearch:
            inner.hnsw.efSearch = int(self.efsearch)
        self._removable = not hasattr(inner, "hnsw")

    @property
    def ntotal(self) -> int:
        """Live vectors (tombstoned ones excluded)."""
        return int(self._index.ntotal) - (self._rows.dead if self._rows is not None else 0)

    @property
    def _flat(self) -> faiss.IndexFlat | None:
        """The inner flat store when rows are searched exactly by row."""
        inner = self._inner() if self._rows is not None else None
        return inner if isinstance(inner, faiss.IndexFlat) else None

    @property
    def is_flat(self) -> bool:
        """The index is a plain copy of its vectors (Flat, or an ANN index not trained yet)."""
        return is_plain_flat(self._index)

    @property
    def exact_storage(self) -> bool:
        """Stored vectors are the originals (Flat codes), so a scan over them is exact."""
        return stores_exact_vectors(self._inner())

    @property
    def on_gpu(self) -> bool:
        """True when searches run on a GPU mirror (HNSW has no GPU clone; it stays on CPU)."""
        return self._want_gpu and gpu_count() > 0 and self._removable

    def ids(self) -> np.ndarray:
        """Every live id in the index (insertion order)."""
        if self._rows is not None:
            return self._rows.ids[self._rows.alive].copy()
        return self._all_ids()

    def _all_ids(self) -> np.ndarray:
        return stored_ids(self._index, self._idmapped)

    def exact_vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, vectors) of the live rows when the index stores them as given (Flat), else None."""
        flat = self._flat
        if flat is None:
            return None
        alive = self._rows.alive
        return self._rows.ids[alive], flat_search.flat_vectors(flat)[alive]

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors for `ids` (approximate for compressed indexes such as PQ)."""
        rows = [self._index.reconstruct(int(i)) for i in ids]
        return np.vstack(rows) if rows else np.empty((0, self.dim), np.float32)

    # ---- writes ------------------------------------------------------------------
    def reserve(self, n: int) -> None:
        """Room for `n` more vectors in a Flat index, so a rebuild's adds copy each vector once."""
        if self.is_flat and self._idmapped and not self.exact_fallback and n > 0:
            reserve_flat(self._index, n)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under `ids` (ids must not be present already)."""
        x = as_matrix(vectors, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} ids for {len(x)} vectors")
        if len(ids) == 0:
            return
        self._index.add_with_ids(x, ids)
        (self._rows if self._rows is not None else self._known).append(ids)
        self._gpu.follow_add(x, ids, self._idmapped)
        if self.exact_fallback and self._index.ntotal >= self.min_train:
            self._train_and_switch()

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; returns how many were present. Id-mapped indexes tombstone, then compact."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return 0
        if self._rows is not None:
            removed = self._rows.kill(self._rows.rows_of(ids))
            if removed:
                self._dead_sel = None
                if self.auto_compact and self.needs_compaction():
                    self.finish_compaction(self.prepare_compaction())
            return removed
        # IDSelectorArray: the IVF hashtable direct map only accepts that kind
        removed = int(self._index.remove_ids(faiss.IDSelectorArray(ids)))
        if removed:
            self._gpu.mark_stale()
            self._known.kill(self._known.rows_of(ids))
            if self._known.dead > COMPACT_FRACTION * self._known.n:
                self._known = self._known.compacted()
        return removed

    def needs_compaction(self) -> bool:
        return self._rows is not None and self._removable and self._rows.dead > COMPACT_FRACTION * self._rows.n

    def prepare_compaction(self) -> tuple[faiss.Index, RowMap] | None:
        """Build the index without its tombstoned rows; reads only, so searches may run meanwhile."""
        rows = self._rows
        if rows is None or not rows.dead or not self._removable:
            return None
        flat = self._flat
        if flat is not None:
            fresh = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            fresh.add_with_ids(np.ascontiguousarray(flat_search.flat_vectors(flat)[rows.alive]), rows.ids[rows.alive])
        else:
            fresh = faiss.clone_index(self._index)
            fresh.remove_ids(faiss.IDSelectorBatch(rows.dead_ids()))
        return fresh, rows.compacted()

    def finish_compaction(self, prepared: tuple[faiss.Index, RowMap] | None) -> None:
        """Swap in what prepare_compaction built (the caller excludes searches and writes meanwhile)."""
        if prepared is None:
            return
        dropped = self._rows.dead if self._rows is not None else 0
        self._index, self._rows = prepared
        self._dead_sel = None
        self._gpu.drop()
        self._known = None
        self._configure()
        log.info("compacted %s index: %d tombstoned rows dropped", self.factory, dropped)

    def _train_and_switch(self) -> None:
        """Train the requested ANN index on the vectors held so far and move them into it."""
        flat = faiss.downcast_index(self._index.index)
        alive = self._rows.alive
        xb = np.ascontiguousarray(flat_search.flat_vectors(flat)[alive])
        ids = self._rows.ids[alive].copy()
        n = len(ids)
        index = self._with_ids(trained_index(self.factory, xb, self.min_train))
        index.add_with_ids(xb, ids)
        self._index, self.exact_fallback = index, False
        self._track_ids()
        self._dead_sel = None
        self._gpu.drop()
        self._configure()
        log.info("%s trained; %d vectors moved from the exact fallback", self.factory, n)

    # ---- search ------------------------------------------------------------------
    def _gpu_mirror(self) -> faiss.Index | None:
        return self._gpu.get(self._inner(), self.nprobe) if self.on_gpu else None

    def search(
        self,
        queries: np.ndarray,
        k: int,
        subset: np.ndarray | None = None,
        *,
        ranges: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; id -1 pads.

        A restriction is given as `subset` ids or as half-open id `ranges` (lo, hi), one per video. Flat
        indexes stay exact (flat_search.py); ANN indexes follow ann_filtered.plan, which keeps recall.
        """
        q = as_matrix(queries, self.dim)
        k = min(int(k), self.ntotal)
        if k <= 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        if subset is None and ranges is None:
            search_plans.note(f"{self.factory}: the whole index ({self.ntotal} vectors)")
            return self._search_all(q, k)
        if ranges is None:
            subset = np.asarray(subset, np.int64).reshape(-1)
            ranges = (subset, subset + 1)
        flat = self._flat
        if flat is not None:
            rows = self._rows.rows_in_ranges(*ranges)
            search_plans.note(f"{self.factory}: exact over {len(rows)} candidate vectors of {self.ntotal}")
            scores, found = flat_search.search_rows(flat, q, k, rows, self._rows.alive, self.flat_cost)
            return scores, self._row_ids(found)
        return self._search_ann_filtered(q, k, ranges)

    def _row_ids(self, rows: np.ndarray) -> np.ndarray:
        ids = self._rows.ids[np.clip(rows, 0, None)] if self._rows.n else np.full(rows.shape, -1, np.int64)
        return np.where(rows >= 0, ids, -1)

    def _search_all(self, q: np.ndarray, k: int, *, timed: bool = True) -> tuple[np.ndarray, np.ndarray]:
        n_dead = self._rows.dead if self._rows is not None else 0
        dead = n_dead > 0
        if can_overfetch(k, n_dead):
            gpu = self._gpu_mirror()
            if gpu is not None:
                if not self._idmapped:
                    scores, ids = gpu.search(q, k)
                    return scores, ids.astype(np.int64)
                scores, rows = live_top_k(gpu, q, k, self._rows.alive, n_dead)
                return scores, self._row_ids(rows)
        if not dead:
            t0 = time.perf_counter()
            scores, ids = self._index.search(q, k)
            if self._flat is None and timed:  # an ANN index: its unfiltered time bounds exact filtered scans
                self._unfiltered_s.append((time.perf_counter() - t0) / len(q))
                del self._unfiltered_s[:-9]
            return scores, ids.astype(np.int64)
        flat = self._flat
        if flat is not None:
            scores, rows = flat_search.bitmap_search(flat, q, k, self._rows.alive)
            return scores, self._row_ids(rows)
        scores, ids = self._index.search(q, k, params=self._params(self._dead_selector()))
        return scores, ids.astype(np.int64)

    def _dead_selector(self) -> faiss.IDSelector:
        if self._dead_sel is None:
            batch = faiss.IDSelectorBatch(self._rows.dead_ids())
            self._dead_sel = (faiss.IDSelectorNot(batch), batch)  # the tuple keeps `batch` alive
        return self._dead_sel[0]

    def _params(self, sel: faiss.IDSelector, widen: float = 1.0) -> faiss.SearchParameters:
        return search_parameters(self._inner(), sel, self.nprobe, self.efsearch, widen)

    def _search_ann_filtered(
        self, q: np.ndarray, k: int, ranges: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """ANN index, restricted: a scan of the candidates' stored vectors or codes, or the index's selector."""
        if self._rows is not None:
            rows = self._rows.rows_in_ranges(*ranges)
            cand = self._rows.ids[rows]
        else:
            rows, cand = None, self._known.ids[self._known.rows_in_ranges(*ranges)]
        if len(cand) == 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        plan = ann_filtered.plan(
            self.ann_cost,
            len(cand),
            int(self._index.ntotal),
            self._unfiltered_s,
            exact=self.exact_storage,
            codes=faiss.try_extract_index_ivf(self._inner()) is not None,  # SQ/PQ lists: a scan of codes
            k=k,
            max_widen=max_widen(self._inner(), self.nprobe),
        )
        t0 = time.perf_counter()
        out = self._answer(plan, q, k, ranges, rows, cand)
        per_query = (time.perf_counter() - t0) / len(q)  # costs are per query: batches vary in size
        rows_touched = len(cand) if plan.strategy == "exact" else int(self._index.ntotal * plan.widen)
        self.ann_cost.learn(plan.strategy, per_query, rows_touched)
        self.last_plan = plan
        search_plans.note(f"{self.factory}: {plan.describe()}")
        return out

    def _answer(
        self,
        plan: ann_filtered.Plan,
        q: np.ndarray,
        k: int,
        ranges: tuple[np.ndarray, np.ndarray],
        rows: np.ndarray | None,
        cand: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        if plan.strategy == "exact":
            vectors = self._inner().reconstruct_batch(rows) if rows is not None else self._index.reconstruct_batch(cand)
            return ann_filtered.exact_top_k(vectors, cand, q, k)
        want = min(k, len(cand))
        if plan.strategy == "postfilter":
            out = ann_filtered.keep_top_k(*self._search_all(q, plan.fetch_k, timed=False), ranges, want)
            if not (out[1] < 0).any():  # short: too few candidates among the hits, so probe with the selector
                return out
            plan = ann_filtered.Plan(
                "index", plan.candidates, plan.selectivity, widen=max_widen(self._inner(), self.nprobe)
            )
        sel = self._selectors.get(ranges, cand)
        if self._rows is not None and self._rows.dead:
            sel = faiss.IDSelectorAnd(sel, self._dead_selector())
        return ann_filtered.selector_top_k(self._index, self._params(sel, plan.widen), q, want)

    # ---- persistence (storage/snapshots.py writes and reads the files) ----------------
    @property
    def master(self) -> faiss.Index:
        """The CPU master FAISS index: what a snapshot writes (its tombstones are saved beside it)."""
        return self._index

    def tombstones(self) -> np.ndarray:
        """Ids tombstoned but still stored (saved beside the index)."""
        return np.empty(0, np.int64) if self._rows is None else self._rows.dead_ids()

    def restore_tombstones(self, ids: np.ndarray) -> None:
        """Tombstone `ids` of an index just read back (catalog ids are never reused, so they stay dead)."""
        if len(ids) and self._rows is not None:
            self._rows.kill(self._rows.rows_of(ids))
