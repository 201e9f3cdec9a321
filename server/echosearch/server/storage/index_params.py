"""FAISS index parameters by factory string: when an index can be trained, its nprobe/efSearch defaults, and the
search parameters that restrict a search to a selector."""

from __future__ import annotations

import logging
import math
import re

import faiss
import numpy as np

log = logging.getLogger(__name__)

TRAIN_POINTS_PER_CENTROID = 39  # FAISS warns below this many training points per k-means centroid


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


QUANTIZER_EFSEARCH = 128  # the least efSearch of an HNSW coarse quantizer (IVF…_HNSW…)


def configure_quantizer(ivf: faiss.IndexIVF) -> None:
    """Give an HNSW coarse quantizer a search breadth that finds the right lists.

    FAISS leaves it at efSearch 16, and an add assigns each vector with that breadth: with inner products,
    IVF1024_HNSW32,SQ8 then returned 0.68 of the exact top-10 at any nprobe (IVF1024,SQ8: 0.98), and 0.97 at
    efSearch 128 (400k clustered 512-d frames)."""
    quantizer = faiss.downcast_index(ivf.quantizer)
    if hasattr(quantizer, "hnsw"):
        quantizer.hnsw.efSearch = max(QUANTIZER_EFSEARCH, int(ivf.nprobe))


def search_parameters(
    inner: faiss.Index, sel: faiss.IDSelector, nprobe: int | None, efsearch: int | None, widen: float = 1.0
) -> faiss.SearchParameters:
    """Search parameters of the right kind for `inner` (IVF, HNSW or other) that restrict it to `sel`, probing
    `widen` times wider than nprobe / efSearch (a filtered search keeps its recall that way)."""
    if faiss.try_extract_index_ivf(inner) is not None:
        ivf = faiss.extract_index_ivf(inner)
        probes = int(np.ceil((nprobe or ivf.nprobe) * widen))
        return faiss.SearchParametersIVF(sel=sel, nprobe=min(probes, ivf.nlist))
    if hasattr(inner, "hnsw"):
        return faiss.SearchParametersHNSW(sel=sel, efSearch=int(np.ceil((efsearch or inner.hnsw.efSearch) * widen)))
    return faiss.SearchParameters(sel=sel)


def max_widen(inner: faiss.Index, nprobe: int | None) -> float:
    """How much wider than its unfiltered setting a filtered search may probe: every IVF list, or 16x the HNSW
    beam; 1 for other indexes."""
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        return max(1.0, ivf.nlist / max(int(nprobe or ivf.nprobe), 1))
    return 16.0 if hasattr(inner, "hnsw") else 1.0


def as_matrix(x: np.ndarray, dim: int) -> np.ndarray:
    """Query or data vectors as a C-contiguous (n, dim) float32 matrix (one vector becomes one row)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of width {dim}, got shape {x.shape}")
    return x


def stored_ids(index: faiss.Index, idmapped: bool) -> np.ndarray:
    """Every id an index holds: its id map, or the ids of its IVF lists."""
    if idmapped:
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    invlists = faiss.extract_index_ivf(index).invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
        for i in range(invlists.nlist)
        if invlists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


def trained_index(factory: str, xb: np.ndarray, min_train: int) -> faiss.Index:
    """An empty `factory` index trained on a sample of `xb` (twice the minimum, seeded, so it is reproducible)."""
    n = len(xb)
    sample_n = min(n, 2 * min_train)
    sample = xb[np.random.default_rng(0).choice(n, sample_n, replace=False)] if sample_n < n else xb
    log.info("training %s on %d of %d vectors", factory, len(sample), n)
    ann = faiss.index_factory(xb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    ann.train(sample)
    ivf = faiss.try_extract_index_ivf(ann)
    if ivf is not None:
        configure_quantizer(ivf)  # before the first add assigns vectors to lists
    return ann
