"""Which engine answers searches (`--search-device`), and the torch-resident mirror of both indexes.

- FAISS sees GPUs (a faiss-gpu build): today's FAISS GPU mirror, backend "faiss-gpu".
- Otherwise, with a CUDA device visible to torch: the frame matrix and the video-mean matrix are
  kept resident on it as torch tensors (exact GEMM + top-k), backend "torch-cuda".
- Otherwise, or past `--gpu-memory-gb`, or when the device runs out of memory: the CPU FAISS
  index, backend "faiss-cpu", with one WARNING when a GPU had been asked for or was in use.
The FAISS CPU index stays the master either way (snapshots, restarts); the mirror is a cache of
it, rebuilt at start, so it never has to be saved. "torch-cpu" puts the mirror on CPU torch:
the configuration CI tests, since it runs the GPU code path without a GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from echosearch.server.storage.catalog import Catalog
from echosearch.server.storage.flat_search import flat_vectors
from echosearch.server.storage.frame_ids import FRAME_BITS, frame_ids_for
from echosearch.server.storage.index import VectorIndex

log = logging.getLogger(__name__)

SEARCH_DEVICES = ("auto", "cpu", "cuda", "torch-cpu")
FREE_MEMORY_SHARE = 0.9  # never plan to fill more than this share of the device's free memory


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


class ResidentMirror:
    """Frame and video-mean matrices resident on one torch device, mirroring the FAISS master."""

    def __init__(self, dim: int, device: str, *, dtype: str = "fp16", memory_cap_bytes: int | None = None) -> None:
        import torch

        from echosearch.server.storage.matrix_index import MatrixIndex

        self.device = torch.device(device)
        if self.device.type == "cpu":
            tdtype = torch.float32  # CPU: fp32 always (exact, and fast CPU half GEMMs are rare)
        else:
            tdtype = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        cap = memory_cap_bytes
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            cap = int(free * FREE_MEMORY_SHARE) if cap is None else min(cap, int(free * FREE_MEMORY_SHARE))
        self.cap = cap
        # one budget for both matrices: each may use what the other leaves of it
        self.frames = MatrixIndex(dim, device=self.device, dtype=tdtype, max_bytes=cap)
        self.means = MatrixIndex(
            dim,
            device=self.device,
            dtype=tdtype,
            max_bytes=None if cap is None else lambda: cap - self.frames.memory_bytes(),
        )
        if cap is not None:
            self.frames.max_bytes = lambda: cap - self.means.memory_bytes()

    @property
    def dtype_name(self) -> str:
        return str(self.frames.dtype).removeprefix("torch.")

    def memory_bytes(self) -> int:
        """Device bytes the two matrices hold."""
        return self.frames.memory_bytes() + self.means.memory_bytes()

    def load(self, frames: VectorIndex, means: VectorIndex, catalog: Catalog) -> None:
        """Fill both matrices from the FAISS master (Flat) or, for other factories, from the catalog."""
        flat = frames._flat
        if flat is not None:
            rows = frames._rows
            self.frames.add(rows.ids[rows.alive], flat_vectors(flat)[rows.alive])
        else:
            for vids, offsets, emb in catalog.iter_embedding_batches(means.ids()):
                counts = np.diff(offsets)
                self.frames.add(np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(vids, counts)]), emb)
        mrows = means._rows
        self.means.add(mrows.ids[mrows.alive], flat_vectors(means._flat)[mrows.alive])

    def add(self, frame_ids: np.ndarray, frames: np.ndarray, video_ids: np.ndarray, means: np.ndarray) -> None:
        self.frames.add(frame_ids, frames)
        self.means.add(video_ids, means)

    def remove_videos(self, frame_ids: np.ndarray, video_ids: np.ndarray) -> None:
        self.frames.remove(frame_ids)
        self.means.remove(video_ids)


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

    def search(self, master: VectorIndex, which: str, q: np.ndarray, k: int, **kw) -> tuple[np.ndarray, np.ndarray]:
        """Search the mirror's `which` matrix ("frames"/"means") when there is one, else the FAISS index."""
        mirror = self.mirror
        if mirror is not None:
            try:
                return getattr(mirror, which).search(q, k, **kw)
            except MemoryError as exc:
                log.warning("resident search ran out of device memory (%s); this query used the CPU index", exc)
        return master.search(q, k, **kw)

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
