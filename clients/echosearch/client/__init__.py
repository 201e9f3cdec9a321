"""Light Python client and CLI for echosearch (no torch, faiss or duckdb).

from echosearch.client import Client
with Client("127.0.0.1:50051") as es:
    video = es.ingest("clip.avi").video
    hits = es.search_by_text("A PACEMAKER LEAD IS SEEN.", k=5)
"""

from echosearch.client.client import ApiError, Client
from echosearch.client.score_stream import ScoreStream
from echosearch.client.types import (
    CustomTask,
    EncoderInfo,
    Frame,
    FrameHit,
    IngestResult,
    Sampling,
    SearchResult,
    ServerInfo,
    Task,
    Video,
    VideoFilter,
    VideoMetadata,
    VideoPage,
    VideoScore,
)

__all__ = [
    "ApiError",
    "Client",
    "CustomTask",
    "Frame",
    "FrameHit",
    "IngestResult",
    "Sampling",
    "ScoreStream",
    "SearchResult",
    "EncoderInfo",
    "ServerInfo",
    "Task",
    "Video",
    "VideoFilter",
    "VideoMetadata",
    "VideoPage",
    "VideoScore",
]
