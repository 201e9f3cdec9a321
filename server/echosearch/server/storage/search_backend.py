"""Which engine answers searches (`--search-device`): the one interface both engines implement
(`SearchBackend`), the choice (`resolve`), and the router the store searches through.

- FAISS sees GPUs (a faiss-gpu build): today's FAISS GPU mirror, backend "faiss-gpu".
- Otherwise, with a CUDA device visible to torch: the frame matrix and the video-mean matrix are
  kept resident on it as torch tensors (exact GEMM + top-k), backend "torch-cuda".
- Otherwise, or past `--gpu-memory-gb`, or when the device runs out of memory: the CPU FAISS
  index, backend "faiss-cpu", with one WARNING when a GPU had been asked for or was in use.
The FAISS CPU index stays the master either way (snapshots, restarts); the mirror is a cache of
it (resident_mirror.py), rebuilt at start, so it never has to be saved. "torch-cpu" puts the mirror
on CPU torch: the configuration CI tests, since it runs the GPU code path without a GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from echosearch.server.storage.catalog import Catalog
from echosearch.server.storage.frame_ids import FRAME_BITS
from echosearch.server.storage.index import VectorIndex
from echosearch.server.storage.resident_mirror import ResidentMirror

log = logging.getLogger(__name__)

SEARCH_DEVICES = ("auto", "cpu", "cuda", "torch-cpu")


@runtime_checkable
class SearchBackend(Protocol):
    """Inner-product top-k over id-tagged vectors, with tombstoned removal and restricted searches.

    Implemented by the FAISS index (`index.VectorIndex`, the master: snapshots, restarts) and the torch
    matrix (`matrix_index.MatrixIndex`, the resident mirror); the router asks either the same way, and
    tests/test_search_congruence.py holds the two to the same answers.
    """

    dim: int

    @property
    def ntotal(self) -> int:
        """Live vectors (tombstoned ones excluded)."""
        ...

    @property
    def on_gpu(self) -> bool:
        """True when searches run on a GPU."""
        ...

    def ids(self) -> np.ndarray:
        """Every live id, in insertion order."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (n, dim) float32 vectors under `ids`, none of them present already."""
        ...

    def remove(self, ids: np.ndarray) -> int:
        """Remove `ids` (absent ones are skipped); returns how many were live."""
        ...

    def search(
        self,
        queries: np.ndarray,
        k: int,
        subset: np.ndarray | None = None,
        *,
        ranges: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query, best first; restricted to `subset` ids or to ids in the half-open
        `ranges` (lo, hi) when given. min(k, live candidates) columns; id -1 pads."""
        ...


@dataclass(frozen=True)
class Backend:
    """The resolved search engine: name ("faiss-cpu", "faiss-gpu", "torch-cuda", "torch-cpu") and device."""

    name: str
    device: str  # "cpu", "cuda:0", ...
    faiss_gpu: bool  # let FAISS keep its own GPU mirror


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve(search_device: str, faiss_gpus: int) -> Backend:
    """Pick the backend for `--search-device`; falls back to the CPU index with one WARNING."""
    if search_device not in SEARCH_DEVICES:
        raise ValueError(f"search device must be one of {', '.join(SEARCH_DEVICES)}, not {search_device!r}")
    if search_device == "cpu":
        return Backend("faiss-cpu", "cpu", False)
    if search_device == "torch-cpu":
        return Backend("torch-cpu", "cpu", False)
    if faiss_gpus > 0:
        return Backend("faiss-gpu", "cuda:0", True)
    if _torch_cuda():
        return Backend("torch-cuda", "cuda:0", False)
    if search_device == "cuda":
        log.warning("--search-device cuda, but no CUDA device is visible: searching on the CPU FAISS index")
    return Backend("faiss-cpu", "cpu", False)


class SearchRouter:
    """The store's search engine choice and its resident mirror; the store calls it under its own locks."""

    def __init__(self, search_device: str, faiss_gpus: int, *, gpu_memory_gb: float | None, precision: str) -> None:
        self.backend = resolve(search_device, faiss_gpus)
        self._cap = None if gpu_memory_gb is None else int(float(gpu_memory_gb) * 2**30)
        self._precision = precision
        self.mirror: ResidentMirror | None = None
        self._warned = False

    @property
    def resident(self) -> bool:
        return self.backend.name.startswith("torch")

    def reset(self, dim: int) -> None:
        """An empty mirror for a store whose indexes were just created."""
        self.mirror = None
        if self.resident:
            self._guard(lambda: self._new(dim))

    def _new(self, dim: int) -> None:
        self.mirror = ResidentMirror(dim, self.backend.device, dtype=self._precision, memory_cap_bytes=self._cap)

    def load(self, frames: VectorIndex, means: VectorIndex, catalog: Catalog) -> None:
        """Build the mirror of freshly opened indexes."""
        if not self.resident:
            return

        def build() -> None:
            self._new(frames.dim)
            self.mirror.load(frames, means, catalog)
            log.info(
                "search backend %s: %d frames resident on %s (%s, %.2f GiB)",
                self.backend.name,
                self.mirror.frames.ntotal,
                self.backend.device,
                self.mirror.dtype_name,
                self.mirror.memory_bytes() / 2**30,
            )

        self._guard(build)

    def add(self, frame_ids: np.ndarray, frames: np.ndarray, video_ids: np.ndarray, means: np.ndarray) -> None:
        if self.mirror is not None:
            self._guard(lambda: self.mirror.add(frame_ids, frames, video_ids, means))

    def remove_videos(self, frame_ids: np.ndarray, video_ids: np.ndarray) -> None:
        if self.mirror is not None:
            self._guard(lambda: self.mirror.remove_videos(frame_ids, video_ids))

    def _guard(self, fn) -> None:
        """Run a mirror update; past the memory cap or out of device memory, drop to the CPU index once."""
        try:
            fn()
        except MemoryError as exc:  # MatrixFull included
            self._drop(str(exc))

    def _drop(self, reason: str) -> None:
        was = self.backend.name
        self.mirror = None
        self.backend = Backend("faiss-cpu", "cpu", False)
        if not self._warned:
            self._warned = True
            log.warning("search backend %s -> faiss-cpu (the CPU FAISS index answers from now on): %s", was, reason)
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def backend_for(self, master: SearchBackend, which: str) -> SearchBackend:
        """What answers `which` ("frames" or "means"): the mirror's matrix when there is one, else `master`."""
        mirror = self.mirror
        return master if mirror is None else getattr(mirror, which)

    def search(
        self,
        master: SearchBackend,
        which: str,
        q: np.ndarray,
        k: int,
        subset: np.ndarray | None = None,
        *,
        ranges: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of `which` from `backend_for`; a mirror out of device memory hands this query to `master`."""
        backend = self.backend_for(master, which)
        if backend is not master:
            try:
                return backend.search(q, k, subset, ranges=ranges)
            except MemoryError as exc:
                log.warning("resident search ran out of device memory (%s); this query used the CPU index", exc)
        return master.search(q, k, subset, ranges=ranges)

    def score(self, video_ids: np.ndarray, score):
        """`score(frames_of, rows, offsets)` over the mirror's frames of `video_ids`; None without a mirror."""
        mirror = self.mirror
        if mirror is None:
            return None
        lo = np.asarray(video_ids, np.int64) << FRAME_BITS
        try:
            rows, offsets = mirror.frames.video_rows(lo, lo + (1 << FRAME_BITS))
            return score(mirror.frames.frames, rows, offsets)
        except MemoryError as exc:
            log.warning("resident scoring ran out of device memory (%s); reading the catalog instead", exc)
            return None

    @property
    def on_gpu(self) -> bool | None:
        """Whether the mirror is on a GPU; None without a mirror (then FAISS decides)."""
        return None if self.mirror is None else self.mirror.device.type == "cuda"

    def info(self, faiss_on_gpu: bool) -> dict:
        m, name = self.mirror, self.backend.name
        if name == "faiss-gpu" and not faiss_on_gpu:
            name = "faiss-cpu"  # an index type without a GPU clone (HNSW) stays on the CPU
        return {
            "backend": name,
            "device": self.backend.device if name != "faiss-cpu" else "cpu",
            "precision": m.dtype_name if m is not None else "float32",
            "memory_bytes": m.memory_bytes() if m is not None else 0,
            "memory_cap_bytes": (m.cap or 0) if m is not None else 0,
        }
