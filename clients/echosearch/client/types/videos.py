"""What a video is and how one is chosen: its record, metadata, frames, pages of them, filters, frame sampling."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from echosearch.v1 import echosearch_pb2 as pb


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
            dict(sorted(m.tags.items())),  # one order wherever tags are shown (a proto map has none)
        )

    def to_proto(self) -> pb.VideoMetadata:
        msg = pb.VideoMetadata(
            study_id=self.study_id or "", patient_id=self.patient_id or "", view=self.view or "", tags=self.tags
        )
        if self.acquisition_time is not None:
            t = self.acquisition_time if self.acquisition_time.tzinfo else self.acquisition_time.replace(tzinfo=UTC)
            msg.acquisition_time.FromDatetime(t)
        return msg


# The server's codes for withheld thumbnails (server/echosearch/server/media/dicom/phi.py), said for people.
WITHHELD_REASONS = {
    "burned-in-annotation": "the DICOM says text is burned into its pixels (Burned In Annotation = YES)",
    "not-masked": "no ultrasound region blacked out the rest of the image, so a burned-in name could be legible",
}


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
    # why the frames have no thumbnails although the server keeps them ("burned-in-annotation",
    # "not-masked": a DICOM whose pixels may carry a name under --phi hash|drop); "" when kept
    thumbnails_withheld: str = ""

    @property
    def thumbnails_note(self) -> str:
        """Why the video has no thumbnails, for people; "" when they were kept."""
        if not self.thumbnails_withheld:
            return ""
        why = WITHHELD_REASONS.get(self.thumbnails_withheld, self.thumbnails_withheld)
        return f"withheld: {why}; the embeddings are stored and searchable"

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
            v.thumbnails_withheld,
        )


@dataclass(frozen=True)
class Frame:
    """A stored frame with its embedding (a tuple of floats; `numpy.asarray` it if you like)."""

    frame_id: int
    frame_index: int
    timestamp: float
    embedding: tuple[float, ...]


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


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def filter_proto(flt: VideoFilter | None) -> pb.VideoFilter | None:
    """A filter for a request: None (every video) stays None."""
    return flt.to_proto() if flt is not None else None
