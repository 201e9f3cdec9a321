"""FAISS wrappers: an inner-product index over (id, vector) pairs, chosen by factory string.

Ids are caller-chosen int64 (catalog frame ids or video ids). An index whose
factory needs training (IVF, PQ) stays exact (flat) until enough vectors exist,
then trains on what it holds and switches over. With GPUs present a GPU mirror
answers unfiltered searches; the CPU index stays the mutable master (adds go to
both, a removal re-clones the mirror lazily), so saving needs no GPU→CPU copy.

Removal: IVF indexes remove ids at once (their hashtable direct map makes that O(removed)).
Indexes under an id map (Flat, HNSW, PQ...) would shift the whole store per removal, so rows are
tombstoned instead and compacted in one pass once more than COMPACT_FRACTION of them are dead
(HNSW cannot remove at all: its tombstones stay). Filtered searches: see `search`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict

import faiss
import numpy as np

from echosearch.server.storage import flat_search
from echosearch.server.storage.positions import CostModel, RowMap

log = logging.getLogger(__name__)

COMPACT_FRACTION = 0.2  # compact an id-mapped index once this share of its rows is tombstoned
GPU_MAX_K = 2048  # FAISS GPU's largest k
GPU_OVERFETCH_MAX = 1024  # up to this many tombstones, the GPU mirror over-fetches instead of stepping aside

TRAIN_POINTS_PER_CENTROID = 39  # FAISS warns below this many training points per k-means centroid


def gpu_count() -> int:
    """Visible FAISS GPUs (0 on faiss-cpu builds)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def min_train_size(factory: str) -> int:
    """Vectors needed before `factory` is trained: k-means needs ~39 points per centroid."""
    need = 0
    for m in re.finditer(r"IVF(\d+)", factory):
        need = max(need, int(m.group(1)) * TRAIN_POINTS_PER_CENTROID)
    for m in re.finditer(r"PQ\d+(?:x(\d+))?", factory):
        need = max(need, (1 << int(m.group(1) or 8)) * TRAIN_POINTS_PER_CENTROID)
    if re.search(r"SQ\d|LSH|RaBitQ", factory):
        need = max(need, 1000)
    return need


# FAISS's default of 16 gives poor recall at 512-d. At 1M clustered frames (bench/store.py, HNSW32,
# efConstruction 40) efSearch 128 gave recall@10 0.76 for frame queries and 0.65 for text-like ones;
# 512 gave 0.85 / 0.83 at still ~55-65x Flat speed (1024: 0.89 / 0.87 at ~22-25x). HNSW stays short
# of IVF there; IVF4096,Flat is the index to choose at that size.
DEFAULT_EFSEARCH = 512


def default_nprobe(factory: str) -> int | None:
    """nprobe used when none is given: 2·√nlist of the IVF lists (None for non-IVF factories).

    FAISS's own default is 1 list, far too few. At 1M clustered frames (bench/store.py,
    1 query thread): IVF1024 with nprobe 64 (= 2·√1024) gave recall@10 0.998 for frame queries
    and 0.93 for text-like ones at 13x Flat speed. IVF4096 with nprobe 128 (= 2·√4096) gave 1.000
    for both at 20-22x (nprobe 32 already 1.000 at ~75x, so 128 leaves a recall margin for data
    harder than the synthetic set); the older nlist/16 rule (256) sat at the 10x edge. That margin
    rests on the data having fewer clusters (2,000) than lists: with 8,000 centres IVF4096/128 gave
    0.99 frame but only 0.76 text-like recall at 18x (IVF1024/64: 0.68 at 11x).
    """
    m = re.search(r"IVF(\d+)", factory)
    if not m:
        return None
    nlist = int(m.group(1))
    return max(1, min(nlist, round(2 * math.sqrt(nlist))))


def default_efsearch(factory: str) -> int | None:
    """efSearch used for HNSW factories when none is given."""
    return DEFAULT_EFSEARCH if "HNSW" in factory else None


