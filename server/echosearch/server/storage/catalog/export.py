"""Parquet export of the catalog: one row per frame with its video's metadata, tags and embedding."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from echosearch.server.records import VideoFilter
from echosearch.server.storage.filters import compile_filter

log = logging.getLogger(__name__)


def export_parquet(cur: duckdb.DuckDBPyConnection, path: Path, flt: VideoFilter | None = None) -> int:
    """Stream the frames of the videos matching `flt` to a Parquet file (in frame-id order); returns rows.

    `thumbnail` is the frame's JPEG (the model's input crop), null where the server kept none.
    """
    where, params = compile_filter(flt)
    query = (
        "SELECT v.video_id, v.sha256, v.source_name, v.model_identity, v.study_id, v.patient_id, v.view, "
        "v.acquisition_time, v.ingested_at, "
        "(SELECT map(list(t.key ORDER BY t.key), list(t.value ORDER BY t.key)) FROM video_tags t "
        " WHERE t.video_id = v.video_id) AS tags, "
        "f.frame_id, f.frame_index, f.timestamp, f.embedding, th.jpeg AS thumbnail "
        "FROM videos v JOIN frames f ON f.video_id = v.video_id "
        "LEFT JOIN frame_thumbnails th ON th.frame_id = f.frame_id "
        f"WHERE {where} ORDER BY f.frame_id"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    reader = cur.sql(query, params=params).to_arrow_reader(65536)
    with pq.ParquetWriter(str(path), reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    log.info("exported %d frames to %s", rows, path)
    return rows
