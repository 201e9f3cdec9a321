"""The FAISS GPU mirror of a CPU index (on faiss-gpu builds): a clone built on first use, followed by adds,
rebuilt after anything else. The CPU index stays the mutable master, so saving needs no GPU->CPU copy.

A clone of an id-mapped index still holds the rows the master has tombstoned; a search over-fetches by their
number and drops them, up to GPU_OVERFETCH_MAX tombstones (past that, the CPU index answers).
"""

from __future__ import annotations

import threading

import faiss
import numpy as np

GPU_MAX_K = 2048  # FAISS GPU's largest k
GPU_OVERFETCH_MAX = 1024  # up to this many tombstones, the GPU mirror over-fetches instead of stepping aside


def gpu_count() -> int:
    """Visible FAISS GPUs (0 on faiss-cpu builds)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def can_overfetch(k: int, n_dead: int) -> bool:
    """Whether a clone holding `n_dead` tombstoned rows can still answer a top-k."""
    return n_dead <= GPU_OVERFETCH_MAX and k + n_dead <= GPU_MAX_K


class GpuMirror:
    """A lazily built GPU clone of one CPU index."""

    def __init__(self) -> None:
        self._index: faiss.Index | None = None
        self._stale = True
        self._lock = threading.Lock()  # concurrent searches may race to build the mirror

    def drop(self) -> None:
        """Forget the clone: the master was replaced (compacted, trained)."""
        self._index, self._stale = None, True

    def mark_stale(self) -> None:
        """The master changed in a way the clone cannot follow (an IVF removal): rebuild on next use."""
        self._stale = True

    def follow_add(self, x: np.ndarray, ids: np.ndarray, idmapped: bool) -> None:
        """Repeat an add of the master on a current clone."""
        if self._index is not None and not self._stale:
            if idmapped:
                self._index.add(x)  # positions stay aligned with the CPU id map
            else:
                self._index.add_with_ids(x, ids)

    def get(self, inner: faiss.Index, nprobe: int | None) -> faiss.Index:
        """The clone of `inner` (the master without its id map), built when missing or stale."""
        with self._lock:
            if self._index is None or self._stale:
                self._index = faiss.index_cpu_to_all_gpus(inner)
                self._stale = False
                if nprobe:
                    try:
                        faiss.GpuParameterSpace().set_index_parameter(self._index, "nprobe", int(nprobe))
                    except Exception:
                        pass
            return self._index


def live_top_k(
    gpu: faiss.Index, q: np.ndarray, k: int, alive: np.ndarray, n_dead: int
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the top-k live rows from a clone that still holds `n_dead` tombstoned ones; -1 pads."""
    # tombstoned rows are still in the GPU clone: fetch that many more, then drop them
    scores, rows = gpu.search(q, k + n_dead)
    rows = rows.astype(np.int64)
    if n_dead:
        live = (rows >= 0) & alive[np.clip(rows, 0, None)]
        order = np.argsort(~live, axis=1, kind="stable")[:, :k]  # live hits first, in score order
        scores = np.where(np.take_along_axis(live, order, 1), np.take_along_axis(scores, order, 1), -np.inf)
        rows = np.where(np.take_along_axis(live, order, 1), np.take_along_axis(rows, order, 1), -1)
    return scores.astype(np.float32), rows
