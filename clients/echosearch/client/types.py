"""Plain, immutable Python records the client returns (built from echosearch.v1 messages; no numpy needed)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from echosearch.v1 import echosearch_pb2 as pb

KIND_NAMES = {
    pb.TASK_KIND_BINARY: "binary",
    pb.TASK_KIND_REGRESSION: "regression",
    pb.TASK_KIND_CATEGORICAL: "categorical",
}


def _time(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


@dataclass(frozen=True)
class VideoMetadata:
    """What the uploader told the service about a video (every field optional)."""

    study_id: str | None = None
    patient_id: str | None = None
    view: str | None = None
    acquisition_time: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, m: pb.VideoMetadata) -> VideoMetadata:
        return cls(
            m.study_id or None,
            m.patient_id or None,
            m.view or None,
            _time(m.acquisition_time, m.HasField("acquisition_time")),
            dict(m.tags),
        )

    def to_proto(self) -> pb.VideoMetadata:
        msg = pb.VideoMetadata(
            study_id=self.study_id or "", patient_id=self.patient_id or "", view=self.view or "", tags=self.tags
        )
        if self.acquisition_time is not None:
            t = self.acquisition_time if self.acquisition_time.tzinfo else self.acquisition_time.replace(tzinfo=UTC)
            msg.acquisition_time.FromDatetime(t)
        return msg


@dataclass(frozen=True)
class Video:
    """A stored video."""

    video_id: int
    sha256: str
    source_name: str
    size_bytes: int
    fps: float
    total_frames: int
    sampled_frames: int
    width: int
    height: int
    ingested_at: datetime | None
    model_identity: str
    metadata: VideoMetadata
    sequence: int

    @classmethod
    def from_proto(cls, v: pb.Video) -> Video:
        return cls(
            v.video_id,
            v.sha256,
            v.source_name,
            v.size_bytes,
            v.fps,
            v.total_frames,
            v.sampled_frames,
            v.width,
            v.height,
            _time(v.ingested_at, v.HasField("ingested_at")),
            v.model_identity,
            VideoMetadata.from_proto(v.metadata),
            v.sequence,
        )


@dataclass(frozen=True)
class Frame:
    """A stored frame with its embedding (a tuple of floats; `numpy.asarray` it if you like)."""

    frame_id: int
    frame_index: int
    timestamp: float
    embedding: tuple[float, ...]


@dataclass(frozen=True)
class FrameHit:
    """A frame that matched a query."""

    frame_id: int
    frame_index: int
    timestamp: float
    score: float


@dataclass(frozen=True)
class SearchResult:
    """A video found by a search, with its best frames."""

    video: Video
    score: float
    best_frames: tuple[FrameHit, ...]
    thumbnail: bytes | None = None  # the best frame's JPEG, when asked for (include_thumbnails)

    @classmethod
    def from_proto(cls, r: pb.SearchResult) -> SearchResult:
        hits = tuple(FrameHit(h.frame_id, h.frame_index, h.timestamp_seconds, h.score) for h in r.best_frames)
        return cls(Video.from_proto(r.video), r.score, hits, r.thumbnail or None)


@dataclass(frozen=True)
class IngestResult:
    """What an upload did."""

    video: Video
    already_stored: bool
    decode_seconds: float
    encode_seconds: float
    store_seconds: float
    metadata_updated: bool = False  # already stored, and the upload's differing metadata was written

    @classmethod
    def from_proto(cls, r: pb.IngestVideoResponse) -> IngestResult:
        return cls(
            Video.from_proto(r.video),
            r.already_stored,
            r.decode_seconds,
            r.encode_seconds,
            r.store_seconds,
            r.metadata_updated,
        )


@dataclass(frozen=True)
class ImportResult:
    """What the server committed for one bulk shard (`already_imported`: committed by an earlier load)."""

    shard_name: str
    already_imported: bool
    videos_added: int
    videos_already_stored: int
    frames_added: int
    seconds: float

    @classmethod
    def from_proto(cls, r: pb.ImportEmbeddingsResponse) -> ImportResult:
        return cls(r.shard_name, r.already_imported, r.videos_added, r.videos_already_stored, r.frames_added, r.seconds)


@dataclass(frozen=True)
class Task:
    """A task: kind "binary" | "regression" | "categorical", prompts and (per kind) values, labels, threshold."""

    name: str
    kind: str
    description: str
    prompts: tuple[str, ...]
    values: tuple[float, ...]
    labels: dict[float, str]
    threshold: float | None
    placeholder: str
    source: str
    value_range: tuple[float, float, float] | None  # regression: (start, stop, step), inclusive
    calibration: tuple[float, float] | None = None  # stored regression tasks: value = a * raw + b

    @classmethod
    def from_proto(cls, t: pb.Task) -> Task:
        rng = t.value_range
        value_range = (rng.start, rng.stop, rng.step) if t.HasField("value_range") else None
        return cls(
            t.name,
            KIND_NAMES.get(t.kind, "unspecified"),
            t.description,
            tuple(t.prompts),
            tuple(t.values),
            {lab.value: lab.label for lab in t.labels},
            t.threshold if t.HasField("threshold") else None,
            t.placeholder,
            t.source,
            value_range,
            (t.calibration.a, t.calibration.b) if t.HasField("calibration") else None,
        )


@dataclass(frozen=True)
class PluginProblem:
    """A plugin or task the server skipped at start-up, and why."""

    plugin: str
    distribution: str
    task: str
    reason: str

    @classmethod
    def from_proto(cls, p: pb.PluginProblem) -> PluginProblem:
        return cls(p.plugin, p.distribution, p.task, p.reason)


@dataclass(frozen=True)
class VideoScore:
    """One video's result for a task: score, value/label (regression, categorical), decision (thresholded binary)."""

    video_id: int
    score: float
    value: float | None
    label: str | None
    decision: bool | None

    @classmethod
    def from_proto(cls, s: pb.VideoScore) -> VideoScore:
        return cls(
            s.video_id,
            s.score,
            s.value if s.HasField("value") else None,
            s.label or None,
            s.decision if s.HasField("decision") else None,
        )


