"""Store: the catalog (truth) plus two derived FAISS indexes — frames and per-video means — and the only way
to write to either. The indexes are caches (store_indexes.py): saved with the catalog seq they cover, caught up
or rebuilt at open. Searches run in index_search.py, under this module's read lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from echosearch.server.event_counts import Tally
from echosearch.server.records import (
    FrameEmbeddings,
    FrameHit,
    MetadataChange,
    NewVideo,
    VideoFilter,
    VideoHit,
    VideoMetadata,
    VideoRecord,
)
from echosearch.server.storage import search_backend
from echosearch.server.storage.catalog import Catalog, ImportedBatch
from echosearch.server.storage.catalog.video_batch import VideoBatch
from echosearch.server.storage.disk_errors import disk_errors
from echosearch.server.storage.faiss_gpu import gpu_count
from echosearch.server.storage.index import VectorIndex
from echosearch.server.storage.index_search import IndexSearch
from echosearch.server.storage.layout import CATALOG_FILE, CATALOG_WAL, INDEX_DIR
from echosearch.server.storage.options import StorageOptions
from echosearch.server.storage.quiet_save import QuietSaver
from echosearch.server.storage.reader import CatalogReader
from echosearch.server.storage.rwlock import ReadWriteLock
from echosearch.server.storage.snapshots import MANIFEST
from echosearch.server.storage.store_indexes import StoreIndexes

log = logging.getLogger(__name__)


INDEX_PIECE_FRAMES = 32_768  # frames added to the indexes per hold of the search lock during a bulk import


def index_pieces(offsets: np.ndarray, frames: int) -> list[tuple[int, int]]:
    """(first, end) video positions of consecutive pieces of about `frames` frames each (whole videos)."""
    bounds = np.searchsorted(offsets, np.arange(0, int(offsets[-1]), frames), side="right") - 1
    starts = sorted(set(bounds.tolist()) | {0})
    return list(zip(starts, [*starts[1:], len(offsets) - 1]))


class Store:
    """Catalog + frame index + video-mean index, kept consistent across crashes.

    The only write path: one writer at a time (`_writes`: catalog order = index order), and the
    readers-writer lock keeps index changes apart from searches — held exclusively only for the
    index change itself, never for a catalog transaction, a compaction build or a snapshot save. Callers above it
    (services/, the scoring service) read through `reader`, a read-only catalog view.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        index_factory: str = StorageOptions.index_factory,
        use_gpu: bool | None = None,
        save_every: int = 5000,
        nprobe: int | None = None,
        efsearch: int | None = None,
        memory_limit: str | None = None,
        search_device: str = StorageOptions.search_device,
        gpu_memory_gb: float | None = None,
        matrix_precision: str = StorageOptions.search_precision,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.index_factory = index_factory
        self.save_every = int(save_every)
        self.search_router = search_backend.SearchRouter(
            search_device, gpu_count(), gpu_memory_gb=gpu_memory_gb, precision=matrix_precision
        )
        if use_gpu is None:
            use_gpu = self.search_router.backend.faiss_gpu
        # Searches share the lock (FAISS CPU searches may run together; each thread reads the catalog
        # through its own cursor); adds, removes, saves and close hold it alone.
        self._lock = ReadWriteLock()
        # One writer at a time (catalog order = index order). A writer holds the index lock only
        # while it changes the indexes, not during its catalog transaction, compaction or a save.
        self._writes = threading.Lock()
        self._indexes = StoreIndexes(
            self.data_dir / INDEX_DIR,
            index_factory,
            self.search_router,
            use_gpu=use_gpu,
            nprobe=nprobe,
            efsearch=efsearch,
        )
        self._closed = False
        self.load_saver = QuietSaver(self.save)  # a bulk load's snapshot, once its imports stop
        self.stored = Tally()  # "videos", "frames": what this process committed (new ones; repeats are not)
        self.catalog = Catalog(self.data_dir / CATALOG_FILE, memory_limit=memory_limit)
        self.reader = CatalogReader(self.catalog)
        self._search = IndexSearch(self.catalog, self._indexes)
        try:
            self._indexes.open(self.catalog)
            if self._indexes.frames is not None:
                self.search_router.load(self._indexes.frames, self._indexes.means, self.catalog)
        except BaseException:
            self.catalog.close()
            raise

    # ---- writes ------------------------------------------------------------------
    def add_video(self, video: NewVideo) -> tuple[VideoRecord, bool]:
        """Commit the video to the catalog (one transaction), then add it to both indexes."""
        return self.add_videos([video])[0]

    def add_videos(self, videos: Sequence[NewVideo]) -> list[tuple[VideoRecord, bool]]:
        """Commit many videos in ONE catalog transaction, then index them.

        All or nothing; idempotent by sha256 (a repeat, in the store or earlier in the batch, comes
        back with created=False). For bulk loads and migrations; results are in input order.
        """
        with self._writes, disk_errors(self.data_dir):
            results = self.catalog.add_videos(videos)
            with self._lock.write():
                self._index_new(results, [v.frames for v in videos])
            self._after_write()
            created = [len(v.frames.embeddings) for (_, new), v in zip(results, videos) if new]
            self.stored.add("videos", len(created))
            self.stored.add("frames", sum(created))
            return results

    def _index_new(self, results: list[tuple[VideoRecord, bool]], frames: list[FrameEmbeddings]) -> None:
        """Add the just-committed videos to both indexes (caller holds the write lock)."""
        new = [(rec, f) for (rec, created), f in zip(results, frames) if created]
        if not new:
            return
        embs = [np.ascontiguousarray(f.embeddings, dtype=np.float32) for _, f in new]
        offsets = np.zeros(len(embs) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in embs], out=offsets[1:])
        vids = np.array([rec.video_id for rec, _ in new], dtype=np.int64)
        first_seq = new[0][0].seq
        self._indexes.add_committed(
            self.catalog, vids, offsets, lambda: np.concatenate(embs) if len(embs) > 1 else embs[0], first_seq
        )

    def import_batch(self, batch: VideoBatch, *, shard_sha256: str) -> ImportedBatch:
        """Commit a bulk batch's new videos (ONE catalog transaction), then add them to both indexes at once.

        Idempotent by sha256. The index is not saved here: a bulk load would rewrite it per batch; it is saved
        once the imports go quiet (quiet_save.py), at close, or with the next `save_every`, and a crash before
        that replays the catalog (the truth) instead.
        """
        with self._writes, disk_errors(self.data_dir):
            done = self.catalog.import_batch(batch, shard_sha256=shard_sha256)
            if len(done.video_ids):
                counts = batch.counts[done.keep]
                offsets = np.zeros(len(counts) + 1, dtype=np.int64)
                np.cumsum(counts, out=offsets[1:])
                rows = batch.frame_rows(done.keep)
                if isinstance(rows, slice):  # every video was new: the kept frames are all the rows, in order
                    rows = np.arange(len(batch.embeddings))
                # The shard is durable (one catalog transaction); its index adds go in bounded pieces, each its
                # own short hold on the search lock, so other clients' searches interleave with a large load.
                for lo, hi in index_pieces(offsets, INDEX_PIECE_FRAMES):
                    piece = rows[offsets[lo] : offsets[hi]]  # a view of positions; the rows copy per piece
                    with self._lock.write():
                        self._indexes.add_committed(
                            self.catalog,
                            done.video_ids[lo:hi],
                            offsets[lo : hi + 1] - offsets[lo],
                            lambda piece=piece: batch.embeddings[piece],
                            int(done.seqs[lo]),
                        )
                self.stored.add("videos", len(done.video_ids))
                self.stored.add("frames", int(counts.sum()))
                self.load_saver.touch()
            return done

    def update_metadata(
        self, video_id: int, change: MetadataChange, *, check: Callable[[VideoMetadata], None] | None = None
    ) -> tuple[VideoRecord, bool]:
        """Change a video's metadata in the catalog (logged); `check(after)` may refuse the merged metadata.

        The indexes hold no metadata, so searches keep running during the catalog transaction; they wait
        only for the moment the filtered candidate sets are dropped.
        """
        with self._writes, disk_errors(self.data_dir):
            current = self._indexes.seq == self.catalog.last_seq()
            record, changed = self.catalog.update_metadata(int(video_id), change, check=check)
            if changed:
                with self._lock.write():
                    if current:
                        # Nothing for the indexes to replay: keep them current so the next ingest takes the fast path.
                        self._indexes.seq = self.catalog.last_seq()
                    self._search.candidates.clear()  # filtered candidate sets depend on metadata
            return record, changed

    def delete_video(self, video_id: int) -> None:
        """Delete one video (NotFoundError when absent): `delete_videos` with one id."""
        self.delete_videos([int(video_id)])

    def delete_videos(self, video_ids: Sequence[int]) -> int:
        """Delete videos in one catalog transaction (all or nothing; NotFoundError names an absent id), then
        tombstone them all in one index pass. Returns the count. The one delete path, for one video and many.

        Searches keep running during the catalog transaction (they may still see the videos until
        it returns); the index update itself is a tombstone, so they wait microseconds for it.
        """
        with self._writes:
            with disk_errors(self.data_dir):
                gone = self.catalog.delete_videos(video_ids)
            seq = self.catalog.last_seq()
            with self._lock.write():
                self._indexes.remove_videos(gone)
                self._indexes.seq = seq
            self._after_write()
            return len(gone)

    def _after_write(self) -> None:
        """Compact tombstones and save when due; the caller holds `_writes`, so no index changes meanwhile.

        The compacted copy is built and the snapshot written under the shared lock (searches go on);
        only the swap takes the index lock exclusively.
        """
        for index in self._indexes.both():
            if index.needs_compaction():
                with self._lock.read():
                    prepared = index.prepare_compaction()
                with self._lock.write():
                    index.finish_compaction(prepared)
        if self._indexes.save_due(self.save_every):
            with self._lock.read():
                try:
                    self._indexes.save()
                except (OSError, RuntimeError) as exc:  # FAISS reports a failed write as RuntimeError
                    # The write that triggered this is committed; the snapshot is only a cache of the catalog.
                    log.warning(
                        "could not save an index snapshot (%s); the next start catches up from the catalog", exc
                    )

    @contextmanager
    def frozen(self) -> Iterator[int]:
        """Hold every write (searches go on), with the catalog checkpointed and the index snapshot saved at the same
        change: the data directory's files are one consistent store while the block runs. Yields that change."""
        with self._writes, disk_errors(self.data_dir), self.catalog.frozen():
            with self._lock.read():
                self._indexes.save()
            yield self.catalog.last_seq()

    def put_prompt_embeddings(self, model_identity: str, embeddings: Mapping[str, np.ndarray]) -> None:
        """Cache text embeddings in the catalog (the indexes are not involved, so no index lock)."""
        self.catalog.put_prompt_embeddings(model_identity, embeddings)

    def delete_prompt_embeddings(self, model_identity: str, texts: Sequence[str]) -> int:
        """Remove cached text embeddings from the catalog; returns how many there were."""
        return self.catalog.delete_prompt_embeddings(model_identity, texts)

    def put_stored_task(self, name: str, spec_json: str) -> None:
        """Save (or replace) a stored task's definition in the catalog (no index involved)."""
        self.catalog.put_stored_task(name, spec_json)

    def delete_stored_task(self, name: str) -> None:
        """Remove a stored task's definition from the catalog."""
        self.catalog.delete_stored_task(name)

    def get_prompt_embeddings(self, model_identity: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached text embeddings of `model_identity` for those `texts` that are cached."""
        return self.catalog.get_prompt_embeddings(model_identity, texts)

    def save(self) -> None:
        """Atomically persist both indexes with the catalog seq they cover (nothing once closed)."""
        with self._writes, self._lock.read():
            if not self._closed:
                self._indexes.save()

    def close(self) -> None:
        """Save the indexes and close the catalog; safe to call twice."""
        self.load_saver.cancel()
        with self._writes, self._lock.write():
            if self._closed:
                return
            self._closed = True
            try:
                self._indexes.save()
            except (
                OSError,
                RuntimeError,
            ) as exc:  # e.g. a full disk (FAISS raises RuntimeError): nothing is lost, the catalog is the truth
                log.error(
                    "could not save the index snapshot at close (%s); the next start rebuilds or catches up "
                    "from the catalog",
                    exc,
                )
            finally:
                self.catalog.close()

    # ---- search ------------------------------------------------------------------
    @property
    def on_gpu(self) -> bool:
        """True when frame searches run on a GPU (FAISS's GPU mirror or the resident CUDA matrix)."""
        resident = self.search_router.on_gpu
        if resident is not None:
            return resident
        frames = self._indexes.frames
        return frames is not None and frames.on_gpu

    def search_frames(self, queries: np.ndarray, k: int, flt: VideoFilter | None = None) -> list[list[FrameHit]]:
        """Top-k frames per query (inner product), restricted to videos matching `flt`."""
        q = self._search.query(queries)
        with self._lock.read():
            return self._search.search_frames(q, int(k), flt)

    def search_videos(
        self,
        query: np.ndarray,
        k: int,
        *,
        aggregation: str = "max",
        flt: VideoFilter | None = None,
        frames_per_video: int = 1,
        exclude: Sequence[int] = (),
    ) -> list[VideoHit]:
        """Top-k videos for one query: by best frame ("max") or by mean frame ("mean")."""
        q = self._search.query(query)[:1]
        assert aggregation in ("max", "mean"), aggregation  # services/search.py validated the request
        with self._lock.read():
            return self._search.search_videos(q, int(k), aggregation, flt, max(0, int(frames_per_video)), exclude)

    def top_videos_by_mean(self, query: np.ndarray, k: int, flt: VideoFilter | None = None) -> list[tuple[int, float]]:
        """Exact top-k (video id, mean_frame · query); the query is used as given (not re-normalised)."""
        q = self._search.query(query)[:1]
        with self._lock.read():
            return self._search.top_videos_by_mean(q, int(k), flt)

    def stats(self) -> dict[str, Any]:
        """Counts and index state for status pages and benchmarks."""
        with self._lock.read():
            return {
                "videos": self.catalog.count_videos(),
                "frames": self.catalog.count_frames(),
                "index_factory": self.index_factory,
                "index_trained": self.frame_index is not None and not self.frame_index.exact_fallback,
                "index_vectors": 0 if self.frame_index is None else self.frame_index.ntotal,
                "index_tombstones": 0 if self.frame_index is None else len(self.frame_index.tombstones()),
                "snapshot_age_s": _age_s(self.data_dir / INDEX_DIR / MANIFEST),
                "catalog_bytes": sum(_size(self.data_dir / n) for n in (CATALOG_FILE, CATALOG_WAL)),
                "on_gpu": self.on_gpu,
                **{f"search_{k}": v for k, v in self.search_backend_info().items()},
                "index_seq": self._indexes.seq,
                "saved_seq": max(self._indexes.saved_seq, 0),
                "catalog_seq": self.catalog.last_seq(),
                "model_identity": self.catalog.model_identity,
            }

    def search_backend_info(self) -> dict[str, Any]:
        """The engine answering searches (backend, device, precision) and the device memory it holds."""
        return self.search_router.info(self.frame_index is not None and self.frame_index.on_gpu)

    # ---- scoring on the resident matrix -------------------------------------------
    def score_resident(self, video_ids: np.ndarray, score: Callable[..., np.ndarray]) -> np.ndarray | None:
        """`score(frames_of, rows, offsets)` over the resident frames of `video_ids`, under the read lock.

        `frames_of(rows)` returns fp32 frame rows on the device; `offsets` (V+1,) delimit each video's
        rows in `video_ids` order. None when no resident matrix exists (the caller reads the catalog).
        """
        with self._lock.read():
            return self.search_router.score(video_ids, score)

    # test/bench helpers ------------------------------------------------------------
    @property
    def frame_index(self) -> VectorIndex | None:
        """The frame index (None before the first video)."""
        return self._indexes.frames

    @property
    def mean_index(self) -> VectorIndex | None:
        """The per-video mean index (None before the first video)."""
        return self._indexes.means


def _age_s(path: Path) -> float | None:
    """Seconds since `path` was written; None when it does not exist."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
