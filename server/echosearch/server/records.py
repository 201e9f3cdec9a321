"""Plain data records passed between the layers: rpc <-> services <-> storage/tasks/media (no I/O).

One record per seam: what a request asks for (Sampling, VideoFilter, MetadataChange, TaskRequest), what
is stored (NewVideo down to the catalog, VideoRecord and FrameEmbeddings back), and what a use case
answers (IngestOutcome, SearchResult, VideoScore, ImportOutcome, ServerInfo). Their few methods derive
values from their own fields; validation against the server's limits is the services' job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from echosearch.server.errors import InvalidRequestError

SAMPLING_MODES = ("reference", "all", "every", "count")
REFERENCE_WINDOW = 40  # the published code keeps frames [0 : min(40, n) : 2]
CHANNEL_ORDERS = ("rgb", "bgr")
AGGREGATIONS = ("max", "mean")


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
    thumbnails_withheld: str | None = None  # why no thumbnails although kept (media/dicom/phi.py); None: kept


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


# ---- what a request asks for ----------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video to embed; checked once, when it is made (an invalid Sampling cannot exist)."""

    mode: str = "reference"  # reference: [0:min(40,n):2]; all; every: every `step`-th; count: `count` evenly spaced
    step: int = 2
    count: int = 20
    max_frames: int = 512  # hard cap on frames embedded per video

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InvalidRequestError with an actionable message when an option is out of range."""
        if self.mode not in SAMPLING_MODES:
            raise InvalidRequestError(f"unknown sampling mode {self.mode!r}; use one of {', '.join(SAMPLING_MODES)}")
        if self.max_frames < 1:
            raise InvalidRequestError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.mode == "every" and self.step < 1:
            raise InvalidRequestError(f"sampling 'every' needs step >= 1, got {self.step}")
        if self.mode == "count" and not 1 <= self.count <= self.max_frames:
            raise InvalidRequestError(
                f"sampling 'count' needs 1 <= count <= max_frames ({self.max_frames}), got {self.count}; "
                "a server embeds at most its --max-frames-per-video frames per video (default 512)"
            )

    def indices(self, n: int) -> np.ndarray:
        """Frame indices this sampling embeds from a stream of `n` frames."""
        if self.mode == "reference":
            idx = np.arange(0, min(REFERENCE_WINDOW, n), 2)
        elif self.mode == "all":
            idx = np.arange(n)
        elif self.mode == "every":
            idx = np.arange(0, n, self.step)
        else:
            idx = np.unique(np.linspace(0, n - 1, min(self.count, n)).round()) if n > 0 else np.arange(0)
        return idx.astype(np.int64)


METADATA_FIELDS = ("study_id", "patient_id", "view", "acquisition_time")
TAG_PREFIX = "tag."


@dataclass(frozen=True)
class MetadataChange:
    """Set the given fields and tags (None fields are left alone), clear `clear_fields`, drop `remove_tags`."""

    set: VideoMetadata = field(default_factory=VideoMetadata)
    clear_fields: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.clear_fields or self.remove_tags or self.set.tags) and all(
            getattr(self.set, f) is None for f in METADATA_FIELDS
        )

    def apply(self, before: VideoMetadata) -> VideoMetadata:
        """The metadata after this change."""
        fields = {f: getattr(self.set, f) for f in METADATA_FIELDS if getattr(self.set, f) is not None}
        fields.update({f: None for f in self.clear_fields})
        tags = {k: v for k, v in before.tags.items() if k not in self.remove_tags}
        tags.update(self.set.tags)
        return replace(before, tags=tags, **fields)

    def describe(self, before: VideoMetadata, after: VideoMetadata) -> str:
        """What changed, as the change log's JSON detail: {"set": {...}, "removed": [...]}."""
        set_: dict[str, str] = {}
        removed: list[str] = []
        for f in METADATA_FIELDS:
            old, new = getattr(before, f), getattr(after, f)
            if old != new:
                if new is None:
                    removed.append(f)
                else:
                    set_[f] = new.isoformat() if hasattr(new, "isoformat") else str(new)
        for key in sorted(set(before.tags) | set(after.tags)):
            if before.tags.get(key) != after.tags.get(key):
                if key in after.tags:
                    set_[TAG_PREFIX + key] = after.tags[key]
                else:
                    removed.append(TAG_PREFIX + key)
        return json.dumps({"set": set_, "removed": removed}, sort_keys=True)


