"""What a call did: search hits, ingest and bulk-import outcomes, a video's score on a task."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from echosearch.client.types.videos import Video
from echosearch.v1 import echosearch_pb2 as pb


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
class MetadataConflict:
    """A field ("view", "tag.site") on which a re-ingest disagreed with the stored video: kept, or replaced."""

    field: str
    stored: str
    uploaded: str
    replaced: bool

    def describe(self) -> str:
        """'view: PLAX -> A4C' when replaced, else 'view: kept PLAX (the upload says A4C)'."""
        if self.replaced:
            return f"{self.field}: {self.stored} -> {self.uploaded}"
        return f"{self.field}: kept {self.stored} (the upload says {self.uploaded}; --update-metadata replaces it)"


@dataclass(frozen=True)
class IngestResult:
    """What an upload did."""

    video: Video
    already_stored: bool
    decode_seconds: float
    encode_seconds: float
    store_seconds: float
    metadata_updated: bool = False  # already stored, and the upload's differing metadata was written
    metadata_conflicts: tuple[MetadataConflict, ...] = ()  # already stored: where upload and store disagreed

    @classmethod
    def from_proto(cls, r: pb.IngestVideoResponse) -> IngestResult:
        return cls(
            Video.from_proto(r.video),
            r.already_stored,
            r.decode_seconds,
            r.encode_seconds,
            r.store_seconds,
            r.metadata_updated,
            tuple(MetadataConflict(c.field, c.stored, c.uploaded, c.replaced) for c in r.metadata_conflicts),
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


class SearchResults(list):
    """A search's results, best first (a list of SearchResult), with `plan`: how the server answered."""

    plan: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, r: pb.SearchByTextResponse | pb.SearchByVideoResponse) -> SearchResults:
        out = cls(SearchResult.from_proto(x) for x in r.results)
        out.plan = tuple(r.plan)
        return out


@dataclass(frozen=True)
class DeleteResult:
    """What DeleteVideos did, or for a dry run would do (`confirm_token`: pass it back to delete those videos)."""

    matched: int
    deleted: int
    not_found: tuple[int, ...] = ()
    confirm_token: str = ""

    @classmethod
    def from_proto(cls, r: pb.DeleteVideosResponse) -> DeleteResult:
        return cls(r.matched, r.deleted, tuple(r.not_found), r.confirm_token)


@dataclass(frozen=True)
class BackupProgress:
    """How far a backup is, and with `done` what it holds (`writes_paused_seconds`: how long ingests waited)."""

    phase: str
    bytes_done: int
    bytes_total: int
    done: bool = False
    videos: int = 0
    frames: int = 0
    files: int = 0
    catalog_sequence: int = 0
    seconds: float = 0.0
    writes_paused_seconds: float = 0.0
    out_dir: str = ""

    @classmethod
    def from_proto(cls, r: pb.BackupResponse) -> BackupProgress:
        return cls(**{f.name: getattr(r, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class VideoScore:
    """One video's result for a task: score, value/label (regression, categorical), decision (thresholded binary)."""

    video_id: int
    score: float
    value: float | None
    label: str | None
    decision: bool | None
    # binary tasks: the share (0-100) of the selection's stored videos scoring at most this, among how many
    percentile: float | None = None
    percentile_of: int = 0

    @classmethod
    def from_proto(cls, s: pb.VideoScore) -> VideoScore:
        return cls(
            s.video_id,
            s.score,
            s.value if s.HasField("value") else None,
            s.label or None,
            s.decision if s.HasField("decision") else None,
            s.percentile if s.HasField("percentile") else None,
            s.percentile_of,
        )
