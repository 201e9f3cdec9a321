"""The torch-resident mirror of the store's two FAISS indexes: the frame and video-mean matrices, kept on one
torch device (exact GEMM + top-k, `matrix_index.MatrixIndex`) within one memory budget.

The FAISS CPU index stays the master (snapshots, restarts); the mirror is a cache of it, rebuilt at start, so it
never has to be saved. `search_backend.SearchRouter` decides when there is one.
"""

from __future__ import annotations

import numpy as np

from echosearch.server.storage.catalog import Catalog
from echosearch.server.storage.frame_ids import frame_ids_for
from echosearch.server.storage.index import VectorIndex

FREE_MEMORY_SHARE = 0.9  # never plan to fill more than this share of the device's free memory


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
        exact = frames.exact_vectors()
        if exact is not None:
            self.frames.add(*exact)
        else:
            for vids, offsets, emb in catalog.iter_embedding_batches(means.ids()):
                counts = np.diff(offsets)
                self.frames.add(np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(vids, counts)]), emb)
        mean_vectors = means.exact_vectors()
        assert mean_vectors is not None, "the mean index is always Flat"
        self.means.add(*mean_vectors)

    def add(self, frame_ids: np.ndarray, frames: np.ndarray, video_ids: np.ndarray, means: np.ndarray) -> None:
        self.frames.add(frame_ids, frames)
        self.means.add(video_ids, means)

    def remove_videos(self, frame_ids: np.ndarray, video_ids: np.ndarray) -> None:
        self.frames.remove(frame_ids)
        self.means.remove(video_ids)
