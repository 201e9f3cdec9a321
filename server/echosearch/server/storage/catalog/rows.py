"""New videos for the catalog: validated once, laid out as Arrow tables so each table is one INSERT.

Ingest latency is dominated by per-statement overhead in DuckDB, so a batch of
videos (one video included) is written with one statement per table, and the
returned records are built from the same values instead of read back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from echosearch.server.errors import InvalidRequestError, TooLargeError
from echosearch.server.records import FrameEmbeddings, VideoMetadata, VideoRecord
from echosearch.server.storage.filters import aware_utc, to_utc_naive
from echosearch.server.storage.frame_ids import MAX_FRAMES_PER_VIDEO, frame_ids_for


@dataclass(frozen=True)
class NewVideo:
    """One video to insert, checked and normalised (the `Catalog.add_video` keyword arguments)."""

    sha256: str
    source_name: str
    size_bytes: int
    fps: float
    total_frames: int
    width: int
    height: int
    model_identity: str
    metadata: VideoMetadata
    frame_indices: np.ndarray  # int64 (n,)
    timestamps: np.ndarray  # float64 (n,)
    embeddings: np.ndarray  # float32 (n, dim), C-contiguous
    thumbnails: tuple[bytes, ...] | None = None  # one JPEG per frame, or None

    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.embeddings.shape[1])


def validate(
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
) -> NewVideo:
    """Check one video's embeddings and frame arrays; InvalidRequestError/TooLargeError on bad input."""
    emb = np.asarray(frames.embeddings)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise InvalidRequestError(f"a video needs at least one frame embedding, got shape {emb.shape}")
    n = emb.shape[0]
    if n > MAX_FRAMES_PER_VIDEO:
        raise TooLargeError(f"{n} sampled frames in one video; the catalog holds at most {MAX_FRAMES_PER_VIDEO}")
    idx = np.asarray(frames.frame_indices, dtype=np.int64).reshape(-1)
    ts = np.asarray(frames.timestamps, dtype=np.float64).reshape(-1)
    if len(idx) != n or len(ts) != n:
        raise InvalidRequestError(f"{n} embeddings but {len(idx)} frame indices and {len(ts)} timestamps")
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if not np.isfinite(emb).all():
        raise InvalidRequestError("frame embeddings contain NaN or infinity")
    thumbs = frames.thumbnails
    if thumbs is not None and len(thumbs) != n:
        raise InvalidRequestError(f"{n} embeddings but {len(thumbs)} thumbnails; give one per frame or none")
    return NewVideo(
        str(sha256),
        str(source_name),
        int(size_bytes),
        float(fps),
        int(total_frames),
        int(width),
        int(height),
        str(model_identity),
        metadata,
        idx,
        ts,
        emb,
        None if thumbs is None else tuple(bytes(t) for t in thumbs),
    )


def validate_many(items: Sequence[Mapping[str, Any]]) -> list[NewVideo]:
    """`validate` over keyword-argument mappings; the error names the offending position."""
    out = []
    for i, kwargs in enumerate(items):
        try:
            out.append(validate(**kwargs))
        except (InvalidRequestError, TooLargeError) as exc:
            raise type(exc)(f"video {i} of the batch ({kwargs.get('source_name', '?')}): {exc}") from exc
    return out


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
            )
        )
    return out
