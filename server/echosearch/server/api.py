"""The gRPC servicer: echosearch.v1 requests in, Engine use cases, responses out.

Domain errors are mapped to status codes in ONE table (`STATUS_CODES`); anything
else is a bug: logged with its stack and an incident id, answered INTERNAL with
a generic message, and the server stays up. The servicer holds no lock of its
own (the Store owns write concurrency), so reads never queue behind an ingest here.
"""

from __future__ import annotations

import functools
import inspect
import logging
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc

from echosearch.server import cancellation, convert, errors
from echosearch.server.engine import Engine
from echosearch.server.storage.filters import filter_terms
from echosearch.server.upload import SPOOL_DIR, IdleWatchdog, UploadSlots, normalise_sha256, receive_body
from echosearch.v1 import echosearch_pb2 as pb
from echosearch.v1 import echosearch_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

# The one place domain errors become status codes; the first matching class wins.
STATUS_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (errors.InvalidVideoError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.TooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.BusyError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.DiskFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.RequestCancelledError, grpc.StatusCode.CANCELLED),  # normally nobody hears it: _fail stops quietly
    (errors.ModelMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.StoreVersionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ModelLoadError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.DataDirError, grpc.StatusCode.FAILED_PRECONDITION),
)

# Trailing metadata on a RESOURCE_EXHAUSTED that a retry may cure (a concurrency cap, not a size limit).
BUSY_METADATA = "echosearch-busy"
EXPORT_CHUNK_BYTES = 1 << 20
DEFAULT_K = 10
DEFAULT_PAGE_SIZE = 100
DEFAULT_FRAMES_PER_VIDEO = 1
DEFAULT_SCORE_BATCH = 1024


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status code a domain error maps to, or None for an unexpected error."""
    for cls, code in STATUS_CODES:
        if isinstance(exc, cls):
            return code
    return None


_Cancelled = errors.RequestCancelledError  # the caller went away (cancelled or past its deadline): stop quietly


def _fail(exc: Exception, context: grpc.ServicerContext, method: str) -> None:
    if isinstance(exc, _Cancelled) or not context.is_active():
        log.info("%s: caller cancelled or deadline passed; stopped", method)
        return
    code = status_for(exc)
    if isinstance(exc, errors.BusyError):
        context.set_trailing_metadata(((BUSY_METADATA, "1"),))  # tells clients this one is worth a retry
    if code is not None:
        log.info("%s: %s: %s", method, code.name, exc)
        context.abort(code, str(exc))
    incident = uuid.uuid4().hex[:12]
    log.error("%s failed (incident %s)", method, incident, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, f"internal server error (incident {incident}); the server log has details")


def _rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    """Counts the call as in flight and maps its exceptions through STATUS_CODES."""
    name = method.__name__
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self: EchoSearchServicer, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with self._tracker, cancellation.bound_to(context.is_active):
                try:
                    yield from method(self, request, context)
                except Exception as exc:
                    _fail(exc, context, name)

        return streaming

    @functools.wraps(method)
    def unary(self: EchoSearchServicer, request: Any, context: grpc.ServicerContext) -> Any:
        with self._tracker, cancellation.bound_to(context.is_active):
            try:
                return method(self, request, context)
            except Exception as exc:
                _fail(exc, context, name)
                return None

    return unary


class InFlight:
    """Counts calls running in the servicer, so shutdown can wait for engine work to end."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        """Block until no call runs (True) or the timeout passes (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)

    @property
    def count(self) -> int:
        return self._count


def _check_active(context: grpc.ServicerContext) -> None:
    if not context.is_active():
        raise _Cancelled()


