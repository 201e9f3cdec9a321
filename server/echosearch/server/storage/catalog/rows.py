"""New videos for the catalog, laid out as Arrow tables so each table is one INSERT (validated above: services/ingest.py).

Ingest latency is dominated by per-statement overhead in DuckDB, so a batch of
videos (one video included) is written with one statement per table, and the
returned records are built from the same values instead of read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from echosearch.server.records import NewVideo, VideoMetadata, VideoRecord
from echosearch.server.storage.filters import aware_utc, to_utc_naive
from echosearch.server.storage.frame_ids import MAX_FRAMES_PER_VIDEO, frame_ids_for


def check(videos: Sequence[NewVideo]) -> None:
    """Assert what the ingest service validated (services/ingest.py `validate_video`): shapes, dtypes, one
    thumbnail per frame. A failure here is a bug above, not bad input."""
    for v in videos:
        n = len(v.embeddings)
        assert v.embeddings.ndim == 2 and v.embeddings.dtype == np.float32 and 0 < n <= MAX_FRAMES_PER_VIDEO, v.sha256
        assert v.embeddings.flags.c_contiguous and len(v.frame_indices) == len(v.timestamps) == n, v.sha256
        assert v.thumbnails is None or len(v.thumbnails) == n, v.sha256
        assert np.isfinite(v.embeddings).all(), v.sha256


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _stored_time(value: datetime | None) -> datetime | None:
    """The naive-UTC value the catalog stores (microseconds, as DuckDB TIMESTAMP keeps)."""
    return None if value is None else to_utc_naive(value)


def new_video_rows(
    video_ids: Sequence[int] | np.ndarray,
    *,
    sha256: Sequence[str],
    source_name: Sequence[str],
    size_bytes: Sequence[int] | np.ndarray,
    fps: Sequence[float] | np.ndarray,
    total_frames: Sequence[int] | np.ndarray,
    sampled_frames: Sequence[int] | np.ndarray,
    width: Sequence[int] | np.ndarray,
    height: Sequence[int] | np.ndarray,
    ingested_at: datetime,
    model_identity: Sequence[str],
    metadata: Sequence[VideoMetadata],
    seqs: Sequence[int] | np.ndarray,
    thumbnails_withheld: Sequence[str | None] | None = None,
) -> dict[str, pa.Table]:
    """Rows of the videos, video_tags and changes ("add") tables for new videos (columns in schema order): the one
    place their layout is written, for single ingests and bulk imports alike."""
    ts_type = pa.timestamp("us")
    out = {
        "videos": pa.table(
            {
                "video_id": pa.array(video_ids, pa.int64()),
                "sha256": pa.array(sha256, pa.string()),
                "source_name": pa.array(source_name, pa.string()),
                "size_bytes": pa.array(size_bytes, pa.int64()),
                "fps": pa.array(fps, pa.float64()),
                "total_frames": pa.array(total_frames, pa.int64()),
                "sampled_frames": pa.array(sampled_frames, pa.int32()),
                "width": pa.array(width, pa.int32()),
                "height": pa.array(height, pa.int32()),
                "ingested_at": pa.array([to_utc_naive(ingested_at)] * len(sha256), ts_type),
                "model_identity": pa.array(model_identity, pa.string()),
                "study_id": pa.array([_opt_str(m.study_id) for m in metadata], pa.string()),
                "patient_id": pa.array([_opt_str(m.patient_id) for m in metadata], pa.string()),
                "view": pa.array([_opt_str(m.view) for m in metadata], pa.string()),
                "acquisition_time": pa.array([_stored_time(m.acquisition_time) for m in metadata], ts_type),
                "seq": pa.array(seqs, pa.int64()),
                "thumbnails_withheld": pa.array(
                    list(thumbnails_withheld) if thumbnails_withheld is not None else [None] * len(sha256), pa.string()
                ),
            }
        )
    }
    tag_rows = [(int(vid), str(k), str(val)) for vid, m in zip(video_ids, metadata) for k, val in m.tags.items()]
    if tag_rows:
        vid_col, key_col, val_col = zip(*tag_rows)
        out["video_tags"] = pa.table(
            {
                "video_id": pa.array(vid_col, pa.int64()),
                "key": pa.array(key_col, pa.string()),
                "value": pa.array(val_col, pa.string()),
            }
        )
    out["changes"] = pa.table(
        {
            "seq": pa.array(seqs, pa.int64()),
            "op": pa.array(["add"] * len(sha256)),
            "video_id": pa.array(video_ids, pa.int64()),
            "n_frames": pa.array(sampled_frames, pa.int32()),
        }
    )
    return out


def tables(
    videos: Sequence[NewVideo], video_ids: np.ndarray, seqs: np.ndarray, ingested_at: datetime
) -> dict[str, pa.Table]:
    """Rows for the videos, video_tags, frames, frame_thumbnails and changes tables (columns in schema order)."""
    counts = np.array([len(v.embeddings) for v in videos], dtype=np.int64)
    out = new_video_rows(
        video_ids,
        sha256=[v.sha256 for v in videos],
        source_name=[v.source_name for v in videos],
        size_bytes=[v.size_bytes for v in videos],
        fps=[v.fps for v in videos],
        total_frames=[v.total_frames for v in videos],
        sampled_frames=counts,
        width=[v.width for v in videos],
        height=[v.height for v in videos],
        ingested_at=ingested_at,
        model_identity=[v.model_identity for v in videos],
        metadata=[v.metadata for v in videos],
        seqs=seqs,
        thumbnails_withheld=[v.thumbnails_withheld for v in videos],
    )
    dim = videos[0].dim
    emb = np.concatenate([v.embeddings for v in videos]) if len(videos) > 1 else videos[0].embeddings
    out["frames"] = pa.table(
        {
            "frame_id": np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(video_ids, counts)]),
            "video_id": np.repeat(np.asarray(video_ids, dtype=np.int64), counts),
            "frame_index": np.concatenate([v.frame_indices for v in videos]),
            "timestamp": np.concatenate([v.timestamps for v in videos]),
            # fixed-size list: zero-copy over the float32 buffer; DuckDB casts it to the FLOAT[] column
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        }
    )
    thumbs = thumbnail_rows(videos, video_ids)
    if thumbs is not None:
        out["frame_thumbnails"] = thumbs
    return out


def thumbnail_rows(videos: Sequence[NewVideo], video_ids: np.ndarray) -> pa.Table | None:
    """Rows of the frame_thumbnails table for the videos that carry thumbnails (None when none does)."""
    ids, jpegs = [], []
    for v, vid in zip(videos, video_ids):
        if v.thumbnails is not None:
            ids.append(frame_ids_for(int(vid), len(v.thumbnails)))
            jpegs.extend(v.thumbnails)
    if not jpegs:
        return None
    return pa.table({"frame_id": pa.array(np.concatenate(ids), pa.int64()), "jpeg": pa.array(jpegs, pa.binary())})


def records(
    videos: Sequence[NewVideo], video_ids: np.ndarray, seqs: np.ndarray, ingested_at: datetime
) -> list[VideoRecord]:
    """The VideoRecords exactly as `Catalog.get_video` will read these rows back."""
    stored_now = aware_utc(_stored_time(ingested_at))
    out = []
    for v, vid, seq in zip(videos, video_ids, seqs):
        m = v.metadata
        out.append(
            VideoRecord(
                video_id=int(vid),
                sha256=v.sha256,
                source_name=v.source_name,
                size_bytes=v.size_bytes,
                fps=v.fps,
                total_frames=v.total_frames,
                sampled_frames=len(v.embeddings),
                width=v.width,
                height=v.height,
                ingested_at=stored_now,
                model_identity=v.model_identity,
                metadata=VideoMetadata(
                    study_id=_opt_str(m.study_id),
                    patient_id=_opt_str(m.patient_id),
                    view=_opt_str(m.view),
                    acquisition_time=aware_utc(_stored_time(m.acquisition_time)),
                    tags={str(k): str(val) for k, val in m.tags.items()},
                ),
                seq=int(seq),
                thumbnails_withheld=v.thumbnails_withheld,
            )
        )
    return out
