"""A small synchronous client for echosearch.v1: typed methods, retries on UNAVAILABLE, streaming uploads.

Every method returns the plain records of `echosearch.client.types` (not protobuf
messages) and raises `ApiError` (status code + the server's message) on failure.
A Client is thread-safe: share one across threads (one HTTP/2 channel).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from echosearch.client.downloads import download_file
from echosearch.client.failures import ApiError, call
from echosearch.client.task_calls import TaskCalls
from echosearch.client.types import (
    BackupProgress,
    DeleteResult,
    Frame,
    ImportResult,
    IngestResult,
    Sampling,
    SearchResults,
    ServerInfo,
    Video,
    VideoFilter,
    VideoMetadata,
    VideoPage,
)
from echosearch.client.types.videos import filter_proto
from echosearch.client.uploads import UploadSource, file_chunks, file_sha256
from echosearch.v1 import echosearch_pb2 as pb
from echosearch.v1 import echosearch_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
CHUNK_BYTES = 1 << 20  # 1 MiB: well under gRPC's 4 MiB message default, large enough to keep the pipe full
AGGREGATIONS = {"max": pb.AGGREGATION_MAX, "mean": pb.AGGREGATION_MEAN}
CHANNEL_ORDERS = {"rgb": pb.CHANNEL_ORDER_RGB, "bgr": pb.CHANNEL_ORDER_BGR}
T = TypeVar("T")
log = logging.getLogger(__name__)


class Client(TaskCalls):
    """Connection to one echosearch server.

    address: "host:port". token: bearer token (sent as `authorization` metadata).
    tls: False for plaintext, True for TLS with the system's roots, or a path to a PEM root certificate.
    timeout: deadline in seconds of quick calls; streaming calls (ingest, score, export) use `long_timeout`.
    retries: how often an idempotent call is retried when the server is UNAVAILABLE, with jittered
        exponential backoff.
    slot_wait: how long (seconds; None: without end) an upload (ingest, import_shard) waits for a free slot
        when the server is busy (all --max-concurrent-uploads slots taken: RESOURCE_EXHAUSTED marked
        `echosearch-busy`), asking again with jittered backoff of up to 2 s. Only the busy kind is waited
        for: an upload refused for its size fails at once.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        token: str | None = None,
        tls: bool | str | Path = False,
        timeout: float | None = 30.0,
        long_timeout: float | None = 3600.0,
        retries: int = 4,
        slot_wait: float | None = 3600.0,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.long_timeout = long_timeout
        self.retries = retries
        self.slot_wait = slot_wait
        self._said_waiting = threading.Event()  # the log says once that uploads wait for a slot
        self.chunk_bytes = chunk_bytes
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 16 << 20)]
        if tls:
            roots = Path(tls).read_bytes() if not isinstance(tls, bool) else None
            self._channel = grpc.secure_channel(
                address, grpc.ssl_channel_credentials(root_certificates=roots), options=options
            )
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.EchoSearchServiceStub(self._channel)

    # ---- plumbing ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retrying(
        self, attempt: Callable[[], T], *, idempotent: bool = True, on_wait: Callable[[str], None] | None = None
    ) -> T:
        """Run `attempt`; when idempotent, retry on UNAVAILABLE and wait out a busy server (failures.call)."""
        return call(attempt, idempotent=idempotent, retries=self.retries, slot_wait=self.slot_wait,
                    on_wait=on_wait or self._log_waiting_once)  # fmt: skip

    def _log_waiting_once(self, why: str) -> None:
        if not self._said_waiting.is_set():
            self._said_waiting.set()
            log.info("%s", why)

    def _unary(self, method: Callable[..., T], request: Any, *, idempotent: bool = True) -> T:
        return self._retrying(
            lambda: method(request, timeout=self.timeout, metadata=self._metadata), idempotent=idempotent
        )

    # ---- ingest -----------------------------------------------------------------------

    def ingest(
        self,
        source: str | Path | bytes,
        *,
        source_name: str | None = None,
        metadata: VideoMetadata | None = None,
        sampling: Sampling | None = None,
        channel_order: str = "rgb",
        on_progress: Callable[[int], None] | None = None,
        on_wait: Callable[[str], None] | None = None,
        update_metadata: bool = False,
    ) -> IngestResult:
        """Upload a video file (path or bytes) in chunks; returns the stored video (`already_stored` when it was).

        Metadata given for content that is already stored fills in what it lacks (`metadata_updated`); where
        the stored value differs, it is kept and reported in `metadata_conflicts`, unless `update_metadata`.
        `on_progress(sent)` is called with the bytes sent so far after each chunk (from 0 again on a retry).
        When every upload slot of the server is taken, the upload waits for one (see `slot_wait`), calling
        `on_wait(why)` before each wait.
        """
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel order must be 'rgb' or 'bgr', not {channel_order!r}")
        upload = UploadSource.of(source, source_name, self.chunk_bytes)
        header = pb.IngestVideoHeader(
            source_name=upload.name,
            metadata=(metadata or VideoMetadata()).to_proto(),
            sampling=sampling.to_proto() if sampling is not None else None,
            channel_order=CHANNEL_ORDERS[channel_order],
            size_bytes=upload.size,
            sha256=upload.sha256,
            update_metadata=update_metadata,
        )

        def requests() -> Iterator[pb.IngestVideoRequest]:
            yield pb.IngestVideoRequest(header=header)
            sent = 0
            if on_progress is not None:
                on_progress(0)
            for chunk in upload.chunks():
                yield pb.IngestVideoRequest(chunk=chunk)
                sent += len(chunk)
                if on_progress is not None:
                    on_progress(sent)

        # Ingest is idempotent by content hash, so a retry after UNAVAILABLE cannot duplicate a video.
        reply = self._retrying(
            lambda: self._stub.IngestVideo(requests(), timeout=self.long_timeout, metadata=self._metadata),
            on_wait=on_wait,
        )
        return IngestResult.from_proto(reply)

    # ---- bulk import -------------------------------------------------------------------

    def import_shard(self, path: str | Path, *, force: bool = False) -> ImportResult:
        """Stream one shard file to the server (a `bulk embed` Parquet shard, or an Arrow IPC stream of the same
        columns); returns what it committed (one transaction).

        Idempotent (by shard and video sha256), so it is retried on UNAVAILABLE; a shard committed
        before is acknowledged from its hash without sending it again unless `force`.
        """
        shard = Path(path)
        header = pb.ImportEmbeddingsHeader(
            shard_name=shard.name, size_bytes=shard.stat().st_size, sha256=file_sha256(shard), force=force
        )
        return self._import(header, lambda: file_chunks(shard, self.chunk_bytes))

    def import_table(self, table: Any, *, name: str, force: bool = False) -> ImportResult:
        """Send shard rows held in memory, a pyarrow Table or RecordBatch in the shard schema (docs/bulk.md), as
        an Arrow IPC stream: nothing is written to disk or encoded as Parquet. Same reply and idempotence as
        `import_shard`; `name` is how the server names this shard in its messages. Needs pyarrow."""
        try:
            import pyarrow as pa  # not a dependency of the light client
        except ImportError:  # pragma: no cover - the test environment has it
            raise ImportError("Client.import_table needs pyarrow: pip install pyarrow") from None
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write(table)
        data = memoryview(sink.getvalue())
        header = pb.ImportEmbeddingsHeader(
            shard_name=name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), force=force
        )
        step = self.chunk_bytes
        return self._import(header, lambda: (bytes(data[i : i + step]) for i in range(0, len(data), step)))

    def _import(self, header: pb.ImportEmbeddingsHeader, chunks: Callable[[], Iterator[bytes]]) -> ImportResult:
        def requests() -> Iterator[pb.ImportEmbeddingsRequest]:
            yield pb.ImportEmbeddingsRequest(header=header)
            for chunk in chunks():  # a fresh iterator per attempt: a retry sends everything again
                yield pb.ImportEmbeddingsRequest(chunk=chunk)

        reply = self._retrying(
            lambda: self._stub.ImportEmbeddings(requests(), timeout=self.long_timeout, metadata=self._metadata)
        )
        return ImportResult.from_proto(reply)

    # ---- videos -----------------------------------------------------------------------

    def get_video(self, video_id: int) -> Video:
        """A stored video's record (NOT_FOUND when unknown)."""
        return Video.from_proto(self._unary(self._stub.GetVideo, pb.GetVideoRequest(video_id=video_id)).video)

    def get_frames(self, video_id: int) -> list[Frame]:
        """A stored video's frames with their embeddings, in frame order."""
        reply = self._unary(self._stub.GetVideo, pb.GetVideoRequest(video_id=video_id, include_embeddings=True))
        return [Frame(f.frame_id, f.frame_index, f.timestamp_seconds, tuple(f.embedding)) for f in reply.frames]

    def list_videos(
        self, filter: VideoFilter | None = None, *, page_size: int = 100, page_token: str = ""
    ) -> VideoPage:
        """One page of videos matching `filter`, ascending id."""
        request = pb.ListVideosRequest(filter=filter_proto(filter), page_size=page_size, page_token=page_token)
        reply = self._unary(self._stub.ListVideos, request)
        return VideoPage(tuple(Video.from_proto(v) for v in reply.videos), reply.next_page_token, reply.total_size)

    def iter_videos(self, filter: VideoFilter | None = None, *, page_size: int = 1000) -> Iterator[Video]:
        """Every video matching `filter`, fetching page after page."""
        token = ""
        while True:
            page = self.list_videos(filter, page_size=page_size, page_token=token)
            yield from page.videos
            token = page.next_page_token
            if not token:
                return

    def update_video_metadata(
        self, video_id: int, metadata: VideoMetadata | None = None, remove: Sequence[str] = ()
    ) -> tuple[Video, bool]:
        """Set fields/tags and remove fields or tag keys of a stored video; returns (the video now, whether it changed)."""
        request = pb.UpdateVideoMetadataRequest(
            video_id=video_id, set=(metadata or VideoMetadata()).to_proto(), remove=list(remove)
        )
        reply = self._unary(self._stub.UpdateVideoMetadata, request)  # idempotent: the same request, the same result
        return Video.from_proto(reply.video), reply.changed

    def delete_video(self, video_id: int) -> None:
        """Remove a video (NOT_FOUND when unknown). Not retried: a lost reply would turn into NOT_FOUND."""
        self._unary(self._stub.DeleteVideo, pb.DeleteVideoRequest(video_id=video_id), idempotent=False)

    def delete_videos(
        self,
        video_ids: Sequence[int] = (),
        *,
        filter: VideoFilter | None = None,
        dry_run: bool = False,
        confirm_token: str = "",
    ) -> DeleteResult:
        """Delete many videos in one transaction: by ids (absent ones come back in `not_found`), or by filter.

        A filter delete takes two calls: `dry_run=True` counts the videos and returns a `confirm_token`;
        passing it back deletes exactly those videos (FAILED_PRECONDITION if the matching set changed).
        """
        request = pb.DeleteVideosRequest(
            video_ids=list(video_ids), filter=filter_proto(filter), dry_run=dry_run, confirm_token=confirm_token
        )
        return DeleteResult.from_proto(self._unary(self._stub.DeleteVideos, request, idempotent=dry_run))

    # ---- search -----------------------------------------------------------------------

    def search_by_text(
        self,
        text: str,
        *,
        k: int = 10,
        aggregation: str = "max",
        filter: VideoFilter | None = None,
        frames_per_video: int = 1,
        thumbnails: bool = False,
    ) -> SearchResults:
        """Top-k videos for a text; aggregation "max" (best frame) or "mean" (EchoCLIP binary score).

        `thumbnails`: each result carries its best frame's JPEG (`SearchResult.thumbnail`). The list's
        `.plan` says how the server's search backends answered (what `search --explain` prints).
        """
        request = pb.SearchByTextRequest(
            text=text,
            k=k,
            aggregation=_aggregation(aggregation),
            filter=filter_proto(filter),
            frames_per_video=frames_per_video,
            include_thumbnails=thumbnails,
        )
        return SearchResults.from_proto(self._unary(self._stub.SearchByText, request))

    def search_by_video(
        self,
        video_id: int,
        *,
        k: int = 10,
        aggregation: str = "mean",
        filter: VideoFilter | None = None,
        frames_per_video: int = 1,
        thumbnails: bool = False,
    ) -> SearchResults:
        """Videos most similar to a stored one (itself excluded); `thumbnails` and `.plan` as in search_by_text."""
        request = pb.SearchByVideoRequest(
            video_id=video_id,
            k=k,
            aggregation=_aggregation(aggregation),
            filter=filter_proto(filter),
            frames_per_video=frames_per_video,
            include_thumbnails=thumbnails,
        )
        return SearchResults.from_proto(self._unary(self._stub.SearchByVideo, request))

    # ---- export and info ---------------------------------------------------------------

    def export(
        self,
        path: str | Path,
        filter: VideoFilter | None = None,
        *,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Download frame embeddings + metadata as a Parquet file at `path` (written atomically); returns rows.

        `on_progress(received_bytes, total_bytes)` is called after each chunk. A missing folder is a
        FileNotFoundError that says so, raised before anything is asked of the server.
        """
        request = pb.ExportEmbeddingsRequest(filter=filter_proto(filter))
        return download_file(
            path,
            lambda: self._stub.ExportEmbeddings(request, timeout=self.long_timeout, metadata=self._metadata),
            retrying=self._retrying,
            on_progress=on_progress,
        )

    def backup(self, out_dir: str, *, max_bytes_per_second: int = 0) -> Iterator[BackupProgress]:
        """Have the server write a consistent backup into `out_dir`, an absolute path on ITS machine (absent or
        empty); yields progress about twice a second, the last one with `done` set. Stopping the iteration cancels
        the backup (the server removes what it wrote). Restore it offline with `echosearch restore`."""
        request = pb.BackupRequest(out_dir=str(out_dir), max_bytes_per_second=max_bytes_per_second)
        stream = self._stub.Backup(request, timeout=self.long_timeout, metadata=self._metadata)
        try:
            for reply in stream:
                yield BackupProgress.from_proto(reply)
        except grpc.RpcError as err:
            raise ApiError.from_rpc_error(err) from None
        finally:
            stream.cancel()  # a no-op after the summary; tells the server when the caller stops early

    def frame_image(self, video_id: int, frame_index: int) -> bytes:
        """One stored frame's JPEG thumbnail (NOT_FOUND when absent or when the server keeps none)."""
        request = pb.GetFrameImageRequest(video_id=video_id, frame_index=frame_index)
        return self._unary(self._stub.GetFrameImage, request).jpeg

    def info(self) -> ServerInfo:
        """Version, model identity, device, index type and counts."""
        return ServerInfo.from_proto(self._unary(self._stub.GetServerInfo, pb.GetServerInfoRequest()))


def _aggregation(name: str) -> int:
    try:
        return AGGREGATIONS[name]
    except KeyError:
        raise ValueError(f"aggregation must be 'max' or 'mean', not {name!r}") from None