class EchoSearchServicer(pb_grpc.EchoSearchServiceServicer):
    """echosearch.v1.EchoSearchService over one Engine."""

    def __init__(self, engine: Engine, *, workers: int = 16) -> None:
        self.engine = engine
        self.limits = engine.limits
        self._tracker = InFlight()
        # Uploads get fewer slots than there are worker threads, so reads always find a free thread.
        self._upload_slots = UploadSlots(self.limits.upload_slots(workers))
        self._idle_watchdog = IdleWatchdog(self.limits.upload_idle_timeout_s)

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait for in-flight calls to finish (used at shutdown, after the server stops taking calls)."""
        return self._tracker.wait_idle(timeout)

    @property
    def in_flight(self) -> int:
        """Calls running now."""
        return self._tracker.count

    def _filter(self, request: Any) -> Any:
        """The request's VideoFilter, within --max-filter-terms."""
        flt = convert.filter_from_proto(request.filter if request.HasField("filter") else None)
        self.limits.check_filter_terms(filter_terms(flt))
        return flt

    # ---- ingest -----------------------------------------------------------------------

    @_rpc
    def IngestVideo(
        self, request_iterator: Iterable[pb.IngestVideoRequest], context: grpc.ServicerContext
    ) -> pb.IngestVideoResponse:
        with self._upload_slots.hold(), self._idle_watchdog.watch(context.cancel) as watch:
            try:
                return self._ingest(iter(request_iterator), context, watch)
            except grpc.RpcError:
                # The request stream broke: the client went away, or the watchdog cancelled an idle upload.
                if watch.timed_out:
                    log.warning(
                        "IngestVideo: nothing received for %.0fs (--upload-idle-timeout); cancelled",
                        self.limits.upload_idle_timeout_s,
                    )
                raise _Cancelled() from None

    def _ingest(
        self, requests: Iterator[pb.IngestVideoRequest], context: grpc.ServicerContext, watch: Any
    ) -> pb.IngestVideoResponse:
        first = next(requests, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise errors.InvalidRequestError(
                "the first IngestVideo message must be a header (file name, metadata, sampling); the bytes follow as chunks"
            )
        watch.touch()
        header = first.header
        name = header.source_name or "upload"
        # Check the header before receiving a possibly large body (Sampling checks itself when made).
        self.engine.check_upload_size(name, header.size_bytes)
        metadata = convert.metadata_from_proto(header.metadata)
        sampling = convert.sampling_from_proto(header.sampling)
        self.engine.check_ingest_args(name, metadata, sampling)
        channel_order = convert.channel_order_from_proto(header.channel_order)
        sha256 = normalise_sha256(header.sha256)
        if sha256:
            # Already stored: answer from the header alone. Re-running a folder of a million
            # archived files then costs a hash per file, not an upload and a decode.
            existing = self.engine.stored_video(sha256)
            if existing is not None:
                watch.finish()
                record, updated = self.engine.update_stored_on_reingest(existing, metadata)
                return pb.IngestVideoResponse(
                    video=convert.video_to_proto(record), already_stored=True, metadata_updated=updated
                )

        body = receive_body(
            _chunks(requests),
            name=name,
            check_size=lambda size: self.engine.check_upload_size(name, size, partial=True),
            min_chunk_bytes=self.limits.min_chunk_bytes,
            spool_dir=self.engine.data_dir / SPOOL_DIR,
            watch=watch,
        )
        try:
            _check_active(context)
            if header.size_bytes and body.size != header.size_bytes:
                raise errors.InvalidRequestError(
                    f"{name}: received {body.size} bytes but the header announced {header.size_bytes}; the upload was truncated, send it again"
                )
            if sha256 and body.sha256 != sha256:
                raise errors.InvalidRequestError(
                    f"{name}: the received bytes do not match the header's sha256; the upload was corrupted, send it again"
                )
            try:
                outcome = self.engine.ingest(
                    body.source,
                    source_name=name,
                    metadata=metadata,
                    sampling=sampling,
                    channel_order=channel_order,
                    sha256=body.sha256,
                )
            except errors.InvalidVideoError as exc:
                if name in str(exc):
                    raise
                # The uploader may be sending hundreds of files: say which one is bad.
                raise errors.InvalidVideoError(f"{name}: {exc}") from exc
        finally:
            body.discard()
        if not context.is_active():
            # Ingest is idempotent by content hash, so the stored video stays: a retry answers already_stored.
            log.info(
                "IngestVideo: %s stored as video %d, but the caller had already gone (cancelled or past its deadline)",
                name,
                outcome.video.video_id,
            )
        return pb.IngestVideoResponse(
            video=convert.video_to_proto(outcome.video),
            already_stored=outcome.already_stored,
            decode_seconds=outcome.decode_seconds,
            encode_seconds=outcome.encode_seconds,
            store_seconds=outcome.store_seconds,
            metadata_updated=outcome.metadata_updated,
        )

    # ---- bulk import (issue 10) ---------------------------------------------------------

    @_rpc
    def ImportEmbeddings(
        self, request_iterator: Iterable[pb.ImportEmbeddingsRequest], context: grpc.ServicerContext
    ) -> pb.ImportEmbeddingsResponse:
        # A shard is an upload: the same slots, idle timeout, size limit and spool as IngestVideo.
        with self._upload_slots.hold(), self._idle_watchdog.watch(context.cancel) as watch:
            try:
                return self._import(iter(request_iterator), context, watch)
            except grpc.RpcError:
                raise _Cancelled() from None

    def _import(
        self, requests: Iterator[pb.ImportEmbeddingsRequest], context: grpc.ServicerContext, watch: Any
    ) -> pb.ImportEmbeddingsResponse:
        first = next(requests, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise errors.InvalidRequestError(
                "the first ImportEmbeddings message must be a header (shard name, size, sha256); the shard's bytes follow as chunks"
            )
        watch.touch()
        header = first.header
        name = header.shard_name or "shard"
        digest = normalise_sha256(header.sha256)
        if len(digest) != 64:
            raise errors.InvalidRequestError(f"{name}: the header needs the shard file's hex sha256 (64 characters)")
        self.engine.check_upload_size(name, header.size_bytes)
        if not header.force:
            done = self.engine.imported_shard(name, digest)
            if done is not None:  # committed before: acknowledge without reading the body
                watch.finish()
                return _import_reply(done)
        spool_dir = self.engine.data_dir / SPOOL_DIR
        body = receive_body(
            _shard_chunks(requests),
            name=name,
            check_size=lambda size: self.engine.check_upload_size(name, size, partial=True),
            min_chunk_bytes=self.limits.min_chunk_bytes,
            spool_dir=spool_dir,
            watch=watch,
        )
        try:
            _check_active(context)
            if header.size_bytes and body.size != header.size_bytes:
                raise errors.InvalidRequestError(
                    f"{name}: received {body.size} bytes but the header announced {header.size_bytes}; send the shard again"
                )
            if body.sha256 != digest:
                raise errors.InvalidRequestError(
                    f"{name}: the received bytes do not match the header's sha256; send the shard again"
                )
            if body.path is None:  # a small shard stayed in memory; DuckDB reads Parquet from a file
                spool_dir.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=spool_dir, prefix="shard-", suffix=".part", delete=False) as f:
                    f.write(body.data or b"")
                body.path = Path(f.name)
            outcome = self.engine.import_shard(body.path, name=name, shard_sha256=digest)
        finally:
            body.discard()
        return _import_reply(outcome)

    # ---- videos -----------------------------------------------------------------------

    @_rpc
    def GetVideo(self, request: pb.GetVideoRequest, context: grpc.ServicerContext) -> pb.GetVideoResponse:
        record, frames = self.engine.get_video(request.video_id, with_embeddings=request.include_embeddings)
        return pb.GetVideoResponse(
            video=convert.video_to_proto(record), frames=convert.frames_to_proto(frames) if frames is not None else []
        )

    @_rpc
    def ListVideos(self, request: pb.ListVideosRequest, context: grpc.ServicerContext) -> pb.ListVideosResponse:
        flt = self._filter(request)
        page, token, total = self.engine.list_videos(
            flt, page_size=request.page_size or DEFAULT_PAGE_SIZE, page_token=request.page_token
        )
        videos = [convert.video_to_proto(r) for r in page]
        kept = _fit_bytes(videos, self.limits.max_page_bytes, lambda v: v.ByteSize())
        if kept < len(videos):  # the page ends early by bytes; the next one starts after the last video sent
            videos, token = videos[:kept], self.engine.page_token_after(videos[kept - 1].video_id)
        return pb.ListVideosResponse(videos=videos, next_page_token=token, total_size=total)

    @_rpc
    def UpdateVideoMetadata(
        self, request: pb.UpdateVideoMetadataRequest, context: grpc.ServicerContext
    ) -> pb.UpdateVideoMetadataResponse:
        record, changed = self.engine.update_video_metadata(
            request.video_id, convert.metadata_from_proto(request.set), list(request.remove)
        )
        return pb.UpdateVideoMetadataResponse(video=convert.video_to_proto(record), changed=changed)

    @_rpc
    def DeleteVideo(self, request: pb.DeleteVideoRequest, context: grpc.ServicerContext) -> pb.DeleteVideoResponse:
        self.engine.delete_video(request.video_id)
        return pb.DeleteVideoResponse()

    # ---- search -----------------------------------------------------------------------

    @_rpc
    def SearchByText(self, request: pb.SearchByTextRequest, context: grpc.ServicerContext) -> pb.SearchByTextResponse:
        results = self.engine.search_by_text(
            request.text,
            k=request.k or DEFAULT_K,
            aggregation=convert.aggregation_from_proto(request.aggregation, "max"),
            flt=self._filter(request),
            frames_per_video=request.frames_per_video or DEFAULT_FRAMES_PER_VIDEO,
            with_thumbnails=request.include_thumbnails,
        )
        return pb.SearchByTextResponse(results=self._fit_results(results, "SearchByText"))

    @_rpc
    def SearchByVideo(
        self, request: pb.SearchByVideoRequest, context: grpc.ServicerContext
    ) -> pb.SearchByVideoResponse:
        results = self.engine.search_by_video(
            request.video_id,
            k=request.k or DEFAULT_K,
            aggregation=convert.aggregation_from_proto(request.aggregation, "mean"),
            flt=self._filter(request),
            frames_per_video=request.frames_per_video or DEFAULT_FRAMES_PER_VIDEO,
            with_thumbnails=request.include_thumbnails,
        )
        return pb.SearchByVideoResponse(results=self._fit_results(results, "SearchByVideo"))

    def _fit_results(self, results: list[Any], method: str) -> list[pb.SearchResult]:
        """The best results that fit in --max-page-bytes (a client accepts 4 MiB by default)."""
        messages = [_result(r) for r in results]
        kept = _fit_bytes(messages, self.limits.max_page_bytes, lambda m: m.ByteSize())
        if kept < len(messages):
            log.info("%s: %d of %d results sent (--max-page-bytes)", method, kept, len(messages))
        return messages[:kept]

    # ---- tasks ------------------------------------------------------------------------

    @_rpc
    def ListTasks(self, request: pb.ListTasksRequest, context: grpc.ServicerContext) -> pb.ListTasksResponse:
        return pb.ListTasksResponse(
            tasks=[convert.task_to_proto(t) for t in self.engine.list_tasks()],
            skipped=convert.plugin_problems_to_proto(self.engine.skipped_plugins()),
        )

    @_rpc
    def ScoreVideos(
        self, request: pb.ScoreVideosRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ScoreVideosResponse]:
        which = request.WhichOneof("task")
        if which == "task_name":
            task = self.engine.get_task(request.task_name)
        elif which == "custom_task":
            task = self.engine.custom_task(**convert.custom_task_args(request.custom_task))  # type: ignore[arg-type]
        else:
            raise errors.InvalidRequestError(
                "say which task to score: task_name (see ListTasks) or an inline custom_task"
            )
        self.limits.check_filter_terms(len(request.video_ids))
        batches = self.engine.score_videos(
            task,
            flt=self._filter(request),
            video_ids=list(request.video_ids) or None,
            top_k=request.top_k or None,
            bottom_k=request.bottom_k or None,
            batch_size=request.batch_size or DEFAULT_SCORE_BATCH,
        )
        task_msg: pb.Task | None = convert.task_to_proto(task)
        for batch in batches:
            _check_active(context)  # a cancelled screen stops here instead of scoring the rest
            yield pb.ScoreVideosResponse(scores=[_score(s) for s in batch], task=task_msg)
            task_msg = None
        if task_msg is not None:  # nothing selected: still say which task was scored
            yield pb.ScoreVideosResponse(task=task_msg)

    # ---- export and info ---------------------------------------------------------------

    @_rpc
    def ExportEmbeddings(
        self, request: pb.ExportEmbeddingsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportEmbeddingsResponse]:
        flt = self._filter(request)
        # The export can be gigabytes: spool it in the data directory (sized for it), not in memory or /tmp.
        with tempfile.TemporaryDirectory(dir=self.engine.data_dir, prefix=".export-") as tmp:
            path = Path(tmp) / "export.parquet"
            rows = self.engine.export_parquet(path, flt)
            total = path.stat().st_size
            first = True
            with path.open("rb") as f:
                while True:
                    _check_active(context)
                    chunk = f.read(EXPORT_CHUNK_BYTES)
                    if not chunk and not first:
                        break
                    yield pb.ExportEmbeddingsResponse(
                        chunk=chunk, rows=rows if first else 0, total_bytes=total if first else 0
                    )
                    first = False
                    if not chunk:
                        break

    @_rpc
    def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetServerInfoResponse:
        info = self.engine.info()
        return pb.GetServerInfoResponse(
            version=info.version,
            model_spec=info.model_spec,
            model_identity=info.model_identity,
            device=info.device,
            precision=info.precision,
            embed_dim=info.embed_dim,
            index_factory=info.index_factory,
            index_on_gpu=info.index_on_gpu,
            videos=info.videos,
            frames=info.frames,
            tasks=info.tasks,
            max_upload_bytes=self.engine.max_upload_bytes,
            skipped_plugins=convert.plugin_problems_to_proto(self.engine.skipped_plugins()),
            search=pb.SearchBackendInfo(
                backend=info.search.backend,
                device=info.search.device,
                precision=info.search.precision,
                memory_bytes=info.search.memory_bytes,
                memory_cap_bytes=info.search.memory_cap_bytes,
            ),
            encoder=convert.encoder_info_to_proto(info.encoder, info.decode, self.engine.decode_pool.time_limit_s),
        )

    # ---- frame thumbnails (issue 11) ------------------------------------------------------

    @_rpc
    def GetFrameImage(
        self, request: pb.GetFrameImageRequest, context: grpc.ServicerContext
    ) -> pb.GetFrameImageResponse:
        jpeg = self.engine.frame_image(request.video_id, request.frame_index)
        return pb.GetFrameImageResponse(jpeg=jpeg, media_type="image/jpeg")

    # ---- stored tasks (issue 11) ----------------------------------------------------------

    @_rpc
    def CreateTask(self, request: pb.CreateTaskRequest, context: grpc.ServicerContext) -> pb.CreateTaskResponse:
        if not request.HasField("task") or not request.task.name:
            raise errors.InvalidRequestError("CreateTask needs a task with a name")
        calibration = (request.calibration.a, request.calibration.b) if request.HasField("calibration") else None
        task = self.engine.create_task(
            description=request.description,
            calibration=calibration,
            replace=request.replace,
            **convert.custom_task_args(request.task),
        )
        return pb.CreateTaskResponse(task=convert.task_to_proto(task))

    @_rpc
    def DeleteTask(self, request: pb.DeleteTaskRequest, context: grpc.ServicerContext) -> pb.DeleteTaskResponse:
        self.engine.delete_task(request.name)
        return pb.DeleteTaskResponse()


def _shard_chunks(requests: Iterator[pb.ImportEmbeddingsRequest]) -> Iterator[bytes]:
    for msg in requests:
        if msg.WhichOneof("payload") != "chunk":
            raise errors.InvalidRequestError("only the first ImportEmbeddings message may be a header")
        yield msg.chunk


def _import_reply(outcome: Any) -> pb.ImportEmbeddingsResponse:
    return pb.ImportEmbeddingsResponse(
        shard_name=outcome.shard_name,
        already_imported=outcome.already_imported,
        videos_added=outcome.videos_added,
        videos_already_stored=outcome.videos_already_stored,
        frames_added=outcome.frames_added,
        seconds=outcome.seconds,
    )


def _fit_bytes(items: list[Any], budget: int, size: Callable[[Any], int]) -> int:
    """How many leading items fit in `budget` bytes (at least one, so a page always makes progress)."""
    used = 0
    for i, item in enumerate(items):
        used += size(item) + 8  # field tag and length prefix
        if used > budget and i > 0:
            return i
    return len(items)


def _chunks(requests: Iterator[pb.IngestVideoRequest]) -> Iterator[bytes]:
    for msg in requests:
        if msg.WhichOneof("payload") != "chunk":
            raise errors.InvalidRequestError(
                "only the first IngestVideo message may be a header; send the file as chunks after it"
            )
        yield msg.chunk


def _result(r: Any) -> pb.SearchResult:
    return pb.SearchResult(
        video=convert.video_to_proto(r.video),
        score=float(r.score),
        best_frames=convert.hits_to_proto(r.best_frames),
        thumbnail=r.thumbnail or b"",
    )


def _score(s: Any) -> pb.VideoScore:
    msg = pb.VideoScore(video_id=s.video_id, score=float(s.score), label=s.label or "")
    if s.value is not None:
        msg.value = float(s.value)
    if s.decision is not None:
        msg.decision = bool(s.decision)
    return msg
