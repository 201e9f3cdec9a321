"""Plain, immutable Python records the client returns (built from echosearch.v1 messages; no numpy needed).

One module per kind of record: `videos` (a video, its metadata, frames, filters, sampling),
`results` (what a search, an ingest, an import or a score returned), `tasks`, `info`.
Import them from here: `from echosearch.client.types import Video, SearchResult, Task`.
"""

from echosearch.client.types.info import EncoderInfo, ServerInfo
from echosearch.client.types.results import (
    BackupProgress,
    DeleteResult,
    FrameHit,
    ImportResult,
    IngestResult,
    MetadataConflict,
    SearchResult,
    SearchResults,
    VideoScore,
)
from echosearch.client.types.tasks import KIND_NAMES, CustomTask, PluginProblem, Task
from echosearch.client.types.videos import Frame, Sampling, Video, VideoFilter, VideoMetadata, VideoPage

__all__ = [
    "BackupProgress",
    "KIND_NAMES",
    "CustomTask",
    "EncoderInfo",
    "Frame",
    "FrameHit",
    "DeleteResult",
    "ImportResult",
    "IngestResult",
    "MetadataConflict",
    "PluginProblem",
    "Sampling",
    "SearchResult",
    "SearchResults",
    "ServerInfo",
    "Task",
    "Video",
    "VideoFilter",
    "VideoMetadata",
    "VideoPage",
    "VideoScore",
]
