"""Catalog writes, each in one `transaction()`: add videos (one or a batch), import a bulk batch, delete
videos, update metadata, save stored tasks and cached prompt embeddings. Every write that changes the videos
takes change-log seqs so the indexes can replay it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from echosearch.server.errors import NotFoundError
from echosearch.server.records import MetadataChange, NewVideo, VideoMetadata, VideoRecord
from echosearch.server.storage.catalog import prompt_embedding_table, stored_task_table
from echosearch.server.storage.catalog import rows as catalog_rows
from echosearch.server.storage.catalog.reads import CatalogReads
from echosearch.server.storage.catalog.video_batch import VideoBatch
from echosearch.server.storage.filters import to_utc_naive
from echosearch.server.storage.frame_ids import FRAME_BITS

_VALUES_MAX_ROWS = 16  # below this many rows a parameterised VALUES insert beats an Arrow scan


@dataclass(frozen=True)
class ImportedBatch:
    """What a bulk import committed: which videos were new (keep), their new ids and seqs, frames added."""

    keep: np.ndarray  # bool (V,)
    video_ids: np.ndarray  # int64 (new videos,)
    seqs: np.ndarray  # int64 (new videos,)
    frames_added: int


class CatalogWrites(CatalogReads):
    """The catalog's write methods, on top of its reads (a write looks up what is stored first)."""

    # ---- adding videos ---------------------------------------------------------
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

    # ---- deleting and changing videos -------------------------------------------
    def delete_video(self, video_id: int) -> None:
        """Delete a video, its frames, thumbnails and tags; log the delete so indexes can replay it."""
        self.delete_videos([video_id])

    def update_metadata(
        self, video_id: int, change: MetadataChange, *, check: Callable[[VideoMetadata], None] | None = None
    ) -> tuple[VideoRecord, bool]:
        """Apply a metadata change in one transaction, logged as op 'metadata'; (the video now, whether it changed).

        `check(after)` runs on the merged metadata inside the transaction and may raise to refuse it. Only the
        named tags are written, so an update costs the size of the change, not of the video's tags.
        """
        with self.transaction() as cur:
            found = self._find(cur, "v.video_id = ?", [int(video_id)])
            if not found:
                raise NotFoundError(f"no video with id {video_id}")
            before = found[0].metadata
            after = change.apply(before)
            if after == before:
                return found[0], False
            if check is not None:
                check(after)
            when = None if after.acquisition_time is None else to_utc_naive(after.acquisition_time)
            cur.execute(
                "UPDATE videos SET study_id = ?, patient_id = ?, view = ?, acquisition_time = ? WHERE video_id = ?",
                [after.study_id, after.patient_id, after.view, when, int(video_id)],
            )
            touched = [k for k in (*change.remove_tags, *change.set.tags) if before.tags.get(k) != after.tags.get(k)]
            if touched:
                cur.execute(
                    "DELETE FROM video_tags WHERE video_id = ? AND key IN (SELECT unnest(?::VARCHAR[]))",
                    [int(video_id), touched],
                )
                rows = [[int(video_id), k, after.tags[k]] for k in touched if k in after.tags]
                if rows:
                    cur.executemany("INSERT INTO video_tags VALUES (?, ?, ?)", rows)
            seq = self._next(cur, "seq")
            cur.execute("INSERT INTO changes VALUES (?, 'metadata', ?, 0)", [seq, int(video_id)])
            cur.execute("INSERT INTO metadata_changes VALUES (?, ?)", [seq, change.describe(before, after)])
            record = self._find(cur, "v.video_id = ?", [int(video_id)])[0]
        return record, True

    def delete_videos(self, video_ids: Sequence[int]) -> list[tuple[int, int]]:
        """Delete videos with their frames, thumbnails and tags in ONE transaction (all or nothing; NotFoundError
        names the first absent id); one change-log entry each. Returns (video_id, sampled_frames) in the given
        order. The one delete path: `delete_video` is this with one id."""
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
                # a video's frame ids (and so its thumbnails' keys) are the ones whose high bits are its id
                cur.execute(
                    "DELETE FROM frame_thumbnails WHERE frame_id >> ? IN (SELECT video_id FROM _doomed)", [FRAME_BITS]
                )
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

    # ---- side tables -------------------------------------------------------------
    def put_stored_task(self, name: str, spec_json: str) -> None:
        """Save (or replace) a stored task."""
        with self.transaction() as cur:
            stored_task_table.put(cur, name, spec_json)

    def delete_stored_task(self, name: str) -> None:
        """Remove a stored task."""
        with self.transaction() as cur:
            stored_task_table.delete(cur, name)

    def put_prompt_embeddings(self, model_identity: str, embeddings: Mapping[str, np.ndarray]) -> None:
        """Cache text embeddings (replacing any cached for the same model and text)."""
        if not embeddings:
            return
        with self.transaction() as cur:
            prompt_embedding_table.put(cur, model_identity, embeddings)

    def delete_prompt_embeddings(self, model_identity: str, texts: Sequence[str]) -> int:
        """Remove cached text embeddings (a deleted task's prompts that no other task uses); returns how many."""
        if not texts:
            return 0
        with self.transaction() as cur:
            return prompt_embedding_table.delete(cur, model_identity, texts)