def _as_matrix(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of width {dim}, got shape {x.shape}")
    return x


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
        self._gpu: faiss.Index | None = None
        self._gpu_dirty = True
        self._gpu_lock = threading.Lock()  # concurrent searches may race to build the mirror
        self.auto_compact = True  # compact inside remove(); the store turns this off and compacts off-lock
        self._rows: RowMap | None = None  # id-mapped indexes: row -> id and tombstones
        self._dead_sel: tuple | None = None  # cached exclusion selector for tombstoned ids
        self._sel_cache: OrderedDict[int, faiss.IDSelector] = OrderedDict()  # recent candidate selectors
        # filtered searches: measured seconds per row of each strategy (see search)
        self.flat_cost = CostModel(flat_search.STRATEGY_PRIORS)
        self.ann_cost = CostModel({"index": 0.05, "exact": 1.0})
        self._unfiltered_s: list[float] = []  # recent unfiltered search times per query (ANN indexes)
        if _loaded is not None:
            self._index = _loaded
            self.exact_fallback = self._is_flat(_loaded) and not self._factory_is_flat()
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
    def _factory_is_flat(self) -> bool:
        return self.factory.strip() in ("Flat", "IDMap,Flat", "IDMap2,Flat")

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

    @staticmethod
    def _is_flat(index: faiss.Index) -> bool:
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
        return isinstance(inner, faiss.IndexFlat)

    def _configure(self) -> None:
        inner = self._inner()
        ivf = faiss.try_extract_index_ivf(inner) if hasattr(faiss, "try_extract_index_ivf") else None
        if ivf is not None and self.nprobe:
            ivf.nprobe = int(self.nprobe)
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
    def exact_storage(self) -> bool:
        """Stored vectors are the originals (Flat codes), so a scan over them is exact."""
        inner = self._inner()
        if isinstance(inner, faiss.IndexFlat):
            return True
        ivf = faiss.try_extract_index_ivf(inner)
        if ivf is not None:
            return isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFlat)
        storage = getattr(inner, "storage", None)
        return storage is not None and isinstance(faiss.downcast_index(storage), faiss.IndexFlat)

    @property
    def on_gpu(self) -> bool:
        """True when searches run on a GPU mirror."""
        return self._want_gpu and gpu_count() > 0 and self._gpu_supported()

    def _gpu_supported(self) -> bool:
        return self._removable  # HNSW has no GPU clone; it stays on CPU

    def ids(self) -> np.ndarray:
        """Every live id in the index (insertion order)."""
        if self._rows is not None:
            return self._rows.ids[self._rows.alive].copy()
        return self._all_ids()

    def _all_ids(self) -> np.ndarray:
        if self._idmapped:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        invlists = faiss.extract_index_ivf(self._index).invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(invlists.nlist)
            if invlists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)

    def exact_vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, vectors) of the live rows when the index stores them as given (Flat), else None."""
        flat = self._flat
        if flat is None:
            return None
        alive = self._rows.alive
        return self._rows.ids[alive], flat_search.flat_vectors(flat)[alive]

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors for `ids` (approximate for compressed indexes such as PQ)."""
        return (
            np.vstack([self._index.reconstruct(int(i)) for i in ids])
            if len(ids)
            else np.empty((0, self.dim), np.float32)
        )

    # ---- writes ------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under `ids` (ids must not be present already)."""
        x = _as_matrix(vectors, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} ids for {len(x)} vectors")
        if len(ids) == 0:
            return
        self._index.add_with_ids(x, ids)
        (self._rows if self._rows is not None else self._known).append(ids)
        if self._gpu is not None and not self._gpu_dirty:
            if self._idmapped:
                self._gpu.add(x)  # positions stay aligned with the CPU id map
            else:
                self._gpu.add_with_ids(x, ids)
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
            self._gpu_dirty = True
            self._known.kill(self._known.rows_of(ids))
            if self._known.dead > COMPACT_FRACTION * self._known.n:
                self._known = self._known.compacted()
        return removed

    def needs_compaction(self) -> bool:
        rows = self._rows
        return rows is not None and self._removable and rows.dead > COMPACT_FRACTION * rows.n

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
        self._dead_sel, self._gpu, self._gpu_dirty = None, None, True
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
        sample_n = min(n, max(self.min_train, 2 * self.min_train))
        sample = xb[np.random.default_rng(0).choice(n, sample_n, replace=False)] if sample_n < n else xb
        log.info("training %s on %d of %d vectors", self.factory, len(sample), n)
        ann = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        ann.train(sample)
        index = self._with_ids(ann)
        index.add_with_ids(xb, ids)
        self._index, self.exact_fallback = index, False
        self._track_ids()
        self._dead_sel = None
        self._gpu, self._gpu_dirty = None, True
        self._configure()
        log.info("%s trained; %d vectors moved from the exact fallback", self.factory, n)

    # ---- search ------------------------------------------------------------------
    def _gpu_mirror(self) -> faiss.Index | None:
        if not self.on_gpu:
            return None
        with self._gpu_lock:
            return self._gpu_mirror_locked()

    def _gpu_mirror_locked(self) -> faiss.Index:
        if self._gpu is None or self._gpu_dirty:
            self._gpu = faiss.index_cpu_to_all_gpus(self._inner())
            self._gpu_dirty = False
            if self.nprobe:
                try:
                    faiss.GpuParameterSpace().set_index_parameter(self._gpu, "nprobe", int(self.nprobe))
                except Exception:
                    pass
        return self._gpu

    def search(
        self,
        queries: np.ndarray,
        k: int,
        subset: np.ndarray | None = None,
        *,
        ranges: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; id -1 pads.

        A restriction is given as `subset` ids or as half-open id `ranges` (lo, hi) — one range
        per video covers its frames. Flat indexes stay exact: a bitmap-selector scan or a gather of
        the candidate rows, whichever has measured cheaper per row. Other indexes pick, by measured
        cost, an exact scan of the candidates' stored vectors (when the codes are the originals) or
        the index's own filtered search, which has the index's approximate recall.
        """
        q = _as_matrix(queries, self.dim)
        k = min(int(k), self.ntotal)
        if k <= 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        if subset is None and ranges is None:
            return self._search_all(q, k)
        if ranges is None:
            subset = np.asarray(subset, np.int64).reshape(-1)
            ranges = (subset, subset + 1)
        flat = self._flat
        if flat is not None:
            rows = self._rows.rows_in_ranges(*ranges)
            scores, found = flat_search.search_rows(flat, q, k, rows, self._rows.alive, self.flat_cost)
            return scores, self._row_ids(found)
        return self._search_ann_filtered(q, k, ranges)

    def _row_ids(self, rows: np.ndarray) -> np.ndarray:
        ids = self._rows.ids[np.clip(rows, 0, None)] if self._rows.n else np.full(rows.shape, -1, np.int64)
        return np.where(rows >= 0, ids, -1)

    def _search_all(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n_dead = self._rows.dead if self._rows is not None else 0
        dead = n_dead > 0
        if n_dead <= GPU_OVERFETCH_MAX and k + n_dead <= GPU_MAX_K:
            gpu = self._gpu_mirror()
            if gpu is not None:
                # tombstoned rows are still in the GPU clone: fetch that many more, then drop them
                scores, rows = gpu.search(q, k + n_dead)
                if not self._idmapped:
                    return scores, rows.astype(np.int64)
                rows = rows.astype(np.int64)
                if dead:
                    live = (rows >= 0) & self._rows.alive[np.clip(rows, 0, None)]
                    order = np.argsort(~live, axis=1, kind="stable")[:, :k]  # live hits first, in score order
                    scores = np.where(np.take_along_axis(live, order, 1), np.take_along_axis(scores, order, 1), -np.inf)
                    rows = np.where(np.take_along_axis(live, order, 1), np.take_along_axis(rows, order, 1), -1)
                return scores.astype(np.float32), self._row_ids(rows)
        if not dead:
            t0 = time.perf_counter()
            scores, ids = self._index.search(q, k)
            if self._flat is None:  # an ANN index: its unfiltered time bounds exact filtered scans
                self._unfiltered_s.append((time.perf_counter() - t0) / len(q))
                del self._unfiltered_s[:-9]
            return scores, ids.astype(np.int64)
        flat = self._flat
        if flat is not None:
            scores, rows = flat_search.bitmap_search(flat, q, k, self._rows.alive)
            return scores, self._row_ids(rows)
        scores, ids = self._index.search(q, k, params=self._params(self._dead_selector()))
        return scores, ids.astype(np.int64)

    def _candidate_selector(self, ranges: tuple[np.ndarray, np.ndarray], cand: np.ndarray) -> faiss.IDSelector:
        """An IDSelectorBatch over `cand`, reused while the same ranges come back (a cohort searched again)."""
        key = hash((np.asarray(ranges[0]).tobytes(), np.asarray(ranges[1]).tobytes()))
        sel = self._sel_cache.get(key)
        if sel is None:
            sel = faiss.IDSelectorBatch(cand)  # absent ids in it are harmless, so no invalidation
            self._sel_cache[key] = sel
            while len(self._sel_cache) > 4:
                self._sel_cache.popitem(last=False)
        else:
            self._sel_cache.move_to_end(key)
        return sel

    def _dead_selector(self) -> faiss.IDSelector:
        if self._dead_sel is None:
            batch = faiss.IDSelectorBatch(self._rows.dead_ids())
            self._dead_sel = (faiss.IDSelectorNot(batch), batch)  # the tuple keeps `batch` alive
        return self._dead_sel[0]

    def _params(self, sel: faiss.IDSelector) -> faiss.SearchParameters:
        inner = self._inner()
        if faiss.try_extract_index_ivf(inner) is not None:
            return faiss.SearchParametersIVF(sel=sel, nprobe=int(self.nprobe or faiss.extract_index_ivf(inner).nprobe))
        if hasattr(inner, "hnsw"):
            return faiss.SearchParametersHNSW(sel=sel, efSearch=int(self.efsearch or inner.hnsw.efSearch))
        return faiss.SearchParameters(sel=sel)

    def _search_ann_filtered(
        self, q: np.ndarray, k: int, ranges: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """ANN index, restricted: exact over the candidates' stored vectors, or the index's selector."""
        if self._rows is not None:
            rows = self._rows.rows_in_ranges(*ranges)
            cand = self._rows.ids[rows]
        else:
            rows, cand = None, self._known.ids[self._known.rows_in_ranges(*ranges)]
        if len(cand) == 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        how = "exact" if self.exact_storage else "index"
        if how == "exact":
            # Exact whenever it is expected to cost no more than the index's own filtered search or an
            # unfiltered search of this index (so a filter never makes a query slower than none, and small
            # candidate sets are answered exactly); otherwise the index's selector, at its recall.
            cheapest = self.ann_cost.cheapest({"exact": len(cand), "index": int(self._index.ntotal)})
            exact_s = self.ann_cost.per_row["exact"] * len(cand)
            if cheapest == "index" and not (self._unfiltered_s and exact_s <= float(np.median(self._unfiltered_s))):
                how = "index"
        t0 = time.perf_counter()
        if how == "exact":
            vectors = self._inner().reconstruct_batch(rows) if rows is not None else self._index.reconstruct_batch(cand)
            scores = q @ vectors.T
            top = flat_search.topk_desc(scores, k)
            out = np.take_along_axis(scores, top, axis=1), cand[top]
        else:
            sel = self._candidate_selector(ranges, cand)
            if self._rows is not None and self._rows.dead:
                sel = faiss.IDSelectorAnd(sel, self._dead_selector())
            kk = min(k, len(cand))
            params = self._params(sel)
            scores, ids = self._index.search(q, kk, params=params)
            # IVF: the probed lists may hold fewer than k candidates; probe wider rather than answer short
            while (ids < 0).any() and isinstance(params, faiss.SearchParametersIVF):
                nlist = faiss.extract_index_ivf(self._inner()).nlist
                if params.nprobe >= nlist:
                    break
                params.nprobe = min(nlist, params.nprobe * 4)
                scores, ids = self._index.search(q, kk, params=params)
            out = scores, ids.astype(np.int64)
        per_query = (time.perf_counter() - t0) / len(q)  # costs are per query: batches vary in size
        self.ann_cost.learn(how, per_query, len(cand) if how == "exact" else int(self._index.ntotal))
        return out

    # ---- persistence ---------------------------------------------------------------
    def write(self, path: str) -> None:
        """Write the CPU master index to `path` (not atomic by itself; the store renames)."""
        faiss.write_index(self._index, str(path))

    def tombstones(self) -> np.ndarray:
        """Ids tombstoned but still stored (saved beside the index)."""
        return np.empty(0, np.int64) if self._rows is None else self._rows.dead_ids()

    @classmethod
    def read(
        cls,
        path: str,
        factory: str,
        *,
        use_gpu: bool | None = None,
        nprobe: int | None = None,
        efsearch: int | None = None,
        tombstones: np.ndarray | None = None,
    ) -> VectorIndex:
        """Load an index written by `write`."""
        loaded = faiss.read_index(str(path))  # already downcast; re-wrapping would free it early
        if not isinstance(loaded, faiss.IndexIDMap2) and faiss.try_extract_index_ivf(loaded) is None:
            raise ValueError(f"{path} is not an id-carrying FAISS index")
        out = cls(loaded.d, factory, use_gpu=use_gpu, nprobe=nprobe, efsearch=efsearch, _loaded=loaded)
        if tombstones is not None and len(tombstones) and out._rows is not None:
            out._rows.kill(out._rows.rows_of(tombstones))  # catalog ids are never reused
        return out
