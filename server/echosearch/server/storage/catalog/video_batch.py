"""A columnar batch of new videos (a bulk import): checked once, laid out as one Arrow table per catalog table.

The per-video path (rows.py) builds Python objects per video; at a million frames that overhead is the
cost, so a batch keeps every frame of every video in one array and computes ids and offsets in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from echosearch.server.errors import InvalidRequestError, TooLargeError
from echosearch.server.records import VideoMetadata
from echosearch.server.storage.catalog.rows import new_video_rows
from echosearch.server.storage.frame_ids import FRAME_BITS, MAX_FRAMES_PER_VIDEO


@dataclass(frozen=True)
class VideoBatch:
    """Videos to insert together: per-video lists/arrays (length V) and their frames concatenated (length F)."""

    label: str  # names the batch in errors ("shard part-3.parquet")
    model_identity: str
    sha256: list[str]
    source_name: list[str]
    size_bytes: np.ndarray  # int64 (V,)
    fps: np.ndarray  # float64 (V,)
    total_frames: np.ndarray  # int64 (V,)
    width: np.ndarray  # int32 (V,)
    height: np.ndarray  # int32 (V,)
    metadata: list[VideoMetadata]
    offsets: np.ndarray  # int64 (V+1,): video i's frames are rows offsets[i]:offsets[i+1]
    frame_indices: np.ndarray  # int64 (F,)
    timestamps: np.ndarray  # float64 (F,)
    embeddings: np.ndarray  # float32 (F, dim)
    thumbnails: pa.Array | None = None  # binary (F,): each frame's JPEG, null for frames without one; None: none

    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.embeddings.shape[1])

    @property
    def counts(self) -> np.ndarray:
        """Frames per video."""
        return np.diff(self.offsets)

    def validate(self) -> None:
        """InvalidRequestError/TooLargeError naming the batch and the first bad row."""
        v, f = len(self.sha256), len(self.embeddings)
        if self.embeddings.ndim != 2 or self.embeddings.dtype != np.float32:
            raise InvalidRequestError(f"{self.label}: embeddings must be a float32 (frames, dim) array")
        if len(self.offsets) != v + 1 or self.offsets[0] != 0 or self.offsets[-1] != f:
            raise InvalidRequestError(f"{self.label}: frame offsets do not cover the {f} frame rows")
        if len(self.frame_indices) != f or len(self.timestamps) != f:
            raise InvalidRequestError(f"{self.label}: {f} embeddings but other frame columns differ in length")
        if self.thumbnails is not None and len(self.thumbnails) != f:
            raise InvalidRequestError(f"{self.label}: {f} embeddings but {len(self.thumbnails)} thumbnails")
        counts = self.counts
        if (counts <= 0).any():
            raise InvalidRequestError(f"{self.label} video {int(np.flatnonzero(counts <= 0)[0])}: no frames")
        if (counts > MAX_FRAMES_PER_VIDEO).any():
            i = int(np.flatnonzero(counts > MAX_FRAMES_PER_VIDEO)[0])
            raise TooLargeError(f"{self.label} row {int(self.offsets[i])}: a video with {int(counts[i])} frames")
        # A float64 row sum is finite exactly when every value is (float32 values cannot overflow it), and
        # costs one pass instead of a (frames x dim) boolean array.
        finite = np.isfinite(self.embeddings.sum(axis=1, dtype=np.float64))
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise InvalidRequestError(f"{self.label} row {row}: embedding contains NaN or infinity")
        if len(set(self.sha256)) != v:
            raise InvalidRequestError(f"{self.label}: the same video (sha256) appears twice")

    def tables(self, keep: np.ndarray, video_ids: np.ndarray, seqs: np.ndarray, now: datetime) -> dict[str, pa.Table]:
        """Rows of the videos with keep[i] (new ones) for the videos, video_tags, frames, frame_thumbnails (when
        any kept frame has one) and changes tables."""
        idx = np.flatnonzero(keep)
        counts = self.counts[idx].astype(np.int64)
        out = new_video_rows(
            video_ids,
            sha256=[self.sha256[i] for i in idx],
            source_name=[self.source_name[i] for i in idx],
            size_bytes=self.size_bytes[idx],
            fps=self.fps[idx],
            total_frames=self.total_frames[idx],
            sampled_frames=counts,
            width=self.width[idx],
            height=self.height[idx],
            ingested_at=now,
            model_identity=[self.model_identity] * len(idx),
            metadata=[self.metadata[i] for i in idx],
            seqs=seqs,
        )
        rows = self.frame_rows(keep)
        video_of_row = np.repeat(np.asarray(video_ids, np.int64), counts)
        position = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        emb = self.embeddings[rows]  # a view when every video is kept
        frame_id = (video_of_row << FRAME_BITS) + position
        out["frames"] = pa.table(
            {
                "frame_id": frame_id,
                "video_id": video_of_row,
                "frame_index": self.frame_indices[rows],
                "timestamp": self.timestamps[rows],
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), self.dim),
            }
        )
        thumbs = self._thumbnail_rows(rows, frame_id)
        if thumbs is not None:
            out["frame_thumbnails"] = thumbs
        return out

    def _thumbnail_rows(self, rows: np.ndarray | slice, frame_id: np.ndarray) -> pa.Table | None:
        """frame_thumbnails rows of the kept frames that carry a JPEG (None when none does)."""
        if self.thumbnails is None:
            return None
        jpegs = self.thumbnails if isinstance(rows, slice) else self.thumbnails.take(pa.array(rows))
        present = jpegs.is_valid()
        if jpegs.null_count:
            if jpegs.null_count == len(jpegs):
                return None
            jpegs = jpegs.filter(present)
            frame_id = frame_id[np.asarray(present.to_numpy(zero_copy_only=False), dtype=bool)]
        return pa.table({"frame_id": pa.array(frame_id, pa.int64()), "jpeg": jpegs})

    def frame_rows(self, keep: np.ndarray) -> np.ndarray | slice:
        """Indices of the frame rows of the kept videos (a full slice when every video is kept)."""
        if keep.all():
            return slice(None)
        return np.repeat(keep, self.counts).nonzero()[0]
