"""FAISS wrappers: an inner-product index over (id, vector) pairs, chosen by factory string.

Ids are caller-chosen int64 (catalog frame ids or video ids). An index whose
factory needs training (IVF, PQ) stays exact (flat) until enough vectors exist,
then trains on what it holds and switches over. With GPUs present a GPU mirror
answers unfiltered searches; the CPU index stays the mutable master (adds go to
both, a removal re-clones the mirror lazily), so saving needs no GPU→CPU copy.
"""

from __future__ import annotations

import logging
import math
import re
import threading

import faiss
import numpy as np

log = logging.getLogger(__name__)

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
        # removal unsupported (HNSW): ids are tombstoned and excluded at search time
        self._tombstones: set[int] = set()
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
        self._configure()

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
        return int(self._index.ntotal) - len(self._tombstones)

    @property
    def on_gpu(self) -> bool:
        """True when searches run on a GPU mirror."""
        return self._want_gpu and gpu_count() > 0 and self._gpu_supported()

    def _gpu_supported(self) -> bool:
        return self._removable  # HNSW has no GPU clone; it stays on CPU

    def ids(self) -> np.ndarray:
        """Every live id in the index (insertion order)."""
        ids = self._all_ids()
        if self._tombstones:
            ids = ids[~np.isin(ids, np.fromiter(self._tombstones, np.int64))]
        return ids

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
        if self._tombstones:
            self._tombstones.difference_update(ids.tolist())
        self._index.add_with_ids(x, ids)
        if self._gpu is not None and not self._gpu_dirty:
            if self._idmapped:
                self._gpu.add(x)  # positions stay aligned with the CPU id map
            else:
                self._gpu.add_with_ids(x, ids)
        if self.exact_fallback and self._index.ntotal >= self.min_train:
            self._train_and_switch()

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; returns how many were present."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return 0
        if not self._removable:
            present = ids[np.isin(ids, self._all_ids())].tolist()
            before = len(self._tombstones)
            self._tombstones.update(present)
            return len(self._tombstones) - before
        # IDSelectorArray: the IVF hashtable direct map only accepts that kind
        removed = int(self._index.remove_ids(faiss.IDSelectorArray(ids)))
        if removed:
            self._gpu_dirty = True
        return removed

    def _train_and_switch(self) -> None:
        """Train the requested ANN index on the vectors held so far and move them into it."""
        flat = faiss.downcast_index(self._index.index)
        n = int(flat.ntotal)
        xb = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim).copy()
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        sample_n = min(n, max(self.min_train, 2 * self.min_train))
        sample = xb[np.random.default_rng(0).choice(n, sample_n, replace=False)] if sample_n < n else xb
        log.info("training %s on %d of %d vectors", self.factory, len(sample), n)
        ann = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        ann.train(sample)
        index = self._with_ids(ann)
        index.add_with_ids(xb, ids)
        self._index, self.exact_fallback = index, False
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

    def search(self, queries: np.ndarray, k: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query, optionally restricted to the ids in `subset`; id -1 pads."""
        q = _as_matrix(queries, self.dim)
        k = int(k)
        if k <= 0 or self._index.ntotal == 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        k = min(k, int(self._index.ntotal))
        sel = None
        if subset is not None:
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(subset, dtype=np.int64))
        dead = dead_batch = None  # the locals keep wrapped selectors alive during the search
        if self._tombstones:
            dead_batch = faiss.IDSelectorBatch(np.fromiter(self._tombstones, np.int64))
            dead = faiss.IDSelectorNot(dead_batch)
            sel = dead if sel is None else faiss.IDSelectorAnd(sel, dead)
        gpu = None if sel is not None else self._gpu_mirror()
        if gpu is not None:
            scores, ids = gpu.search(q, k)
            if self._idmapped:
                id_map = faiss.vector_to_array(self._index.id_map)
                ids = np.where(ids >= 0, id_map[np.clip(ids, 0, None)], -1)
            return scores, ids.astype(np.int64)
        params = None
        if sel is not None:
            inner = self._inner()
            if faiss.try_extract_index_ivf(inner) is not None:
                params = faiss.SearchParametersIVF(
                    sel=sel, nprobe=int(self.nprobe or faiss.extract_index_ivf(inner).nprobe)
                )
            elif hasattr(inner, "hnsw"):
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=int(self.efsearch or inner.hnsw.efSearch))
            else:
                params = faiss.SearchParameters(sel=sel)
        scores, ids = self._index.search(q, k, params=params)
        return scores, ids.astype(np.int64)

    # ---- persistence ---------------------------------------------------------------
    def write(self, path: str) -> None:
        """Write the CPU master index to `path` (not atomic by itself; the store renames)."""
        faiss.write_index(self._index, str(path))

    def tombstones(self) -> np.ndarray:
        """Ids removed from an index type that cannot delete (saved beside it)."""
        return np.fromiter(sorted(self._tombstones), np.int64, len(self._tombstones))

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
        if tombstones is not None:
            out._tombstones = set(int(x) for x in tombstones)
        return out
