"""Catalog reads: videos (by id, content, filter, page), the change log, frames and embeddings, thumbnails,
stored tasks, cached prompt embeddings, and the Parquet export. Each thread reads through its own cursor."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from echosearch.server.errors import NotFoundError
from echosearch.server.records import FrameEmbeddings, VideoFilter, VideoMetadata, VideoRecord
from echosearch.server.storage.catalog import export as catalog_export
from echosearch.server.storage.catalog import prompt_embedding_table, stored_task_table, thumbnail_table
from echosearch.server.storage.catalog.connection import CatalogConnection
from echosearch.server.storage.filters import aware_utc, compile_filter
from echosearch.server.storage.frame_ids import FRAME_BITS, frame_id_range

_VIDEO_COLUMNS = (
    "video_id, sha256, source_name, size_bytes, fps, total_frames, sampled_frames, width, height, "
    "ingested_at, model_identity, study_id, patient_id, view, acquisition_time, seq, thumbnails_withheld"
)


def _vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A LIST<FLOAT> arrow column as a (n, dim) float32 array."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat, dtype=np.float32).reshape(len(arr), dim)


class FrameOrderError(RuntimeError):
    """A catalog scan's frames did not come in frame-id order (not expected: ids only grow)."""


class CatalogReads(CatalogConnection):
    """The catalog's read methods (no writes): what `CatalogReader` exposes above the store."""

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
                thumbnails_withheld=r[16],
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

    def scan_frame_embeddings(self, batch_rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored frame as (frame ids, embeddings (n, D)) batches, in the table's order: one sequential
        scan (about 4x faster than load_embeddings by video batches). The rows come in insertion order, which
        is frame-id order (ids only grow); scan_video_embeddings checks it.

        The scan has a cursor of its own: its caller may query the catalog between batches (a streaming result
        holds its cursor until it ends). It reads one snapshot; writes and checkpoints go on meanwhile."""
        dim = self.embed_dim or 0
        if dim == 0:
            return
        cur = self._conn.cursor()
        try:
            # `sql(...).to_arrow_reader` streams; `execute(...)` would materialise every row first.
            reader = cur.sql("SELECT frame_id, embedding FROM frames").to_arrow_reader(int(batch_rows))
            for batch in reader:
                if batch.num_rows:
                    yield batch.column(0).to_numpy(), _vectors(batch.column(1), dim)
        finally:
            cur.close()

    def scan_video_embeddings(self, batch_rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every stored video, whole, as load_embeddings' (video ids, offsets, embeddings) batches in id order,
        from one sequential scan; FrameOrderError if the rows do not come in frame-id order."""
        carry_f, carry_e = np.empty(0, np.int64), None
        for fids, emb in self.scan_frame_embeddings(batch_rows):
            if len(carry_f):  # the previous batch's last video may go on here
                fids, emb = np.concatenate([carry_f, fids]), np.concatenate([carry_e, emb])
            if np.any(fids[1:] <= fids[:-1]):
                raise FrameOrderError("the catalog's frames did not come in frame-id order")
            vids = fids >> FRAME_BITS
            starts = np.flatnonzero(np.r_[True, vids[1:] != vids[:-1]])
            cut = int(starts[-1])  # the last video may go on in the next batch
            if cut:
                yield vids[starts[:-1]], np.r_[starts[:-1], cut].astype(np.int64), emb[:cut]
            carry_f, carry_e = fids[cut:], emb[cut:]
        if len(carry_f):
            yield carry_f[:1] >> FRAME_BITS, np.array([0, len(carry_f)], np.int64), carry_e

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

    # ---- thumbnails --------------------------------------------------------------
    def thumbnail_count(self) -> int:
        """How many thumbnails are stored."""
        return thumbnail_table.stored(self.cursor())

    def frame_image(self, video_id: int, frame_index: int) -> bytes | None:
        """The JPEG thumbnail of one stored frame (by decode index), or None."""
        return thumbnail_table.frame_image(self.cursor(), video_id, frame_index)

    def thumbnails_for(self, frame_ids: Sequence[int]) -> dict[int, bytes]:
        """frame_id -> JPEG thumbnail, for the given frames that have one."""
        return thumbnail_table.jpegs_for(self.cursor(), frame_ids)

    # ---- stored tasks ------------------------------------------------------------
    def stored_tasks(self) -> dict[str, str]:
        """name -> JSON of every stored (server-saved custom) task."""
        return stored_task_table.read_all(self.cursor())

    # ---- prompt cache ------------------------------------------------------------
    def get_prompt_embeddings(self, model_identity: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached text embeddings of `model_identity` for those `texts` that are cached."""
        return prompt_embedding_table.read(self.cursor(), model_identity, texts)

    # ---- export ------------------------------------------------------------------
    def export_parquet(self, path: Path, flt: VideoFilter | None = None) -> int:
        """Write one row per frame (video metadata + tags + embedding) to a Parquet file; returns rows."""
        return catalog_export.export_parquet(self.cursor(), path, flt)
