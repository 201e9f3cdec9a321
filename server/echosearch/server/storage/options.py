"""The storage and search options of `serve` (storage/store.py uses them): light, for the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from echosearch.server.options import option

SEARCH_DEVICE_FLAGS = ("auto", "cpu", "cuda")  # search_backend.SEARCH_DEVICES adds "torch-cpu" (tests, benchmarks)
SEARCH_PRECISIONS = ("fp16", "bf16", "fp32")


@dataclass(frozen=True)
class StorageOptions:
    """The FAISS index and where exact search and task scoring run."""

    TITLE: ClassVar[str] = "storage and search"

    index_factory: str = option(
        "Flat", flag="--index", help="FAISS factory string (Flat, HNSW32, IVF1024,PQ64, ...; default {default})"
    )
    catalog_memory_gb: float = option(
        2.0,
        flag="--catalog-memory-gb",
        type=float,
        minimum=0.125,  # DuckDB needs a few blocks per thread
        help="cap on the catalog's (DuckDB's) buffer cache; the OS page cache still holds the file (default {default})",
    )
    search_device: str = option(
        "auto",
        flag="--search-device",
        choices=SEARCH_DEVICE_FLAGS,
        help="auto: FAISS's GPU index when FAISS sees GPUs, else the frame matrix resident on CUDA via torch, "
        "else the CPU FAISS index (default {default})",
    )
    gpu_memory_gb: float | None = option(
        None,
        flag="--gpu-memory-gb",
        type=float,
        help="cap on the GPU memory the resident matrices may use; past it, search falls back to the CPU index",
    )
    search_precision: str = option(
        "fp16",
        flag="--search-precision",
        choices=SEARCH_PRECISIONS,
        help="storage precision of the resident CUDA matrices (top hits are re-scored in fp32; default {default})",
    )
