"""DuckDB catalog: videos, frames, embeddings and prompt cache — the single source of truth."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from echosearch.server.errors import InvalidRequestError, ModelMismatchError, NotFoundError
from echosearch.server.records import FrameEmbeddings, MetadataChange, NewVideo, VideoFilter, VideoMetadata, VideoRecord
from echosearch.server.storage import export as catalog_export
from echosearch.server.storage import migrate as catalog_migrate
from echosearch.server.storage import rows as catalog_rows
from echosearch.server.storage import stored_tasks as catalog_stored_tasks
from echosearch.server.storage import thumbnails as catalog_thumbnails
from echosearch.server.storage.filters import aware_utc, compile_filter, to_utc_naive
from echosearch.server.storage.frame_ids import FRAME_BITS, frame_id_range
from echosearch.server.storage.video_batch import VideoBatch

log = logging.getLogger(__name__)

_VALUES_MAX_ROWS = 16  # below this many rows a parameterised VALUES insert beats an Arrow scan
_VIDEO_COLUMNS = (
    "video_id, sha256, source_name, size_bytes, fps, total_frames, sampled_frames, width, height, "
    "ingested_at, model_identity, study_id, patient_id, view, acquisition_time, seq"
)


@dataclass(frozen=True)
class ImportedBatch:
    """What a bulk import committed: which videos were new (keep), their new ids and seqs, frames added."""

    keep: np.ndarray  # bool (V,)
    video_ids: np.ndarray  # int64 (new videos,)
    seqs: np.ndarray  # int64 (new videos,)
    frames_added: int


def _vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A LIST<FLOAT> arrow column as a (n, dim) float32 array."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat, dtype=np.float32).reshape(len(arr), dim)


class Catalog:
    """One DuckDB file. Writes run in `transaction()`, one at a time; each thread reads through its own cursor."""

    def __init__(self, path: Path, *, memory_limit: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        config = {"memory_limit": memory_limit} if memory_limit else {}
        self._conn = duckdb.connect(str(self.path), config=config)
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._write_lock = threading.RLock()  # the transaction lock: DuckDB would abort a conflicting writer
        # (model identity, dim) once bound: the binding never changes, so ingests need not re-read it
        self._binding: tuple[str, int] | None = None
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
        catalog_migrate.apply(self.transaction, self.path)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction on this thread's cursor, under the transaction lock: commit, or roll back.

        Only an active transaction is rolled back: when the commit itself fails, DuckDB has
        already ended the transaction, and the commit's error is the one raised.
        """
        with self._write_lock:
            cur = self.cursor()
            cur.begin()
            committing = False
            try:
                yield cur
                committing = True
                self._commit(cur)
            except BaseException:
                if not committing:
                    cur.rollback()
                else:
                    try:
                        cur.rollback()
                    except duckdb.TransactionException:
                        pass  # the failed commit already ended it
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
            with self.transaction() as cur:
                self._bind_in_txn(cur, identity, dim)
            self._binding = (identity, int(dim))

    def _bind_in_txn(self, cur: duckdb.DuckDBPyConnection, identity: str, dim: int) -> None:
        if self._binding == (identity, int(dim)):
            return
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
    def _commit(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Commit point of every catalog write (a seam for tests that fail just before it)."""
        cur.commit()

    def _next(self, cur: duckdb.DuckDBPyConnection, name: str) -> int:
        return cur.execute("UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value", [name]).fetchall()[
            0
        ][0]

    @staticmethod
    def _reserve_ids(cur: duckdb.DuckDBPyConnection, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Reserve the next `m` change seqs and video ids: both counters in one statement (per-statement overhead
        dominates a small ingest). Returns (seqs, video_ids), ascending."""
        ends = dict(
            cur.execute(
                "UPDATE counters SET value = value + ? WHERE name IN ('seq', 'video_id') RETURNING name, value", [m]
            ).fetchall()
        )
        seqs = np.arange(ends["seq"] - m + 1, ends["seq"] + 1, dtype=np.int64)
        return seqs, np.arange(ends["video_id"] - m + 1, ends["video_id"] + 1, dtype=np.int64)

    def add_video(self, video: NewVideo) -> tuple[VideoRecord, bool]:
        """Store one validated video and its frames in one transaction; idempotent by sha256 (created=False)."""
        return self._insert([video])[0]

    def add_videos(self, videos: Sequence[NewVideo]) -> list[tuple[VideoRecord, bool]]:
        """Store many validated videos in ONE transaction: all or none.

        Idempotent by sha256 against the store and inside the batch: a repeat returns the
        first record with created=False. Results are in input order.
        """
        return self._insert(list(videos)) if videos else []

    def _insert(self, videos: list[NewVideo]) -> list[tuple[VideoRecord, bool]]:
        catalog_rows.check(videos)
        bindings = {(v.model_identity, v.dim) for v in videos}
        with self._write_lock:
            with self.transaction() as cur:
                for identity, dim in sorted(bindings):
                    self._bind_in_txn(cur, identity, dim)
                shas = list(dict.fromkeys(v.sha256 for v in videos))
                # `= ?` is an index lookup; the list form scans the column (fine once per batch, not per video)
                where = "v.sha256 = ?" if len(shas) == 1 else "v.sha256 IN (SELECT unnest(?::VARCHAR[]))"
                known = {r.sha256: r for r in self._find(cur, where, [shas[0]] if len(shas) == 1 else [shas])}
                fresh, seen = [], set(known)
                for v in videos:
                    if v.sha256 not in seen:
                        seen.add(v.sha256)
                        fresh.append(v)
                created: dict[str, VideoRecord] = {}
                if fresh:
                    seqs, vids = self._reserve_ids(cur, len(fresh))
                    now = datetime.now(UTC)
                    for table, rows in catalog_rows.tables(fresh, vids, seqs, now).items():
                        self._insert_rows(cur, table, rows)
                    created = {r.sha256: r for r in catalog_rows.records(fresh, vids, seqs, now)}
            self._binding = next(iter(bindings)) if len(bindings) == 1 else self._binding
        out, given = [], set()
        for v in videos:
            if v.sha256 in created and v.sha256 not in given:
                given.add(v.sha256)
                out.append((created[v.sha256], True))
            else:
                out.append((known.get(v.sha256) or created[v.sha256], False))
        return out

    def import_batch(self, batch: VideoBatch, *, shard_sha256: str) -> ImportedBatch:
        """Insert a bulk batch's new videos and record the shard, in ONE transaction; idempotent by sha256."""
        batch.validate()
        with self._write_lock:
            cur = self.cursor()
            # Embeddings do not compress; DuckDB's trying costs ~2x the insert. Only while this batch writes.
            cur.execute("SET force_compression = 'uncompressed'")
            try:
                with self.transaction() as cur:
                    done = self._import_in_txn(cur, batch, shard_sha256)
            finally:
                cur.execute("RESET force_compression")
            self._binding = (batch.model_identity, batch.dim)
        return done

    def _import_in_txn(self, cur: duckdb.DuckDBPyConnection, batch: VideoBatch, shard_sha256: str) -> ImportedBatch:
        self._bind_in_txn(cur, batch.model_identity, batch.dim)
        cur.register("_incoming", pa.table({"sha256": pa.array(batch.sha256, pa.string())}))
        try:
            known = {r[0] for r in cur.execute("SELECT sha256 FROM videos JOIN _incoming USING (sha256)").fetchall()}
        finally:
            cur.unregister("_incoming")
        keep = np.array([s not in known for s in batch.sha256], dtype=bool)
        m = int(keep.sum())
        vids = seqs = np.empty(0, np.int64)
        if m:
            seqs, vids = self._reserve_ids(cur, m)
            for table, rows in batch.tables(keep, vids, seqs, datetime.now(UTC)).items():
                self._insert_rows(cur, table, rows)
        frames = int(batch.counts[keep].sum())
        cur.execute(
            "INSERT INTO imported_shards VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [shard_sha256, batch.label, m, len(keep) - m, frames, datetime.now(UTC).replace(tzinfo=None)],
        )
        return ImportedBatch(keep, vids, seqs, frames)

    def imported_shard(self, shard_sha256: str) -> tuple[int, int, int] | None:
        """(videos added, videos already stored, frames added) of a shard committed before, else None."""
        rows = (
            self.cursor()
            .execute(
                "SELECT videos_added, videos_known, frames_added FROM imported_shards WHERE shard_sha256 = ?",
                [shard_sha256],
            )
            .fetchall()
        )
        return tuple(rows[0]) if rows else None

    @staticmethod
    def _insert_rows(cur: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
        """One INSERT per table: a few rows as bound VALUES (cheaper to plan), many through Arrow."""
        if rows.num_rows <= _VALUES_MAX_ROWS and table not in ("frames", "frame_thumbnails"):
            marks = "(" + ", ".join("?" * rows.num_columns) + ")"
            params = [value for row in rows.to_pylist() for value in row.values()]
            # `table` is one of our own four table names, never user input
            cur.execute(f"INSERT INTO {table} VALUES " + ", ".join([marks] * rows.num_rows), params)
        else:
            cur.from_arrow(rows).insert_into(table)

    def delete_video(self, video_id: int) -> None:
        """Delete a video, its frames and tags; log the delete so indexes can replay it."""
        with self.transaction() as cur:
            rows = cur.execute("SELECT sampled_frames FROM videos WHERE video_id = ?", [int(video_id)]).fetchall()
            row = rows[0] if rows else None
            if row is None:
                raise NotFoundError(f"no video with id {video_id}")
            cur.execute("DELETE FROM frames WHERE frame_id >= ? AND frame_id < ?", list(frame_id_range(video_id)))
            cur.execute(
                "DELETE FROM frame_thumbnails WHERE frame_id >= ? AND frame_id < ?", list(frame_id_range(video_id))
            )
            cur.execute("DELETE FROM video_tags WHERE video_id = ?", [int(video_id)])
            cur.execute("DELETE FROM videos WHERE video_id = ?", [int(video_id)])
            seq = self._next(cur, "seq")
            cur.execute("INSERT INTO changes VALUES (?, 'delete', ?, ?)", [seq, int(video_id), row[0]])

    def update_metadata(self, video_id: int, change: MetadataChange) -> tuple[VideoRecord, bool]:
        """Apply a metadata change in one transaction, logged as op 'metadata'; (the video now, whether it changed)."""
        with self.transaction() as cur:
            found = self._find(cur, "v.video_id = ?", [int(video_id)])
            if not found:
                raise NotFoundError(f"no video with id {video_id}")
            before = found[0].metadata
            after = change.apply(before)
            if after == before:
                return found[0], False
            when = None if after.acquisition_time is None else to_utc_naive(after.acquisition_time)
            cur.execute(
                "UPDATE videos SET study_id = ?, patient_id = ?, view = ?, acquisition_time = ? WHERE video_id = ?",
                [after.study_id, after.patient_id, after.view, when, int(video_id)],
            )
            cur.execute("DELETE FROM video_tags WHERE video_id = ?", [int(video_id)])
            for key, value in after.tags.items():
                cur.execute("INSERT INTO video_tags VALUES (?, ?, ?)", [int(video_id), key, value])
            seq = self._next(cur, "seq")
            cur.execute("INSERT INTO changes VALUES (?, 'metadata', ?, 0)", [seq, int(video_id)])
            cur.execute("INSERT INTO metadata_changes VALUES (?, ?)", [seq, change.describe(before, after)])
            record = self._find(cur, "v.video_id = ?", [int(video_id)])[0]
        return record, True

    def delete_videos(self, video_ids: Sequence[int]) -> list[tuple[int, int]]:
        """Delete many videos in ONE transaction (all or nothing; NotFoundError names the first absent
        id); one change-log entry each. Returns (video_id, sampled_frames) in the given order."""
        ids = [int(v) for v in dict.fromkeys(int(v) for v in video_ids)]
        if not ids:
            return []
        with self.transaction() as cur:
            found = dict(
                cur.execute(
                    "SELECT video_id, sampled_frames FROM videos WHERE video_id IN (SELECT unnest(?::BIGINT[]))", [ids]
                ).fetchall()
            )
            missing = [v for v in ids if v not in found]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise NotFoundError(f"no video with id {missing[0]}{more}")
            cur.register("_doomed", pa.table({"video_id": np.asarray(ids, np.int64)}))
            try:
                cur.execute("DELETE FROM frames WHERE video_id IN (SELECT video_id FROM _doomed)")
                cur.execute("DELETE FROM video_tags WHERE video_id IN (SELECT video_id FROM _doomed)")
                cur.execute("DELETE FROM videos WHERE video_id IN (SELECT video_id FROM _doomed)")
            finally:
                cur.unregister("_doomed")
            last = cur.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'seq' RETURNING value", [len(ids)]
            ).fetchall()[0][0]
            log_rows = pa.table(
                {
                    "seq": np.arange(last - len(ids) + 1, last + 1, dtype=np.int64),
                    "op": ["delete"] * len(ids),
                    "video_id": np.asarray(ids, np.int64),
                    "n_frames": np.asarray([found[v] for v in ids], np.int32),
                }
            )
            cur.from_arrow(log_rows).insert_into("changes")
        return [(v, int(found[v])) for v in ids]

    # ---- video reads -----------------------------------------------------------
    def _find(
        self, cur: duckdb.DuckDBPyConnection, where: str, params: list[Any], tail: str = "ORDER BY v.video_id"
    ) -> list[VideoRecord]:
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
                video_id=r[0],
                sha256=r[1],
                source_name=r[2],
                size_bytes=r[3],
                fps=r[4],
                total_frames=r[5],
                sampled_frames=r[6],
                width=r[7],
                height=r[8],
                ingested_at=aware_utc(r[9]),
                model_identity=r[10],
                metadata=VideoMetadata(
                    study_id=r[11],
                    patient_id=r[12],
                    view=r[13],
                    acquisition_time=aware_utc(r[14]),
                    tags=tags.get(r[0], {}),
                ),
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

    def list_videos(
        self, flt: VideoFilter | None = None, *, limit: int = 100, after_id: int | None = None
    ) -> list[VideoRecord]:
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
        res = (
            self.cursor()
            .execute(f"SELECT video_id, sampled_frames FROM videos v WHERE {where} ORDER BY video_id", params)
            .fetchnumpy()
        )
        return (np.asarray(res["video_id"], dtype=np.int64), np.asarray(res["sampled_frames"], dtype=np.int64))

    def last_seq(self) -> int:
        """The sequence number of the latest committed write (0 for an empty store)."""
        return self.cursor().execute("SELECT value FROM counters WHERE name = 'seq'").fetchall()[0][0]

    def changes_since(self, seq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(seq, is_delete, video_id, n_frames) of every add and delete after `seq`, in order (what indexes replay)."""
        res = (
            self.cursor()
            .execute(
                "SELECT seq, op = 'delete' AS is_delete, video_id, n_frames FROM changes "
                "WHERE seq > ? AND op IN ('add', 'delete') ORDER BY seq",
                [int(seq)],
            )
            .fetchnumpy()
        )
        return (
            np.asarray(res["seq"], dtype=np.int64),
            np.asarray(res["is_delete"], dtype=bool),
            np.asarray(res["video_id"], dtype=np.int64),
            np.asarray(res["n_frames"], dtype=np.int64),
        )

    # ---- frames and embeddings ---------------------------------------------------
    def get_frames(self, video_id: int) -> FrameEmbeddings:
        """A stored video's frames with their catalog ids; NotFoundError when absent."""
        return self.get_video_and_frames(video_id)[1]

    def get_video_and_frames(self, video_id: int) -> tuple[VideoRecord, FrameEmbeddings]:
        """A video and its frames read in one snapshot: a delete racing the read gives NotFoundError, never a half."""
        dim = self.embed_dim or 0
        cur = self.cursor()
        cur.begin()
        try:
            found = self._find(cur, "v.video_id = ?", [int(video_id)])
            if not found:
                raise NotFoundError(f"no video with id {video_id}")
            frames = self._frames_in(cur, int(video_id), dim)
        finally:
            cur.rollback()  # read only: nothing to keep
        return found[0], frames

    @staticmethod
    def _frames_in(cur: duckdb.DuckDBPyConnection, video_id: int, dim: int) -> FrameEmbeddings:
        tbl = cur.sql(
            "SELECT frame_id, frame_index, timestamp, embedding FROM frames "
            "WHERE frame_id >= ? AND frame_id < ? ORDER BY frame_id",
            params=list(frame_id_range(video_id)),
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
        rows = (
            self.cursor()
            .execute(
                "SELECT frame_id, frame_index, timestamp FROM frames WHERE frame_id IN (SELECT unnest(?::BIGINT[]))",
                [ids],
            )
            .fetchall()
        )
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

    def iter_embedding_batches(
        self, video_ids: np.ndarray | None, batch_videos: int = 4096
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """load_embeddings over `video_ids` (None = every video, by id), `batch_videos` at a time."""
        ids = self.select_video_ids(None) if video_ids is None else np.asarray(video_ids, dtype=np.int64)
        for start in range(0, len(ids), max(1, int(batch_videos))):
            yield self.load_embeddings(ids[start : start + batch_videos])

    # ---- thumbnails --------------------------------------------------------------
    def frame_image(self, video_id: int, frame_index: int) -> bytes | None:
        """The JPEG thumbnail of one stored frame (by decode index), or None."""
        return catalog_thumbnails.frame_image(self.cursor(), video_id, frame_index)

    def thumbnails_for(self, frame_ids: Sequence[int]) -> dict[int, bytes]:
        """frame_id -> JPEG thumbnail, for the given frames that have one."""
        return catalog_thumbnails.jpegs_for(self.cursor(), frame_ids)

    # ---- stored tasks ------------------------------------------------------------
    def stored_tasks(self) -> dict[str, str]:
        """name -> JSON of every stored (server-saved custom) task."""
        return catalog_stored_tasks.read_all(self.cursor())

    def put_stored_task(self, name: str, spec_json: str) -> None:
        """Save (or replace) a stored task."""
        with self.transaction() as cur:
            catalog_stored_tasks.put(cur, name, spec_json)

    def delete_stored_task(self, name: str) -> None:
        """Remove a stored task."""
        with self.transaction() as cur:
            catalog_stored_tasks.delete(cur, name)

    # ---- prompt cache ------------------------------------------------------------
    def get_prompt_embeddings(self, model_identity: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached text embeddings of `model_identity` for those `texts` that are cached."""
        if not texts:
            return {}
        rows = (
            self.cursor()
            .execute(
                "SELECT text, embedding FROM prompt_embeddings WHERE model_identity = ? "
                "AND text IN (SELECT unnest(?::VARCHAR[]))",
                [model_identity, list(texts)],
            )
            .fetchall()
        )
        return {text: np.asarray(emb, dtype=np.float32) for text, emb in rows}

    def put_prompt_embeddings(self, model_identity: str, embeddings: Mapping[str, np.ndarray]) -> None:
        """Cache text embeddings (replacing any cached for the same model and text)."""
        if not embeddings:
            return
        rows = [
            [model_identity, text, np.asarray(v, dtype=np.float32).reshape(-1).tolist()]
            for text, v in embeddings.items()
        ]
        with self.transaction() as cur:
            cur.executemany("INSERT OR REPLACE INTO prompt_embeddings VALUES (?, ?, ?)", rows)

    # ---- export ------------------------------------------------------------------
    def export_parquet(self, path: Path, flt: VideoFilter | None = None) -> int:
        """Write one row per frame (video metadata + tags + embedding) to a Parquet file; returns rows."""
        return catalog_export.export_parquet(self.cursor(), path, flt)