@dataclass(frozen=True)
class TaskRequest:
    """A task defined in a request (ScoreVideos' inline task, CreateTask), before the model's checks.

    `values`: regression (start, stop, step) inclusive, or the candidate values of a categorical task.
    """

    kind: str
    prompts: tuple[str, ...]
    name: str = "custom"
    values: tuple[float, ...] | None = None
    labels: dict[float, str] | None = None
    threshold: float | None = None


# ---- what is stored -------------------------------------------------------------------


@dataclass(frozen=True)
class NewVideo:
    """One video to insert, from the ingest service down to the catalog (services/ingest.py validates it)."""

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
    embeddings: np.ndarray  # float32 (n, dim), C-contiguous, finite
    thumbnails: tuple[bytes, ...] | None = None  # one JPEG per frame, or None
    thumbnails_withheld: str | None = None  # why there are none although asked for (VideoRecord's field)

    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.embeddings.shape[1])

    @property
    def frames(self) -> FrameEmbeddings:
        """The video's frames as the store indexes them."""
        return FrameEmbeddings(self.frame_indices, self.timestamps, self.embeddings, thumbnails=self.thumbnails)


# ---- what a use case answers --------------------------------------------------------------


@dataclass(frozen=True)
class DeleteOutcome:
    """What DeleteVideos did or, for a dry run, would do."""

    matched: int  # stored videos the request selected
    deleted: int  # 0 for a dry run
    not_found: tuple[int, ...] = ()  # requested ids that are not stored
    confirm_token: str = ""  # a filter's dry run: deletes exactly the videos it counted


@dataclass(frozen=True)
class IngestOutcome:
    """What an ingest did: the stored video, whether it was already there, where the time went."""

    video: VideoRecord
    already_stored: bool
    decode_seconds: float
    encode_seconds: float
    store_seconds: float
    metadata_updated: bool = False  # already stored, and the upload's differing metadata was written
    metadata_conflicts: tuple[MetadataConflict, ...] = ()  # already stored: where upload and store disagreed


@dataclass(frozen=True)
class MetadataConflict:
    """A field ("view", "tag.site") on which a re-ingest disagreed with the store: kept, or replaced."""

    field: str
    stored: str
    uploaded: str
    replaced: bool


@dataclass(frozen=True)
class SearchResult:
    """One video found by a search, with its best-matching frames."""

    video: VideoRecord
    score: float
    best_frames: tuple[FrameHit, ...]
    thumbnail: bytes | None = None  # the best frame's JPEG, when asked for and kept


@dataclass(frozen=True)
class VideoScore:
    """One video's result for a task."""

    video_id: int
    score: float
    value: float | None
    label: str | None
    decision: bool | None
    percentile: float | None = None  # binary: the share (0-100) of the selection's videos scoring at most this
    percentile_of: int = 0  # ... among this many


@dataclass(frozen=True)
class ImportOutcome:
    """What importing one bulk shard committed."""

    shard_name: str
    already_imported: bool
    videos_added: int
    videos_already_stored: int
    frames_added: int
    seconds: float


@dataclass(frozen=True)
class ExportChunk:
    """One piece of a Parquet export as it streams: `rows` and `total_bytes` are set on the first piece only."""

    data: bytes
    rows: int = 0
    total_bytes: int = 0


# ---- what the service reports about itself (GetServerInfo, ListTasks) -----------------------


@dataclass(frozen=True)
class PluginProblem:
    """A plugin (task empty) or one of its tasks that was skipped, or a name clash that was resolved."""

    plugin: str  # entry-point name
    distribution: str
    task: str
    reason: str
    message: str  # the whole sentence, as logged
