"""Store: the catalog (truth) plus two derived FAISS indexes — frames and per-video means.

The indexes are caches. They are saved atomically with the catalog write
sequence number they cover, and on open every catalog change after that number
is replayed before the constructor returns; a missing or corrupt index is rebuilt.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echosearch.server.errors import InvalidRequestError
from echosearch.server.records import (
    FrameEmbeddings,
    FrameHit,
    MetadataChange,
    NewVideo,
    VideoFilter,
    VideoHit,
    VideoRecord,
)
from echosearch.server.storage import search_backend
from echosearch.server.storage import snapshots as persist
from echosearch.server.storage.catalog import Catalog, ImportedBatch
from echosearch.server.storage.disk_errors import disk_errors
from echosearch.server.storage.frame_ids import FRAME_BITS, frame_ids_for, video_of_frames
from echosearch.server.storage.index import VectorIndex, gpu_count
from echosearch.server.storage.options import StorageOptions
from echosearch.server.storage.positions import ranges_to_rows
from echosearch.server.storage.reader import CatalogReader
from echosearch.server.storage.rwlock import ReadWriteLock
from echosearch.server.storage.video_batch import VideoBatch

log = logging.getLogger(__name__)

CANDIDATE_CACHE_ENTRIES = 32  # recent filters whose candidate lists are kept
CANDIDATE_CACHE_MAX_VIDEOS = 2_000_000  # videos held across all cached candidate lists (16 B each: 32 MB)


def _means(offsets: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """Per-video mean frame vector (not re-normalised) for a concatenated batch."""
    counts = np.diff(offsets)
    # Per-video float64 sums: the same values as reduceat over a float64 copy, ~6x faster (reduceat
    # along axis 0 is slow) and without a float64 copy of every frame (a bulk batch is gigabytes).
    sums = np.empty((len(counts), emb.shape[1]), dtype=np.float64)
    for i, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
        emb[lo:hi].sum(axis=0, dtype=np.float64, out=sums[i])
    return (sums / counts[:, None]).astype(np.float32)


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
        self._use_gpu, self._nprobe, self._efsearch = use_gpu, nprobe, efsearch
        # Searches share the lock (FAISS CPU searches may run together; each thread reads the catalog
        # through its own cursor); adds, removes, saves and close hold it alone.
        self._lock = ReadWriteLock()
        # One writer at a time (catalog order = index order). A writer holds the index lock only
        # while it changes the indexes, not during its catalog transaction, compaction or a save.
        self._writes = threading.Lock()
        self._dim: int | None = None
        # filter -> candidates, valid while the index seq is unchanged (repeated cohort queries skip DuckDB)
        self._cand_cache: OrderedDict[tuple, tuple[int, tuple[np.ndarray, np.ndarray]]] = OrderedDict()
        self._cand_cache_lock = threading.Lock()
        self._frames: VectorIndex | None = None
        self._means: VectorIndex | None = None
        self._index_seq = 0
        self._saved_seq = -1
        self._closed = False
        self.catalog = Catalog(self.data_dir / "catalog.duckdb", memory_limit=memory_limit)
        self.reader = CatalogReader(self.catalog)
        try:
            self._open_indexes()
            if self._frames is not None:
                self.search_router.load(self._frames, self._means, self.catalog)
        except BaseException:
            self.catalog.close()
            raise

    # ---- opening -----------------------------------------------------------------
    def _new_indexes(self, dim: int) -> None:
        self._frames = VectorIndex(
            dim, self.index_factory, use_gpu=self._use_gpu, nprobe=self._nprobe, efsearch=self._efsearch
        )
        # Means stay exact (Flat): binary-task scores must equal mean_frame · mean_prompt.
        self._means = VectorIndex(dim, "Flat", use_gpu=self._use_gpu)
        self._frames.auto_compact = self._means.auto_compact = False  # _after_write compacts off-lock
        self._index_seq = 0
        self.search_router.reset(dim)

    def _open_indexes(self) -> None:
        dim = self.catalog.embed_dim
        last = self.catalog.last_seq()
        if dim is None:
            return  # nothing stored yet; indexes are created with the first video
        loaded = persist.load(
            self.data_dir / "index",
            self.index_factory,
            dim,
            use_gpu=self._use_gpu,
            nprobe=self._nprobe,
            efsearch=self._efsearch,
        )
        if loaded is not None and loaded.seq > last:
            log.warning("index covers seq %d but the catalog ends at %d; rebuilding", loaded.seq, last)
            loaded = None
        if loaded is None:
            self._rebuild(dim)
        else:
            self._frames, self._means, self._index_seq = loaded.frames, loaded.means, loaded.seq
            self._frames.auto_compact = self._means.auto_compact = False
            self._saved_seq = loaded.seq
            self._catch_up()
            frames, videos = self.catalog.count_frames(), self.catalog.count_videos()
            if self._frames.ntotal != frames or self._means.ntotal != videos:
                log.warning(
                    "index holds %d frames / %d videos but the catalog %d / %d after catch-up; rebuilding",
                    self._frames.ntotal,
                    self._means.ntotal,
                    frames,
                    videos,
                )
                self._rebuild(dim)
                self._saved_seq = -1
        if self._index_seq != self._saved_seq:
            self.save()

    def _rebuild(self, dim: int) -> None:
        """Rebuild both indexes from the catalog, streaming in batches."""
        self._new_indexes(dim)
        seq = self.catalog.last_seq()  # single writer: nothing commits while we open
        ids = self.catalog.select_video_ids(None)
        log.info("rebuilding %s index from catalog: %d videos", self.index_factory, len(ids))
        done = frames = 0
        for vids, offsets, emb in self.catalog.iter_embedding_batches(ids):
            self._add_batch(vids, offsets, emb)
            done += len(vids)
            frames += len(emb)
            log.info("rebuild progress: %d/%d videos, %d frames", done, len(ids), frames)
        self._index_seq = seq

    def _catch_up(self) -> None:
        """Replay catalog changes after the index's seq: deletes, then adds still present."""
        seqs, is_delete, vids, n_frames = self.catalog.changes_since(self._index_seq)
        if len(seqs) == 0:
            return
        log.info("catching up index from seq %d to %d (%d changes)", self._index_seq, seqs[-1], len(seqs))
        self._remove_videos(list(zip(vids[is_delete].tolist(), n_frames[is_delete].tolist())))
        added = vids[~is_delete]
        # Idempotent: a video the index already holds (a snapshot labelled older than its contents)
        # is not added twice; frames and mean are always added together, so the mean index says.
        if len(added) and self._means.ntotal:
            added = added[~np.isin(added, self._means.ids())]
        for batch, offsets, emb in self.catalog.iter_embedding_batches(added):
            self._add_batch(batch, offsets, emb)
        self._index_seq = int(seqs[-1])

    # ---- index maintenance -------------------------------------------------------
    def _add_batch(self, vids: np.ndarray, offsets: np.ndarray, emb: np.ndarray) -> None:
        if len(vids) == 0:
            return
        counts = np.diff(offsets)
        fids = np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(vids, counts)])
        means = _means(offsets, emb)
        self._frames.add(fids, emb)
        self._means.add(vids, means)
        self.search_router.add(fids, emb, vids, means)

    def _remove_videos(self, videos: Sequence[tuple[int, int]]) -> None:
        """Tombstone (video id, frame count) pairs in every index, in one pass each (fast under the lock)."""
        if not videos:
            return
        vids = np.array([int(v) for v, _ in videos], dtype=np.int64)
        lo = vids << FRAME_BITS
        fids = ranges_to_rows(lo, lo + np.array([int(n) for _, n in videos], dtype=np.int64))
        self._frames.remove(fids)
        self._means.remove(vids)
        self.search_router.remove_videos(fids, vids)

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
        self._index_committed(vids, offsets, lambda: np.concatenate(embs) if len(embs) > 1 else embs[0], new[0][0].seq)

    def _index_committed(self, vids: np.ndarray, offsets: np.ndarray, embeddings, first_seq: int) -> None:
        """Add videos just committed from seq `first_seq` on (one seq each) to both indexes; caller holds the lock."""
        if self._frames is None:
            self._new_indexes(self.catalog.embed_dim)
        if first_seq != self._index_seq + 1:
            self._catch_up()  # someone else wrote to the catalog; replay in order
        else:
            self._add_batch(vids, offsets, embeddings())
            self._index_seq = first_seq + len(vids) - 1

    def import_batch(self, batch: VideoBatch, *, shard_sha256: str) -> ImportedBatch:
        """Commit a bulk batch's new videos (ONE catalog transaction), then add them to both indexes at once.

        Idempotent by sha256. The index is not saved here: a bulk load would rewrite it per batch; it is
        saved at close or with the next `save_every`, and a crash replays the catalog (the truth) instead.
        """
        with self._writes, disk_errors(self.data_dir):
            done = self.catalog.import_batch(batch, shard_sha256=shard_sha256)
            if len(done.video_ids):
                counts = batch.counts[done.keep]
                offsets = np.zeros(len(counts) + 1, dtype=np.int64)
                np.cumsum(counts, out=offsets[1:])
                rows = batch.frame_rows(done.keep)
                with self._lock.write():
                    self._index_committed(done.video_ids, offsets, lambda: batch.embeddings[rows], int(done.seqs[0]))
            return done

    def update_metadata(self, video_id: int, change: MetadataChange) -> tuple[VideoRecord, bool]:
        """Change a video's metadata in the catalog (logged); the indexes hold no metadata, so they stay as they are."""
        with self._lock.write():
            current = self._index_seq == self.catalog.last_seq()
            record, changed = self.catalog.update_metadata(int(video_id), change)
            if changed and current:
                # Nothing for the indexes to replay: keep them current so the next ingest takes the fast path.
                self._index_seq = self.catalog.last_seq()
            if changed:
                with self._cand_cache_lock:
                    self._cand_cache.clear()  # filtered candidate sets depend on metadata
            return record, changed

    def delete_video(self, video_id: int) -> None:
        """Delete from the catalog (NotFoundError when absent), then tombstone it in both indexes.

        Searches keep running during the catalog transaction (they may still see the video until
        it returns); the index update itself is a tombstone, so they wait microseconds for it.
        """
        with self._writes:
            n = self.catalog.get_video(video_id).sampled_frames
            with disk_errors(self.data_dir):
                self.catalog.delete_video(video_id)
            seq = self.catalog.last_seq()  # read before taking the index lock: searches never wait on DuckDB
            with self._lock.write():
                if self._frames is not None:
                    self._remove_videos([(int(video_id), n)])
                self._index_seq = seq
            self._after_write()

    def delete_videos(self, video_ids: Sequence[int]) -> int:
        """Delete many videos in one catalog transaction (all or nothing), then tombstone them all.

        For bulk deletes: one transaction and one index pass instead of one each. Returns the count.
        """
        with self._writes:
            with disk_errors(self.data_dir):
                gone = self.catalog.delete_videos(video_ids)
            seq = self.catalog.last_seq()
            with self._lock.write():
                if self._frames is not None:
                    self._remove_videos(gone)
                self._index_seq = seq
            self._after_write()
            return len(gone)

    def _after_write(self) -> None:
        """Compact tombstones and save when due; the caller holds `_writes`, so no index changes meanwhile.

        The compacted copy is built and the snapshot written under the shared lock (searches go on);
        only the swap takes the index lock exclusively.
        """
        for index in (self._frames, self._means):
            if index is not None and index.needs_compaction():
                with self._lock.read():
                    prepared = index.prepare_compaction()
                with self._lock.write():
                    index.finish_compaction(prepared)
        if self.save_every > 0 and self._index_seq - max(self._saved_seq, 0) >= self.save_every:
            with self._lock.read():
                try:
                    self._save()
                except (OSError, RuntimeError) as exc:  # FAISS reports a failed write as RuntimeError
                    # The write that triggered this is committed; the snapshot is only a cache of the catalog.
                    log.warning(
                        "could not save an index snapshot (%s); the next start catches up from the catalog", exc
                    )

    def put_prompt_embeddings(self, model_identity: str, embeddings: Mapping[str, np.ndarray]) -> None:
        """Cache text embeddings in the catalog (the indexes are not involved, so no index lock)."""
        self.catalog.put_prompt_embeddings(model_identity, embeddings)

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
        """Atomically persist both indexes with the catalog seq they cover."""
        with self._writes, self._lock.read():
            self._save()

    def _save(self) -> None:
        if self._frames is None or self._saved_seq == self._index_seq:
            return
        persist.save(self.data_dir / "index", self._frames, self._means, self._index_seq)
        self._saved_seq = self._index_seq

    def close(self) -> None:
        """Save the indexes and close the catalog; safe to call twice."""
        with self._writes, self._lock.write():
            if self._closed:
                return
            self._closed = True
            try:
                self._save()
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
        return self._frames is not None and self._frames.on_gpu

    def _query(self, queries: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        q = q.reshape(1, -1) if q.ndim == 1 else q
        dim = self._dim if self._dim is not None else self.catalog.embed_dim
        self._dim = dim  # bound once, never changes
        if q.ndim != 2 or (dim is not None and q.shape[1] != dim):
            raise InvalidRequestError(f"query vectors must have width {dim}, got shape {np.shape(queries)}")
        if not np.isfinite(q).all():
            raise InvalidRequestError("query vectors contain NaN or infinity")
        return q

    def _candidates(self, flt: VideoFilter | None, exclude: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray] | None:
        """(video ids, frame counts) allowed by `flt` and `exclude`; None when unrestricted."""
        if (flt is None or flt.is_empty()) and not exclude:
            return None
        key = (repr(flt), tuple(int(v) for v in exclude))
        seq = self._index_seq
        with self._cand_cache_lock:
            hit = self._cand_cache.get(key)
            if hit is not None and hit[0] == seq:
                self._cand_cache.move_to_end(key)
                return hit[1]
        vids, counts = self.catalog.select_videos(flt)
        if exclude:
            keep = ~np.isin(vids, np.asarray(list(exclude), dtype=np.int64))
            vids, counts = vids[keep], counts[keep]
        if len(vids) <= CANDIDATE_CACHE_MAX_VIDEOS:
            with self._cand_cache_lock:
                self._cand_cache[key] = (seq, (vids, counts))
                # bounded twice: entries, and videos held in all of them (16 B each)
                while len(self._cand_cache) > CANDIDATE_CACHE_ENTRIES or (
                    sum(len(v[1][0]) for v in self._cand_cache.values()) > CANDIDATE_CACHE_MAX_VIDEOS
                ):
                    self._cand_cache.popitem(last=False)
        return vids, counts

    def _search_frame_ids(
        self, q: np.ndarray, k: int, cand: tuple[np.ndarray, np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, frame ids) top-k per query; exact whenever the index is exact or candidates are few."""
        if self._frames is None or k <= 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        ranges = None
        if cand is not None:
            vids, counts = cand
            if len(vids) == 0:
                return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
            lo = vids << FRAME_BITS  # one id range per video covers its frames
            ranges = (lo, lo + counts)
        return self._search(self._frames, "frames", q, k, **({} if ranges is None else {"ranges": ranges}))

    def _search(self, master: VectorIndex, which: str, q: np.ndarray, k: int, **kw) -> tuple[np.ndarray, np.ndarray]:
        return self.search_router.search(master, which, q, k, **kw)

    def _frame_hits(self, scores: np.ndarray, fids: np.ndarray) -> list[list[FrameHit]]:
        info = self.catalog.frame_info(fids[fids >= 0])
        out = []
        for row_s, row_f in zip(scores, fids):
            hits = []
            for s, f in zip(row_s, row_f):
                if f < 0 or int(f) not in info:
                    continue
                idx, ts = info[int(f)]
                hits.append(FrameHit(int(f), int(video_of_frames(f)), int(idx), float(ts), float(s)))
            out.append(hits)
        return out

    def search_frames(self, queries: np.ndarray, k: int, flt: VideoFilter | None = None) -> list[list[FrameHit]]:
        """Top-k frames per query (inner product), restricted to videos matching `flt`."""
        q = self._query(queries)
        with self._lock.read():
            scores, fids = self._search_frame_ids(q, int(k), self._candidates(flt))
            return self._frame_hits(scores, fids)

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
        q = self._query(query)[:1]
        k, fpv = int(k), max(0, int(frames_per_video))
        assert aggregation in ("max", "mean"), aggregation  # services/search.py validated the request
        with self._lock.read():
            cand = self._candidates(flt, exclude)
            if k <= 0 or self._frames is None:
                return []
            if aggregation == "mean":
                ranked = self._top_means(q, k, cand)
            else:
                ranked = self._top_by_max(q, k, cand)
            best = self._best_frames(q, [v for v, _ in ranked], fpv)
            # Writers commit to the catalog without the search lock, so a video ranked from the index can be
            # deleted before its frames are read: it then answers as if the search ran after the delete.
            return [VideoHit(v, s, best.get(v, ())) for v, s in ranked if fpv <= 0 or v in best]

    def _top_by_max(self, q: np.ndarray, k: int, cand) -> list[tuple[int, float]]:
        """Over-fetch frames until k distinct videos appear (the first k distinct are the exact top-k)."""
        total = self._frames.ntotal if cand is None else int(cand[1].sum())
        fetch = min(total, max(4 * k, 64))
        while True:
            scores, fids = self._search_frame_ids(q, fetch, cand)
            seen: dict[int, float] = {}
            for s, f in zip(scores[0], fids[0]):
                if f >= 0:
                    seen.setdefault(int(video_of_frames(f)), float(s))
            if len(seen) >= k or fetch >= total:
                return list(seen.items())[:k]
            fetch = min(total, fetch * 4)

    def _top_means(self, q: np.ndarray, k: int, cand) -> list[tuple[int, float]]:
        subset = None if cand is None else cand[0]
        if subset is not None and len(subset) == 0:
            return []
        scores, vids = self._search(self._means, "means", q, k, subset=subset)
        return [(int(v), float(s)) for s, v in zip(scores[0], vids[0]) if v >= 0]

    def _best_frames(self, q: np.ndarray, vids: list[int], n: int) -> dict[int, tuple[FrameHit, ...]]:
        """Each video's n best frames, computed exactly from its stored embeddings."""
        if n <= 0 or not vids:
            return {}
        found, offsets, emb = self.catalog.load_embeddings(np.asarray(vids, dtype=np.int64))
        scores = emb @ q[0]
        picks: dict[int, list[tuple[int, float]]] = {}
        all_fids = []
        for i, v in enumerate(found):
            lo, hi = offsets[i], offsets[i + 1]
            order = np.argsort(-scores[lo:hi], kind="stable")[:n]
            fids = frame_ids_for(int(v), int(hi - lo))[order]
            picks[int(v)] = list(zip(fids.tolist(), scores[lo:hi][order].tolist()))
            all_fids.extend(fids.tolist())
        info = self.catalog.frame_info(np.asarray(all_fids, dtype=np.int64))
        return {
            v: tuple(FrameHit(f, v, int(info[f][0]), float(info[f][1]), s) for f, s in fl)
            for v, fl in picks.items()
            if all(f in info for f, _ in fl)  # absent: deleted between the two reads
        }

    def top_videos_by_mean(self, query: np.ndarray, k: int, flt: VideoFilter | None = None) -> list[tuple[int, float]]:
        """Exact top-k (video id, mean_frame · query); the query is used as given (not re-normalised)."""
        q = self._query(query)[:1]
        with self._lock.read():
            if self._means is None or k <= 0:
                return []
            return self._top_means(q, int(k), self._candidates(flt))

    def stats(self) -> dict[str, Any]:
        """Counts and index state for status pages and benchmarks."""
        with self._lock.read():
            return {
                "videos": self.catalog.count_videos(),
                "frames": self.catalog.count_frames(),
                "index_factory": self.index_factory,
                "index_trained": self._frames is not None and not self._frames.exact_fallback,
                "index_vectors": 0 if self._frames is None else self._frames.ntotal,
                "on_gpu": self.on_gpu,
                **{f"search_{k}": v for k, v in self.search_backend_info().items()},
                "index_seq": self._index_seq,
                "saved_seq": max(self._saved_seq, 0),
                "catalog_seq": self.catalog.last_seq(),
                "model_identity": self.catalog.model_identity,
            }

    def search_backend_info(self) -> dict[str, Any]:
        """The engine answering searches (backend, device, precision) and the device memory it holds."""
        return self.search_router.info(self._frames is not None and self._frames.on_gpu)

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
        return self._frames

    @property
    def mean_index(self) -> VectorIndex | None:
        """The per-video mean index (None before the first video)."""
        return self._means