@dataclass(frozen=True)
class EncoderInfo:
    """The server's ingest path: batching encoder statistics and the decode-worker pool."""

    device: str
    precision: str
    compiled: bool
    batch_frames: int
    batch_wait_ms: float
    batches: int
    frames: int
    mean_frames_per_batch: float
    queue_wait_p50_ms: float
    queue_wait_p99_ms: float
    retried_batches: int
    text_batches: int
    queued_frames: int
    decode_workers: int
    decode_worker_restarts: int
    decode_crashes: int
    decode_timeouts: int
    decode_timeout_s: float

    @classmethod
    def from_proto(cls, e: pb.EncoderInfo) -> EncoderInfo:
        return cls(*(getattr(e, f.name) for f in fields(cls)))


@dataclass(frozen=True)
class ServerInfo:
    """What the server says about itself."""

    version: str
    model_spec: str
    model_identity: str
    device: str
    precision: str
    embed_dim: int
    index_factory: str
    index_on_gpu: bool
    videos: int
    frames: int
    tasks: int
    max_upload_bytes: int
    skipped_plugins: tuple[PluginProblem, ...] = ()
    # where search and scoring run: faiss-cpu, faiss-gpu, torch-cuda (or torch-cpu)
    search_backend: str = ""
    search_device: str = ""
    search_precision: str = ""
    search_memory_bytes: int = 0
    encoder: EncoderInfo | None = None  # None from servers without the batching encoder

    @classmethod
    def from_proto(cls, i: pb.GetServerInfoResponse) -> ServerInfo:
        return cls(
            i.version,
            i.model_spec,
            i.model_identity,
            i.device,
            i.precision,
            i.embed_dim,
            i.index_factory,
            i.index_on_gpu,
            i.videos,
            i.frames,
            i.tasks,
            i.max_upload_bytes,
            tuple(PluginProblem.from_proto(p) for p in i.skipped_plugins),
            search_backend=i.search.backend,
            search_device=i.search.device,
            search_precision=i.search.precision,
            search_memory_bytes=i.search.memory_bytes,
            encoder=EncoderInfo.from_proto(i.encoder) if i.HasField("encoder") else None,
        )


