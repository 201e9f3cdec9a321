"""The store's two derived FAISS indexes (frames, and per-video mean frames) and the catalog seq they cover.

They are caches of the catalog: opened from their snapshot and caught up by replaying the catalog's change
log, or rebuilt from it when missing, corrupt or inconsistent; fed each committed write; saved atomically
with the seq they cover. The resident mirror (search_router) follows every change. The Store holds the
locks: nothing here locks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from echosearch.server.storage import snapshots as persist
from echosearch.server.storage.catalog import Catalog
from echosearch.server.storage.catalog.reads import FrameOrderError
from echosearch.server.storage.frame_ids import FRAME_BITS
from echosearch.server.storage.index import VectorIndex
from echosearch.server.storage.positions import ranges_to_rows
from echosearch.server.storage.search_backend import SearchRouter

log = logging.getLogger(__name__)


def _means(offsets: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """Per-video mean frame vector (not re-normalised) for a concatenated batch."""
    counts = np.diff(offsets)
    # Per-video float64 sums: the same values as reduceat over a float64 copy, ~6x faster (reduceat
    # along axis 0 is slow) and without a float64 copy of every frame (a bulk batch is gigabytes).
    sums = np.empty((len(counts), emb.shape[1]), dtype=np.float64)
    for i, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
        emb[lo:hi].sum(axis=0, dtype=np.float64, out=sums[i])
    return (sums / counts[:, None]).astype(np.float32)


class StoreIndexes:
    """Frame index + video-mean index (None until the store holds a video), at catalog seq `seq`."""

    def __init__(
        self,
        folder: Path,
        factory: str,
        router: SearchRouter,
        *,
        use_gpu: bool,
        nprobe: int | None,
        efsearch: int | None,
    ) -> None:
        self.folder = folder
        self.factory = factory
        self.router = router
        self._use_gpu, self._nprobe, self._efsearch = use_gpu, nprobe, efsearch
        self.frames: VectorIndex | None = None
        self.means: VectorIndex | None = None
        self.seq = 0  # the catalog seq the indexes cover
        self.saved_seq = -1  # the seq of the snapshot on disk (-1: none)

    # ---- opening -----------------------------------------------------------------
    def _new_indexes(self, dim: int) -> None:
        self.frames = VectorIndex(
            dim, self.factory, use_gpu=self._use_gpu, nprobe=self._nprobe, efsearch=self._efsearch
        )
        # Means stay exact (Flat): binary-task scores must equal mean_frame · mean_prompt.
        self.means = VectorIndex(dim, "Flat", use_gpu=self._use_gpu)
        self.frames.auto_compact = self.means.auto_compact = False  # the store compacts off-lock
        self.seq = 0
        self.router.reset(dim)

    def open(self, catalog: Catalog) -> None:
        """Load the snapshot and catch it up with the catalog, or rebuild; save when that changed anything."""
        dim = catalog.embed_dim
        last = catalog.last_seq()
        if dim is None:
            return  # nothing stored yet; indexes are created with the first video
        loaded = persist.load(
            self.folder, self.factory, dim, use_gpu=self._use_gpu, nprobe=self._nprobe, efsearch=self._efsearch
        )
        if loaded is not None and loaded.seq > last:
            log.warning("index covers seq %d but the catalog ends at %d; rebuilding", loaded.seq, last)
            loaded = None
        if loaded is None:
            self._rebuild(catalog, dim)
        else:
            self.frames, self.means, self.seq = loaded.frames, loaded.means, loaded.seq
            self.frames.auto_compact = self.means.auto_compact = False
            self.saved_seq = loaded.seq
            self.catch_up(catalog)
            frames, videos = catalog.count_frames(), catalog.count_videos()
            if self.frames.ntotal != frames or self.means.ntotal != videos:
                log.warning(
                    "index holds %d frames / %d videos but the catalog %d / %d after catch-up; rebuilding",
                    self.frames.ntotal,
                    self.means.ntotal,
                    frames,
                    videos,
                )
                self._rebuild(catalog, dim)
                self.saved_seq = -1
        if self.seq != self.saved_seq:
            self.save()

    def _rebuild(self, catalog: Catalog, dim: int) -> None:
        """Rebuild both indexes from the catalog: one sequential scan of its frames (a Flat index's only copy of
        the vectors is the catalog's, so this is how a Flat store opens)."""
        self._new_indexes(dim)
        seq = catalog.last_seq()  # single writer: nothing commits while we open
        total = catalog.count_frames()
        log.info("rebuilding the %s index from the catalog: %d frames", self.factory, total)
        self.frames.reserve(total)
        try:
            self._add_batches(catalog.scan_video_embeddings(), total)
        except FrameOrderError as exc:  # not expected (frame ids only grow); the per-video reads do not rely on it
            log.warning("%s; rebuilding by video instead", exc)
            self._new_indexes(dim)
            self._add_batches(catalog.iter_embedding_batches(None), total)
        self.seq = seq

    def _add_batches(self, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], total: int) -> None:
        done, last_logged = 0, time.monotonic()
        for vids, offsets, emb in batches:
            self._add_batch(vids, offsets, emb)
            done += len(emb)
            if time.monotonic() - last_logged > 5:
                log.info("rebuild progress: %d/%d frames", done, total)
                last_logged = time.monotonic()

    def catch_up(self, catalog: Catalog) -> None:
        """Replay catalog changes after the index's seq: deletes, then adds still present."""
        seqs, is_delete, vids, n_frames = catalog.changes_since(self.seq)
        if len(seqs) == 0:
            return
        log.info("catching up index from seq %d to %d (%d changes)", self.seq, seqs[-1], len(seqs))
        self.remove_videos(list(zip(vids[is_delete].tolist(), n_frames[is_delete].tolist())))
        added = vids[~is_delete]
        # Idempotent: a video the index already holds (a snapshot labelled older than its contents)
        # is not added twice; frames and mean are always added together, so the mean index says.
        if len(added) and self.means.ntotal:
            added = added[~np.isin(added, self.means.ids())]
        for batch, offsets, emb in catalog.iter_embedding_batches(added):
            self._add_batch(batch, offsets, emb)
        self.seq = int(seqs[-1])

    # ---- following the catalog's writes --------------------------------------------
    def _add_batch(self, vids: np.ndarray, offsets: np.ndarray, emb: np.ndarray) -> None:
        if len(vids) == 0:
            return
        counts = np.diff(offsets)
        # each video's frame ids, vectorised: a million one-frame videos must not loop in Python under the lock
        starts = np.repeat(np.asarray(vids, np.int64) << FRAME_BITS, counts)
        fids = starts + (np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(offsets[:-1], counts))
        means = _means(offsets, emb)
        self.frames.add(fids, emb)
        self.means.add(vids, means)
        self.router.add(fids, emb, vids, means)

    def add_committed(
        self,
        catalog: Catalog,
        vids: np.ndarray,
        offsets: np.ndarray,
        embeddings: Callable[[], np.ndarray],
        first_seq: int,
    ) -> None:
        """Add videos just committed from seq `first_seq` on (one seq each) to both indexes."""
        if self.frames is None:
            self._new_indexes(catalog.embed_dim)
        if first_seq != self.seq + 1:
            self.catch_up(catalog)  # someone else wrote to the catalog; replay in order
        else:
            self._add_batch(vids, offsets, embeddings())
            self.seq = first_seq + len(vids) - 1

    def remove_videos(self, videos: Sequence[tuple[int, int]]) -> None:
        """Tombstone (video id, frame count) pairs in every index, in one pass each (fast under the lock)."""
        if not videos or self.frames is None:
            return
        vids = np.array([int(v) for v, _ in videos], dtype=np.int64)
        lo = vids << FRAME_BITS
        fids = ranges_to_rows(lo, lo + np.array([int(n) for _, n in videos], dtype=np.int64))
        self.frames.remove(fids)
        self.means.remove(vids)
        self.router.remove_videos(fids, vids)

    # ---- compaction and snapshots --------------------------------------------------
    def both(self) -> tuple[VectorIndex, ...]:
        """The indexes that exist (none before the first video)."""
        return () if self.frames is None else (self.frames, self.means)

    def save_due(self, save_every: int) -> bool:
        """Whether `save_every` (> 0) changes have accumulated since the last snapshot."""
        return save_every > 0 and self.seq - max(self.saved_seq, 0) >= save_every

    def save(self) -> None:
        """Write a snapshot covering `seq`, unless the one on disk already does."""
        if self.frames is None or self.saved_seq == self.seq:
            return
        persist.save(self.folder, self.frames, self.means, self.seq)
        self.saved_seq = self.seq
