"""Reads of the frame_thumbnails table (written with the frames, in catalog/rows.py)."""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from echosearch.server.storage.frame_ids import frame_id_range


def frame_image(cur: duckdb.DuckDBPyConnection, video_id: int, frame_index: int) -> bytes | None:
    """The JPEG of the stored frame of `video_id` with this decode index, or None when there is none."""
    lo, hi = frame_id_range(video_id)
    rows = cur.execute(
        "SELECT t.jpeg FROM frames f JOIN frame_thumbnails t ON t.frame_id = f.frame_id "
        "WHERE f.frame_id >= ? AND f.frame_id < ? AND f.frame_index = ?",
        [lo, hi, int(frame_index)],
    ).fetchall()
    return bytes(rows[0][0]) if rows else None


def jpegs_for(cur: duckdb.DuckDBPyConnection, frame_ids: Iterable[int]) -> dict[int, bytes]:
    """frame_id -> JPEG for those of `frame_ids` that have a thumbnail."""
    ids = [int(f) for f in frame_ids]
    if not ids:
        return {}
    rows = cur.execute(
        "SELECT frame_id, jpeg FROM frame_thumbnails WHERE frame_id IN (SELECT unnest(?::BIGINT[]))", [ids]
    ).fetchall()
    return {int(fid): bytes(jpeg) for fid, jpeg in rows}


def count(cur: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(thumbnails stored, their total bytes)."""
    n, total = cur.execute("SELECT count(*), coalesce(sum(octet_length(jpeg)), 0) FROM frame_thumbnails").fetchall()[0]
    return int(n), int(total)


def stored(cur: duckdb.DuckDBPyConnection) -> int:
    """How many thumbnails are stored (a row count: no JPEG is read, unlike `count`'s byte total)."""
    return int(cur.execute("SELECT count(*) FROM frame_thumbnails").fetchone()[0])
