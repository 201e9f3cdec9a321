"""DuckDB catalog: videos, frames, embeddings and prompt cache — the single source of truth."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from echosearch.server.errors import (
    InvalidRequestError,
    ModelMismatchError,
    NotFoundError,
    StoreVersionError,
    TooLargeError,
)
from echosearch.server.filters import compile_filter, to_utc_naive
from echosearch.server.records import FrameEmbeddings, VideoFilter, VideoMetadata, VideoRecord

log = logging.getLogger(__name__)

FRAME_BITS = 20  # frame_id = (video_id << FRAME_BITS) | position
MAX_FRAMES_PER_VIDEO = 1 << FRAME_BITS
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_VIDEO_COLUMNS = (
    "video_id, sha256, source_name, size_bytes, fps, total_frames, sampled_frames, width, height, "
    "ingested_at, model_identity, study_id, patient_id, view, acquisition_time, seq"
)


def frame_ids_for(video_id: int, n_frames: int) -> np.ndarray:
    """The catalog frame ids of a video with `n_frames` stored frames."""
    return (np.int64(video_id) << FRAME_BITS) + np.arange(n_frames, dtype=np.int64)


def video_of_frames(frame_ids: np.ndarray) -> np.ndarray:
    """The video id owning each frame id."""
    return np.asarray(frame_ids, dtype=np.int64) >> FRAME_BITS


def migrations() -> list[tuple[int, str]]:
    """(version, sql) of every bundled migration, ascending."""
    found = []
    for entry in resources.files("echosearch.server").joinpath("migrations").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=timezone.utc)


def _vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A LIST<FLOAT> arrow column as a (n, dim) float32 array."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat, dtype=np.float32).reshape(len(arr), dim)


class Catalog:
    """One DuckDB file. Writes are serialised by a lock; each thread reads through its own cursor."""

    def __init__(self, path: Path, *, memory_limit: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        config = {"memory_limit": memory_limit} if memory_limit else {}
        self._conn = duckdb.connect(str(self.path), config=config)
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._write_lock = threading.RLock()
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # ---- connection handling -------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (DuckDB connections must not be shared between threads)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._conn.cursor()
            self._local.cursor = cur
            with self._cursors_lock:
                self._cursors.append(cur)
        return cur

    def close(self) -> None:
        """Close every cursor and the database (checkpoints the WAL)."""
        with self._cursors_lock:
            for cur in self._cursors:
                cur.close()
            self._cursors.clear()
        self._local = threading.local()
        self._conn.close()

    def _migrate(self) -> None:
        """Apply pending migrations in one transaction; refuse a database newer than this code."""
        bundled = migrations()
        latest = bundled[-1][0]
        cur = self._conn
        cur.begin()
        try:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
            )
            current = cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]
            if current > latest:
                raise StoreVersionError(
                    f"catalog {self.path} has schema version {current}, but this echosearch only knows "
                    f"versions up to {latest}; upgrade echosearch (or open a different --data directory)"
                )
            for version, sql in bundled:
                if version > current:
                    log.info("catalog %s: applying migration %04d", self.path, version)
                    cur.execute(sql)
                    cur.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, to_utc_naive(datetime.now(timezone.utc))])
            cur.commit()
        except BaseException:
            cur.rollback()
            raise

    def schema_version(self) -> int:
        """The applied schema version."""
        return self.cursor().execute("SELECT max(version) FROM schema_migrations").fetchall()[0][0]

    # ---- model binding ---------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        rows = self.cursor().execute("SELECT value FROM store_meta WHERE key = ?", [key]).fetchall()
        return rows[0][0] if rows else None

    @property
    def model_identity(self) -> str | None:
        """The model identity this store is bound to (None until the first write)."""
        return self._meta("model_identity")

    @property
    def embed_dim(self) -> int | None:
        """The embedding width this store is bound to."""
        value = self._meta("embed_dim")
        return None if value is None else int(value)

    def bind_model(self, identity: str, dim: int) -> None:
        """Bind the store to a model on first use; refuse a different model afterwards."""
        with self._write_lock:
            cur = self.cursor()
            cur.begin()
            try:
                self._bind_in_txn(cur, identity, dim)
                cur.commit()
            except BaseException:
                cur.rollback()
                raise

    def _bind_in_txn(self, cur: duckdb.DuckDBPyConnection, identity: str, dim: int) -> None:
        rows = cur.execute("SELECT value FROM store_meta WHERE key = 'model_identity'").fetchall()
        row = rows[0] if rows else None
        if row is None:
            if not identity or int(dim) <= 0:
                raise InvalidRequestError("a model identity and a positive embedding width are required")
            cur.execute(
                "INSERT INTO store_meta VALUES ('model_identity', ?), ('embed_dim', ?)", [identity, str(int(dim))]
            )
            return
        bound_dim = int(cur.execute("SELECT value FROM store_meta WHERE key = 'embed_dim'").fetchall()[0][0])
        if row[0] != identity or bound_dim != int(dim):
            raise ModelMismatchError(
                f"this store ({self.path}) holds embeddings of model {row[0]!r} (dim {bound_dim}); "
                f"refusing embeddings of model {identity!r} (dim {int(dim)}). Serve with the same model, "
                "or use a different data directory for the new model"
            )

    # ---- writes ----------------------------------------------------------------
    def _next(self, cur: duckdb.DuckDBPyConnection, name: str) -> int:
        return cur.execute(
            "UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value", [name]
        ).fetchall()[0][0]

    def add_video(
        self,
        *,
        sha256: str,
        source_name: str,
        size_bytes: int,
        fps: float,
        total_frames: int,
        width: int,
        height: int,
        model_identity: str,
        metadata: VideoMetadata,
        frames: FrameEmbeddings,
    ) -> tuple[VideoRecord, bool]:
        """Store a video with its frames and embeddings in ONE transaction; idempotent by sha256."""
        emb = np.asarray(frames.embeddings)
        if emb.ndim != 2 or emb.shape[0] == 0:
            raise InvalidRequestError(f"a video needs at least one frame embedding, got shape {emb.shape}")
        n, dim = emb.shape
        if n > MAX_FRAMES_PER_VIDEO:
            raise TooLargeError(f"{n} sampled frames in one video; the catalog holds at most {MAX_FRAMES_PER_VIDEO}")
        idx = np.asarray(frames.frame_indices, dtype=np.int64).reshape(-1)
        ts = np.asarray(frames.timestamps, dtype=np.float64).reshape(-1)
        if len(idx) != n or len(ts) != n:
            raise InvalidRequestError(f"{n} embeddings but {len(idx)} frame indices and {len(ts)} timestamps")
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if not np.isfinite(emb).all():
            raise InvalidRequestError("frame embeddings contain NaN or infinity")
        with self._write_lock:
            cur = self.cursor()
            cur.begin()
            try:
                self._bind_in_txn(cur, model_identity, dim)
                existing = self._find(cur, "v.sha256 = ?", [sha256])
                if existing:
                    cur.rollback()
                    return existing[0], False
                seq = self._next(cur, "seq")
                video_id = self._next(cur, "video_id")
                md = metadata
                acq = None if md.acquisition_time is None else to_utc_naive(md.acquisition_time)
                cur.execute(
                    f"INSERT INTO videos ({_VIDEO_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [video_id, sha256, source_name, int(size_bytes), float(fps), int(total_frames), n,
                     int(width), int(height), to_utc_naive(datetime.now(timezone.utc)), model_identity, md.study_id, md.patient_id, md.view, acq, seq],
                )
                if md.tags:
                    cur.executemany(
                        "INSERT INTO video_tags VALUES (?, ?, ?)",
                        [[video_id, str(k), str(v)] for k, v in md.tags.items()],
                    )
                frame_table = pa.table({
                    "frame_id": frame_ids_for(video_id, n),
                    "video_id": np.full(n, video_id, dtype=np.int64),
                    "frame_index": idx,
                    "timestamp": ts,
                    "embedding": pa.ListArray.from_arrays(
                        pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32)), pa.array(emb.reshape(-1))
                    ),
                })
                cur.register("_new_frames", frame_table)
                try:
                    cur.execute("INSERT INTO frames SELECT * FROM _new_frames")
                finally:
                    cur.unregister("_new_frames")
                cur.execute("INSERT INTO changes VALUES (?, 'add', ?, ?)", [seq, video_id, n])
                record = self._find(cur, "v.video_id = ?", [video_id])[0]
                cur.commit()
            except BaseException:
                cur.rollback()
                raise
        return record, True

    def delete_video(self, video_id: int) -> None:
        """Delete a video, its frames and tags; log the delete so indexes can replay it."""
        with self._write_lock:
            cur = self.cursor()
            cur.begin()
            try:
                rows = cur.execute("SELECT sampled_frames FROM videos WHERE video_id = ?", [int(video_id)]).fetchall()
                row = rows[0] if rows else None
                if row is None:
                    raise NotFoundError(f"no video with id {video_id}")
                lo = int(video_id) << FRAME_BITS
                cur.execute("DELETE FROM frames WHERE frame_id >= ? AND frame_id < ?", [lo, lo + MAX_FRAMES_PER_VIDEO])
                cur.execute("DELETE FROM video_tags WHERE video_id = ?", [int(video_id)])
                cur.execute("DELETE FROM videos WHERE video_id = ?", [int(video_id)])
                seq = self._next(cur, "seq")
                cur.execute("INSERT INTO changes VALUES (?, 'delete', ?, ?)", [seq, int(video_id), row[0]])
                cur.commit()
            except BaseException:
                cur.rollback()
                raise

    # ---- video reads -----------------------------------------------------------
    def _find(self, cur: duckdb.DuckDBPyConnection, where: str, params: list[Any],
              tail: str = "ORDER BY v.video_id") -> list[VideoRecord]:
        rows = cur.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos v WHERE {where} {tail}", params).fetchall()
        if not rows:
            return []
        tags: dict[int, dict[str, str]] = {}
        for vid, key, value in cur.execute(
            "SELECT video_id, key, value FROM video_tags WHERE video_id IN (SELECT unnest(?::BIGINT[]))",
            [[r[0] for r in rows]],
        ).fetchall():
            tags.setdefault(vid, {})[key] = value
        return [
            VideoRecord(
                video_id=r[0], sha256=r[1], source_name=r[2], size_bytes=r[3], fps=r[4], total_frames=r[5],
                sampled_frames=r[6], width=r[7], height=r[8], ingested_at=_utc(r[9]), model_identity=r[10],
                metadata=VideoMetadata(study_id=r[11], patient_id=r[12], view=r[13],
                                       acquisition_time=_utc(r[14]), tags=tags.get(r[0], {})),
                seq=r[15],
            )
            for r in rows
        ]

    def find_by_sha256(self, sha256: str) -> VideoRecord | None:
        """The video with these content bytes, if stored."""
        found = self._find(self.cursor(), "v.sha256 = ?", [sha256])
        return found[0] if found else None

    def get_video(self, video_id: int) -> VideoRecord:
        """One video; NotFoundError when absent."""
        found = self._find(self.cursor(), "v.video_id = ?", [int(video_id)])
        if not found:
            raise NotFoundError(f"no video with id {video_id}")
        return found[0]

    def list_videos(self, flt: VideoFilter | None = None, *, limit: int = 100,
                    after_id: int | None = None) -> list[VideoRecord]:
        """Videos matching `flt` ordered by id, `limit` at a time after `after_id` (keyset paging)."""
        where, params = compile_filter(flt)
        if after_id is not None:
            where += " AND v.video_id > ?"
            params.append(int(after_id))
        return self._find(self.cursor(), where, params + [max(0, int(limit))], "ORDER BY v.video_id LIMIT ?")

    def count_videos(self, flt: VideoFilter | None = None) -> int:
        """How many videos match `flt`."""
        where, params = compile_filter(flt)
        return self.cursor().execute(f"SELECT count(*) FROM videos v WHERE {where}", params).fetchall()[0][0]

    def count_frames(self) -> int:
        """Stored frames in total."""
        return self.cursor().execute("SELECT count(*) FROM frames").fetchall()[0][0]

    def select_video_ids(self, flt: VideoFilter | None) -> np.ndarray:
        """Ids (int64, sorted) of the videos matching `flt`."""
        return self.select_videos(flt)[0]

    def select_videos(self, flt: VideoFilter | None) -> tuple[np.ndarray, np.ndarray]:
        """(video ids sorted, their stored frame counts) for the videos matching `flt`."""
        where, params = compile_filter(flt)
        res = self.cursor().execute(
            f"SELECT video_id, sampled_frames FROM videos v WHERE {where} ORDER BY video_id", params
        ).fetchnumpy()
        return (np.asarray(res["video_id"], dtype=np.int64), np.asarray(res["sampled_frames"], dtype=np.int64))

    def last_seq(self) -> int:
        """The sequence number of the latest committed write (0 for an empty store)."""
        return self.cursor().execute("SELECT value FROM counters WHERE name = 'seq'").fetchall()[0][0]

    def changes_since(self, seq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(seq, is_delete, video_id, n_frames) of every write after `seq`, in order."""
        res = self.cursor().execute(
            "SELECT seq, op = 'delete' AS is_delete, video_id, n_frames FROM changes WHERE seq > ? ORDER BY seq",
            [int(seq)],
        ).fetchnumpy()
        return (np.asarray(res["seq"], dtype=np.int64), np.asarray(res["is_delete"], dtype=bool),
                np.asarray(res["video_id"], dtype=np.int64), np.asarray(res["n_frames"], dtype=np.int64))

    # ---- frames and embeddings ---------------------------------------------------
    def get_frames(self, video_id: int) -> FrameEmbeddings:
        """A stored video's frames with their catalog ids; NotFoundError when absent."""
        self.get_video(video_id)
        dim = self.embed_dim or 0
        lo = int(video_id) << FRAME_BITS
        tbl = self.cursor().sql(
            "SELECT frame_id, frame_index, timestamp, embedding FROM frames "
            "WHERE frame_id >= ? AND frame_id < ? ORDER BY frame_id",
            params=[lo, lo + MAX_FRAMES_PER_VIDEO],
        ).to_arrow_table()
        return FrameEmbeddings(
            frame_indices=tbl.column("frame_index").to_numpy().astype(np.int64),
            timestamps=tbl.column("timestamp").to_numpy().astype(np.float64),
            embeddings=_vectors(tbl.column("embedding"), dim),
            frame_ids=tbl.column("frame_id").to_numpy().astype(np.int64),
        )

    def frame_info(self, frame_ids: np.ndarray) -> dict[int, tuple[int, float]]:
        """frame_id → (frame_index, timestamp) for the given ids that exist."""
        ids = [int(x) for x in np.asarray(frame_ids).reshape(-1)]
        if not ids:
            return {}
        rows = self.cursor().execute(
            "SELECT frame_id, frame_index, timestamp FROM frames WHERE frame_id IN (SELECT unnest(?::BIGINT[]))",
            [ids],
        ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def load_embeddings(self, video_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(video ids found, in the given order; offsets (V+1,); embeddings (F, D)) — missing ids are dropped."""
        ids = np.asarray(video_ids, dtype=np.int64).reshape(-1)
        dim = self.embed_dim or 0
        if len(ids) == 0 or dim == 0:
            return np.empty(0, np.int64), np.zeros(1, np.int64), np.empty((0, dim), np.float32)
        wanted = pa.table({"video_id": ids, "pos": np.arange(len(ids), dtype=np.int64)})
        cur = self.cursor()
        cur.register("_wanted", wanted)
        try:
            # The explicit frame_id range lets DuckDB skip row groups (frames are stored in id order).
            tbl = cur.sql(
                "SELECT w.pos, f.frame_id, f.embedding FROM frames f JOIN _wanted w ON f.video_id = w.video_id "
                "WHERE f.frame_id >= ? AND f.frame_id < ?",
                params=[int(ids.min()) << FRAME_BITS, (int(ids.max()) + 1) << FRAME_BITS],
            ).to_arrow_table()
        finally:
            cur.unregister("_wanted")
        pos = tbl.column("pos").to_numpy()
        order = np.lexsort((tbl.column("frame_id").to_numpy(), pos))
        emb = _vectors(tbl.column("embedding"), dim)[order]
        uniq, counts = np.unique(pos[order], return_counts=True)
        offsets = np.zeros(len(uniq) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return ids[uniq], offsets, emb

    def iter_embedding_batches(self, video_ids: np.ndarray | None,
                               batch_videos: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """load_embeddings over `video_ids` (None = every video, by id), `batch_videos` at a time."""
        ids = self.select_video_ids(None) if video_ids is None else np.asarray(video_ids, dtype=np.int64)
        for start in range(0, len(ids), max(1, int(batch_videos))):
            yield self.load_embeddings(ids[start:start + batch_videos])

    # ---- prompt cache ------------------------------------------------------------
    def get_prompt_embeddings(self, model_identity: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached text embeddings of `model_identity` for those `texts` that are cached."""
        if not texts:
            return {}
        rows = self.cursor().execute(
            "SELECT text, embedding FROM prompt_embeddings WHERE model_identity = ? "
            "AND text IN (SELECT unnest(?::VARCHAR[]))",
            [model_identity, list(texts)],
        ).fetchall()
        return {text: np.asarray(emb, dtype=np.float32) for text, emb in rows}

    def put_prompt_embeddings(self, model_identity: str, embeddings: Mapping[str, np.ndarray]) -> None:
        """Cache text embeddings (replacing any cached for the same model and text)."""
        if not embeddings:
            return
        rows = [[model_identity, text, np.asarray(v, dtype=np.float32).reshape(-1).tolist()]
                for text, v in embeddings.items()]
        with self._write_lock:
            cur = self.cursor()
            cur.begin()
            try:
                cur.executemany("INSERT OR REPLACE INTO prompt_embeddings VALUES (?, ?, ?)", rows)
                cur.commit()
            except BaseException:
                cur.rollback()
                raise

    # ---- export ------------------------------------------------------------------
    def export_parquet(self, path: Path, flt: VideoFilter | None = None) -> int:
        """Write one row per frame (video metadata + tags + embedding) to a Parquet file; returns rows."""
        where, params = compile_filter(flt)
        query = (
            "SELECT v.video_id, v.sha256, v.source_name, v.model_identity, v.study_id, v.patient_id, v.view, "
            "v.acquisition_time, v.ingested_at, "
            "(SELECT map(list(t.key ORDER BY t.key), list(t.value ORDER BY t.key)) FROM video_tags t "
            " WHERE t.video_id = v.video_id) AS tags, "
            "f.frame_id, f.frame_index, f.timestamp, f.embedding "
            f"FROM videos v JOIN frames f ON f.video_id = v.video_id WHERE {where} ORDER BY f.frame_id"
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = 0
        reader = self.cursor().sql(query, params=params).to_arrow_reader(65536)
        with pq.ParquetWriter(str(path), reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        log.info("exported %d frames to %s", rows, path)
        return rows