@dataclass(frozen=True)
class VideoPage:
    """One page of ListVideos."""

    videos: tuple[Video, ...]
    next_page_token: str
    total: int


@dataclass(frozen=True)
class Sampling:
    """Which frames to embed: mode "reference" (EchoCLIP's 0:40:2), "all", "every" (step), "count" (count); 0 = server default."""

    mode: str = "reference"
    step: int = 0
    count: int = 0
    max_frames: int = 0

    def to_proto(self) -> pb.Sampling:
        modes = {
            "reference": pb.SAMPLING_MODE_REFERENCE,
            "all": pb.SAMPLING_MODE_ALL,
            "every": pb.SAMPLING_MODE_EVERY,
            "count": pb.SAMPLING_MODE_COUNT,
        }
        if self.mode not in modes:
            raise ValueError(f"sampling mode must be one of {', '.join(modes)}, not {self.mode!r}")
        return pb.Sampling(mode=modes[self.mode], step=self.step, count=self.count, max_frames=self.max_frames)


@dataclass(frozen=True)
class VideoFilter:
    """A metadata filter: every given field must match (AND); a tuple matches any of its values (OR)."""

    video_ids: tuple[int, ...] = ()
    study_ids: tuple[str, ...] = ()
    patient_ids: tuple[str, ...] = ()
    views: tuple[str, ...] = ()
    acquired_after: datetime | None = None
    acquired_before: datetime | None = None
    ingested_after: datetime | None = None
    ingested_before: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def to_proto(self) -> pb.VideoFilter:
        msg = pb.VideoFilter(
            video_ids=self.video_ids,
            study_ids=self.study_ids,
            patient_ids=self.patient_ids,
            views=self.views,
            tags=self.tags,
        )
        for rng, start, end in (
            (msg.acquisition_time, self.acquired_after, self.acquired_before),
            (msg.ingested_at, self.ingested_after, self.ingested_before),
        ):
            if start is not None:
                rng.start.FromDatetime(_aware(start))
            if end is not None:
                rng.end.FromDatetime(_aware(end))
        return msg


@dataclass(frozen=True)
class CustomTask:
    """A task defined by the caller.

    kind "binary": prompts (+ optional threshold); "regression": prompt templates holding "<#>" and
    value_range=(start, stop, step), inclusive; "categorical": one prompt per value in `values`, with
    optional labels {value: name}.
    """

    kind: str
    prompts: tuple[str, ...]
    name: str = "custom"
    value_range: tuple[float, float, float] | None = None
    values: tuple[float, ...] = ()
    labels: dict[float, str] = field(default_factory=dict)
    threshold: float | None = None

    def to_proto(self) -> pb.CustomTask:
        kinds = {v: k for k, v in KIND_NAMES.items()}
        if self.kind not in kinds:
            raise ValueError(f"task kind must be one of {', '.join(kinds)}, not {self.kind!r}")
        msg = pb.CustomTask(
            name=self.name,
            kind=kinds[self.kind],
            prompts=list(self.prompts),
            values=list(self.values),
            labels=[pb.CategoryLabel(value=v, label=n) for v, n in self.labels.items()],
        )
        if self.value_range is not None:
            start, stop, step = self.value_range
            msg.value_range.CopyFrom(pb.ValueRange(start=start, stop=stop, step=step))
        if self.threshold is not None:
            msg.threshold = self.threshold
        return msg


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)
