"""Which FAISS indexes store the vectors themselves, and room in a Flat one for vectors about to be added."""

from __future__ import annotations

import faiss


def reserve_flat(index: faiss.IndexIDMap2, n: int) -> None:
    """Make room for `n` more vectors in an id-mapped Flat index without changing what it holds.

    FAISS grows its storage by reallocating as adds arrive; a rebuild of a million frames spent ~4x the catalog
    scan's time in those copies. Resizing the code and id vectors up and back down keeps their capacity
    (std::vector), using only FAISS's public `resize`; the adds that follow then copy each vector once.
    """
    flat, size = faiss.downcast_index(index.index), int(index.ntotal)
    flat.codes.resize((size + n) * flat.code_size)
    flat.codes.resize(size * flat.code_size)
    index.id_map.resize(size + n)
    index.id_map.resize(size)


FLAT_FACTORIES = ("Flat", "IDMap,Flat", "IDMap2,Flat")  # the factory strings that make a Flat index


def is_flat_factory(factory: str) -> bool:
    """Whether `factory` makes a Flat index (no ANN to train)."""
    return factory.strip() in FLAT_FACTORIES


def is_plain_flat(index: faiss.Index) -> bool:
    """A Flat index (under an id map or not): its storage is a plain copy of the vectors."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    return isinstance(inner, faiss.IndexFlat)


def stores_exact_vectors(inner: faiss.Index) -> bool:
    """The index's codes are the original vectors (Flat, IVF…,Flat, HNSW over Flat): a scan over them is exact."""
    if isinstance(inner, faiss.IndexFlat):
        return True
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        return isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFlat)
    storage = getattr(inner, "storage", None)
    return storage is not None and isinstance(faiss.downcast_index(storage), faiss.IndexFlat)
