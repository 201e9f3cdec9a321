"""The gRPC servicer: one short method per echosearch.v1 RPC, each calling one use case of services/.

A method converts the request (convert.py), calls the use case, converts the answer; errors become
status codes in ONE table (status.py); uploads run the one chunked-upload protocol (uploads.py).
The servicer holds no lock of its own (the Store owns write concurrency), so reads never queue behind
an ingest here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

import grpc

from echosearch.server import cancellation
from echosearch.server.errors import InvalidRequestError
from echosearch.server.records import SearchResult, VideoFilter
from echosearch.server.rpc import convert
from echosearch.server.rpc.calls import InFlight, rpc
from echosearch.server.rpc.upload_rpcs import IngestUpload, ShardUpload
from echosearch.server.rpc.uploads import Uploads
from echosearch.server.services import backup, deletes, info, search, tasks, videos
from echosearch.server.services.container import Services
from echosearch.v1 import echosearch_pb2 as pb
from echosearch.v1 import echosearch_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

DEFAULT_K = 10
DEFAULT_PAGE_SIZE = 100
DEFAULT_FRAMES_PER_VIDEO = 1
DEFAULT_SCORE_BATCH = 1024

Message = TypeVar("Message")


class _Filtered(Protocol):
    filter: pb.VideoFilter

    def HasField(self, field_name: str) -> bool: ...


class EchoSearchServicer(pb_grpc.EchoSearchServiceServicer):
    """echosearch.v1.EchoSearchService over one Services object."""

    def __init__(self, services: Services, *, workers: int = 16) -> None:
        self.services = services
        self.in_flight_calls = InFlight()
        self.uploads = Uploads(services.limits, workers, services.spool)
        # Told each call's method, status and seconds as it ends (serve.py sets it with --metrics-port).
        self.rpc_observer: Callable[[str, str, float], None] | None = None

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait for in-flight calls to finish (used at shutdown, after the server stops taking calls)."""
        return self.in_flight_calls.wait_idle(timeout)

    @property
    def in_flight(self) -> int:
        """Calls running now."""
        return self.in_flight_calls.count

    # ---- uploads ------------------------------------------------------------------------

    @rpc
    def IngestVideo(
        self, request_iterator: Iterable[pb.IngestVideoRequest], context: grpc.ServicerContext
    ) -> pb.IngestVideoResponse:
        return self.uploads.receive(request_iterator, context, IngestUpload(self.services, context))

    @rpc
    def ImportEmbeddings(
        self, request_iterator: Iterable[pb.ImportEmbeddingsRequest], context: grpc.ServicerContext
    ) -> pb.ImportEmbeddingsResponse:
        return self.uploads.receive(request_iterator, context, ShardUpload(self.services))

    # ---- videos -------------------------------------------------------------------------

    @rpc
    def GetVideo(self, request: pb.GetVideoRequest, context: grpc.ServicerContext) -> pb.GetVideoResponse:
        record, frames = videos.get_video(self.services, request.video_id, with_embeddings=request.include_embeddings)
        return pb.GetVideoResponse(
            video=convert.video_to_proto(record), frames=convert.frames_to_proto(frames) if frames is not None else []
        )

    @rpc
    def ListVideos(self, request: pb.ListVideosRequest, context: grpc.ServicerContext) -> pb.ListVideosResponse:
        page, token, total = videos.list_videos(
            self.services,
            _filter(request),
            page_size=request.page_size or DEFAULT_PAGE_SIZE,
            page_token=request.page_token,
        )
        messages = [convert.video_to_proto(r) for r in page]
        kept = _fit_bytes(messages, self.services.limits.max_page_bytes, lambda v: v.ByteSize())
        if kept < len(messages):  # the page ends early by bytes; the next one starts after the last video sent
            messages, token = messages[:kept], videos.page_token_after(messages[kept - 1].video_id)
        return pb.ListVideosResponse(videos=messages, next_page_token=token, total_size=total)

    @rpc
    def UpdateVideoMetadata(
        self, request: pb.UpdateVideoMetadataRequest, context: grpc.ServicerContext
    ) -> pb.UpdateVideoMetadataResponse:
        record, changed = videos.update_video_metadata(
            self.services, request.video_id, convert.metadata_from_proto(request.set), list(request.remove)
        )
        return pb.UpdateVideoMetadataResponse(video=convert.video_to_proto(record), changed=changed)

    @rpc
    def DeleteVideo(self, request: pb.DeleteVideoRequest, context: grpc.ServicerContext) -> pb.DeleteVideoResponse:
        videos.delete_video(self.services, request.video_id)
        return pb.DeleteVideoResponse()

    @rpc
    def DeleteVideos(self, request: pb.DeleteVideosRequest, context: grpc.ServicerContext) -> pb.DeleteVideosResponse:
        outcome = deletes.delete_videos(
            self.services,
            video_ids=list(request.video_ids),
            flt=_filter(request) if request.HasField("filter") else None,
            dry_run=request.dry_run,
            token=request.confirm_token,
        )
        return convert.delete_outcome_to_proto(outcome)

    @rpc
    def Backup(self, request: pb.BackupRequest, context: grpc.ServicerContext) -> Iterator[pb.BackupResponse]:
        for progress in backup.backup(self.services, request.out_dir, request.max_bytes_per_second):
            yield convert.backup_progress_to_proto(progress)

    @rpc
    def GetFrameImage(
        self, request: pb.GetFrameImageRequest, context: grpc.ServicerContext
    ) -> pb.GetFrameImageResponse:
        jpeg = videos.frame_image(self.services, request.video_id, request.frame_index)
        return pb.GetFrameImageResponse(jpeg=jpeg, media_type="image/jpeg")

    @rpc
    def ExportEmbeddings(
        self, request: pb.ExportEmbeddingsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportEmbeddingsResponse]:
        for piece in videos.export_chunks(self.services, _filter(request)):
            yield pb.ExportEmbeddingsResponse(chunk=piece.data, rows=piece.rows, total_bytes=piece.total_bytes)

    # ---- search -------------------------------------------------------------------------

    @rpc
    def SearchByText(self, request: pb.SearchByTextRequest, context: grpc.ServicerContext) -> pb.SearchByTextResponse:
        results = search.search_by_text(
            self.services,
            request.text,
            k=request.k or DEFAULT_K,
            aggregation=convert.aggregation_from_proto(request.aggregation, "max"),
            flt=_filter(request),
            frames_per_video=request.frames_per_video or DEFAULT_FRAMES_PER_VIDEO,
            with_thumbnails=request.include_thumbnails,
            plan=(plan := []),
        )
        return pb.SearchByTextResponse(results=self._fit_results(results, "SearchByText"), plan=plan)

    @rpc
    def SearchByVideo(
        self, request: pb.SearchByVideoRequest, context: grpc.ServicerContext
    ) -> pb.SearchByVideoResponse:
        results = search.search_by_video(
            self.services,
            request.video_id,
            k=request.k or DEFAULT_K,
            aggregation=convert.aggregation_from_proto(request.aggregation, "mean"),
            flt=_filter(request),
            frames_per_video=request.frames_per_video or DEFAULT_FRAMES_PER_VIDEO,
            with_thumbnails=request.include_thumbnails,
            plan=(plan := []),
        )
        return pb.SearchByVideoResponse(results=self._fit_results(results, "SearchByVideo"), plan=plan)

    def _fit_results(self, results: list[SearchResult], method: str) -> list[pb.SearchResult]:
        """The best results that fit in --max-page-bytes (a client accepts 4 MiB by default)."""
        messages = [convert.search_result_to_proto(r) for r in results]
        kept = _fit_bytes(messages, self.services.limits.max_page_bytes, lambda m: m.ByteSize())
        if kept < len(messages):
            log.info("%s: %d of %d results sent (--max-page-bytes)", method, kept, len(messages))
        return messages[:kept]

    # ---- tasks --------------------------------------------------------------------------

    @rpc
    def ListTasks(self, request: pb.ListTasksRequest, context: grpc.ServicerContext) -> pb.ListTasksResponse:
        page, more = tasks.list_tasks_page(self.services, after=request.page_token, page_size=request.page_size)
        reply = pb.ListTasksResponse()
        if not request.page_token:  # the skipped plugins once, on the first page
            reply.skipped.extend(convert.plugin_problems_to_proto(tasks.skipped_plugins(self.services)))
        messages = [convert.task_to_proto(t) for t in page]
        kept = _fit_bytes(messages, self.services.limits.max_page_bytes - reply.ByteSize(), lambda m: m.ByteSize())
        reply.tasks.extend(messages[:kept])
        if more or kept < len(messages):
            reply.next_page_token = messages[kept - 1].name
        return reply

    @rpc
    def ScoreVideos(
        self, request: pb.ScoreVideosRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ScoreVideosResponse]:
        which = request.WhichOneof("task")
        if which == "task_name":
            task = tasks.get_task(self.services, request.task_name)
        elif which == "custom_task":
            task = tasks.custom_task(self.services, convert.task_request_from_proto(request.custom_task))
        else:
            raise InvalidRequestError("say which task to score: task_name (see ListTasks) or an inline custom_task")
        batches = tasks.score_videos(
            self.services,
            task,
            flt=_filter(request),
            video_ids=list(request.video_ids) or None,
            top_k=request.top_k or None,
            bottom_k=request.bottom_k or None,
            batch_size=request.batch_size or DEFAULT_SCORE_BATCH,
        )
        task_msg: pb.Task | None = convert.task_to_proto(task)
        for batch in batches:
            cancellation.check()  # a cancelled screen stops here instead of scoring the rest
            yield pb.ScoreVideosResponse(scores=[convert.score_to_proto(s) for s in batch], task=task_msg)
            task_msg = None
        if task_msg is not None:  # nothing selected: still say which task was scored
            yield pb.ScoreVideosResponse(task=task_msg)

    @rpc
    def CreateTask(self, request: pb.CreateTaskRequest, context: grpc.ServicerContext) -> pb.CreateTaskResponse:
        if not request.HasField("task") or not request.task.name:
            raise InvalidRequestError("CreateTask needs a task with a name")
        task = tasks.create_task(
            self.services,
            convert.task_request_from_proto(request.task),
            description=request.description,
            calibration=(request.calibration.a, request.calibration.b) if request.HasField("calibration") else None,
            replace=request.replace,
        )
        return pb.CreateTaskResponse(task=convert.task_to_proto(task))

    @rpc
    def DeleteTask(self, request: pb.DeleteTaskRequest, context: grpc.ServicerContext) -> pb.DeleteTaskResponse:
        tasks.delete_task(self.services, request.name)
        return pb.DeleteTaskResponse()

    # ---- the service itself -------------------------------------------------------------

    @rpc
    def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetServerInfoResponse:
        return convert.server_info_to_proto(info.server_info(self.services))


def _filter(request: _Filtered) -> VideoFilter | None:
    """The request's VideoFilter (its size is checked by the use case, against --max-filter-terms)."""
    return convert.filter_from_proto(request.filter if request.HasField("filter") else None)


def _fit_bytes(items: list[Message], budget: int, size: Callable[[Message], int]) -> int:
    """How many leading items fit in `budget` bytes (at least one, so a page always makes progress)."""
    used = 0
    for i, item in enumerate(items):
        used += size(item) + 8  # field tag and length prefix
        if used > budget and i > 0:
            return i
    return len(items)
