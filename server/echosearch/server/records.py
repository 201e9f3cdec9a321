"""Plain data records shared by catalog, index, tasks, engine and api (no behaviour, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass(frozen=True)
class VideoMetadata:
    """What the user tells us about a video; every field optional."""

    study_id: str | None = None
    patient_id: str | None = None
    view: str | None = None
    acquisition_time: datetime | None = None  # timezone-aware UTC when given
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FrameEmbeddings:
    """The sampled frames of one video and their L2-normalised embeddings."""

    frame_indices: np.ndarray  # int64 (n,): index of the frame in the decoded stream
    timestamps: np.ndarray  # float64 (n,): seconds from the start of the stream
    embeddings: np.ndarray  # float32 (n, dim)
    frame_ids: np.ndarray | None = None  # int64 (n,): catalog ids, set once stored
    thumbnails: tuple[bytes, ...] | None = None  # one JPEG per frame (the model's input crop), when kept


@dataclass(frozen=True)
class VideoRecord:
    """One stored video as the catalog holds it."""

    video_id: int
    sha256: str
    source_name: str
    size_bytes: int
    fps: float
    total_frames: int  # frames in the file
    sampled_frames: int  # frames embedded and stored
    width: int
    height: int
    ingested_at: datetime
    model_identity: str
    metadata: VideoMetadata
    seq: int  # catalog write sequence number of the ingest


@dataclass(frozen=True)
class VideoFilter:
    """A structured metadata filter; every given field must match (AND).

    Set fields match when the video's value is one of the given values; time
    ranges are inclusive; tags match when each key has exactly that value.
    """

    video_ids: tuple[int, ...] | None = None
    study_ids: tuple[str, ...] | None = None
    patient_ids: tuple[str, ...] | None = None
    views: tuple[str, ...] | None = None
    acquired_after: datetime | None = None
    acquired_before: datetime | None = None
    ingested_after: datetime | None = None
    ingested_before: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True when the filter selects every video."""
        return (
            self.video_ids is None
            and self.study_ids is None
            and self.patient_ids is None
            and self.views is None
            and self.acquired_after is None
            and self.acquired_before is None
            and self.ingested_after is None
            and self.ingested_before is None
            and not self.tags
        )


@dataclass(frozen=True)
class FrameHit:
    """One frame found by a search: its catalog id, its video, where it is in the video, its score."""

    frame_id: int
    video_id: int
    frame_index: int
    timestamp: float
    score: float


@dataclass(frozen=True)
class VideoHit:
    """One video found by a search, with its best frames."""

    video_id: int
    score: float
    best_frames: tuple[FrameHit, ...]
