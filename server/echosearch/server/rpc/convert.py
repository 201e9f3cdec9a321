"""Every mapping between echosearch.v1 protobuf messages and the server's records (no I/O, no service calls).

This is the wire layer's one check: enums and shapes the proto can express but the
domain cannot (an unknown enum value, an inverted time range, an empty tag key).
Domain rules (k, aggregation, page size, prompts, channel order, limits...) are the services';
a Sampling checks its own options when it is made. Typed records on one side, messages on the
other: nothing here imports the storage, media or model stack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from echosearch.server.errors import InvalidRequestError
from echosearch.server.records import (
    DeleteOutcome,
    FrameEmbeddings,
    FrameHit,
    ImportOutcome,
    IngestOutcome,
    PluginProblem,
    Sampling,
    SearchResult,
    TaskRequest,
    VideoFilter,
    VideoMetadata,
    VideoRecord,
    VideoScore,
)
from echosearch.server.status_records import BackupProgress, DecodePoolStats, EncoderStats, ServerInfo
from echosearch.tasks.spec import Task, ValueRange
from echosearch.v1 import echosearch_pb2 as pb

SAMPLING_MODES = {
    pb.SAMPLING_MODE_REFERENCE: "reference",
    pb.SAMPLING_MODE_ALL: "all",
    pb.SAMPLING_MODE_EVERY: "every",
    pb.SAMPLING_MODE_COUNT: "count",
}
CHANNEL_ORDERS = {pb.CHANNEL_ORDER_UNSPECIFIED: "rgb", pb.CHANNEL_ORDER_RGB: "rgb", pb.CHANNEL_ORDER_BGR: "bgr"}
AGGREGATIONS = {pb.AGGREGATION_MAX: "max", pb.AGGREGATION_MEAN: "mean"}
TASK_KINDS = {
    pb.TASK_KIND_BINARY: "binary",
    pb.TASK_KIND_REGRESSION: "regression",
    pb.TASK_KIND_CATEGORICAL: "categorical",
}
TASK_KINDS_BACK = {v: k for k, v in TASK_KINDS.items()}


# ---- time ---------------------------------------------------------------------------


def to_datetime(ts: Timestamp, what: str) -> datetime:
    """A proto Timestamp as an aware UTC datetime (INVALID_ARGUMENT when out of range)."""
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidRequestError(f"{what} is not a valid timestamp: {exc}") from None


def to_timestamp(value: datetime | None) -> Timestamp | None:
    """An aware (or naive = UTC) datetime as a proto Timestamp; None stays None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


# ---- requests -> records ------------------------------------------------------------------


def metadata_from_proto(msg: pb.VideoMetadata) -> VideoMetadata:
    """User metadata from an upload header; empty strings mean "not given"."""
    if any(not key for key in msg.tags):
        raise InvalidRequestError("metadata tag keys must be non-empty")
    return VideoMetadata(
        study_id=msg.study_id or None,
        patient_id=msg.patient_id or None,
        view=msg.view or None,
        acquisition_time=to_datetime(msg.acquisition_time, "acquisition_time")
        if msg.HasField("acquisition_time")
        else None,
        tags=dict(msg.tags),
    )


def sampling_from_proto(msg: pb.Sampling) -> Sampling:
    """Sampling options; zero fields take the server's defaults."""
    if msg.mode not in SAMPLING_MODES and msg.mode != pb.SAMPLING_MODE_UNSPECIFIED:
        raise InvalidRequestError(
            f"unknown sampling mode {msg.mode}; use one of {_both(SAMPLING_MODES, 'SamplingMode')}"
        )
    default = Sampling()
    return Sampling(
        mode=SAMPLING_MODES.get(msg.mode, default.mode),
        step=int(msg.step) or default.step,
        count=int(msg.count) or default.count,
        max_frames=int(msg.max_frames) or default.max_frames,
    )


def _both(names: dict[int, str], enum: str) -> str:
    """An enum's values as error messages name them: the proto's name and the word, "TASK_KIND_BINARY (binary), ..."."""
    values = pb.DESCRIPTOR.enum_types_by_name[enum].values_by_number
    return ", ".join(f"{values[number].name} ({word})" for number, word in names.items())


def channel_order_from_proto(value: int) -> str:
    """ "rgb" or "bgr"."""
    try:
        return CHANNEL_ORDERS[value]
    except KeyError:
        raise InvalidRequestError(
            f"unknown channel order {value}; use CHANNEL_ORDER_RGB (rgb) or CHANNEL_ORDER_BGR (bgr)"
        ) from None


def aggregation_from_proto(value: int, default: str) -> str:
    """ "max" or "mean"; unspecified takes the method's default."""
    if value == pb.AGGREGATION_UNSPECIFIED:
        return default
    try:
        return AGGREGATIONS[value]
    except KeyError:
        raise InvalidRequestError(f"unknown aggregation {value}; use {_both(AGGREGATIONS, 'Aggregation')}") from None


def _range(msg: pb.TimeRange, what: str) -> tuple[datetime | None, datetime | None]:
    start = to_datetime(msg.start, f"{what}.start") if msg.HasField("start") else None
    end = to_datetime(msg.end, f"{what}.end") if msg.HasField("end") else None
    if start is not None and end is not None and start > end:
        raise InvalidRequestError(
            f"filter {what} range is empty: start {start.isoformat()} is after end {end.isoformat()}; swap them"
        )
    return start, end


def filter_from_proto(msg: pb.VideoFilter | None) -> VideoFilter | None:
    """A VideoFilter, or None when the message is absent or selects everything."""
    if msg is None:
        return None
    if any(not key for key in msg.tags):
        raise InvalidRequestError("filter tag keys must be non-empty")
    acquired_after, acquired_before = _range(msg.acquisition_time, "acquisition_time")
    ingested_after, ingested_before = _range(msg.ingested_at, "ingested_at")
    flt = VideoFilter(
        video_ids=tuple(msg.video_ids) or None,
        study_ids=tuple(msg.study_ids) or None,
        patient_ids=tuple(msg.patient_ids) or None,
        views=tuple(msg.views) or None,
        acquired_after=acquired_after,
        acquired_before=acquired_before,
        ingested_after=ingested_after,
        ingested_before=ingested_before,
        tags=dict(msg.tags),
    )
    return None if flt.is_empty() else flt


def task_request_from_proto(msg: pb.CustomTask) -> TaskRequest:
    """A task defined in a request (ScoreVideos' inline task, CreateTask's task)."""
    if msg.kind not in TASK_KINDS:
        raise InvalidRequestError(f"custom task needs a kind: {_both(TASK_KINDS, 'TaskKind')}")
    values: tuple[float, ...] | None = None
    if msg.HasField("value_range"):
        r = msg.value_range
        values = (r.start, r.stop, r.step)
    elif msg.values:
        values = tuple(msg.values)
    return TaskRequest(
        name=msg.name or "custom",
        kind=TASK_KINDS[msg.kind],
        prompts=tuple(msg.prompts),
        values=values,
        labels={lab.value: lab.label for lab in msg.labels} or None,
        threshold=msg.threshold if msg.HasField("threshold") else None,
    )


# ---- records -> responses ---------------------------------------------------------------


def metadata_to_proto(md: VideoMetadata) -> pb.VideoMetadata:
    """User metadata for a response."""
    return pb.VideoMetadata(
        study_id=md.study_id or "",
        patient_id=md.patient_id or "",
        view=md.view or "",
        acquisition_time=to_timestamp(md.acquisition_time),
        tags=dict(md.tags),
    )


def video_to_proto(rec: VideoRecord) -> pb.Video:
    """A stored video for a response."""
    return pb.Video(
        video_id=rec.video_id,
        sha256=rec.sha256,
        source_name=rec.source_name,
        size_bytes=rec.size_bytes,
        fps=float(rec.fps),
        total_frames=rec.total_frames,
        sampled_frames=rec.sampled_frames,
        width=rec.width,
        height=rec.height,
        ingested_at=to_timestamp(rec.ingested_at),
        model_identity=rec.model_identity,
        metadata=metadata_to_proto(rec.metadata),
        sequence=rec.seq,
        thumbnails_withheld=rec.thumbnails_withheld or "",
    )


def frames_to_proto(frames: FrameEmbeddings) -> list[pb.Frame]:
    """Stored frames with their embeddings, in frame order."""
    ids = frames.frame_ids if frames.frame_ids is not None else [0] * len(frames.frame_indices)
    return [
        pb.Frame(frame_id=int(fid), frame_index=int(idx), timestamp_seconds=float(ts), embedding=emb.tolist())
        for fid, idx, ts, emb in zip(ids, frames.frame_indices, frames.timestamps, frames.embeddings)
    ]


def hits_to_proto(hits: Iterable[FrameHit]) -> list[pb.FrameHit]:
    """Best frames of a search result."""
    return [
        pb.FrameHit(
            frame_id=int(h.frame_id),
            frame_index=int(h.frame_index),
            timestamp_seconds=float(h.timestamp),
            score=float(h.score),
        )
        for h in hits
    ]


def plugin_problems_to_proto(problems: Iterable[PluginProblem]) -> list[pb.PluginProblem]:
    """The plugins and tasks the registry skipped, as ListTasks and GetServerInfo report them."""
    return [
        pb.PluginProblem(plugin=p.plugin, distribution=p.distribution, task=p.task, reason=p.reason) for p in problems
    ]


def task_to_proto(task: Task) -> pb.Task:
    """A task as ListTasks and ScoreVideos describe it."""
    kind = task.kind.value
    values, labels, threshold = task.values, task.labels, task.threshold
    msg = pb.Task(
        name=task.name,
        kind=TASK_KINDS_BACK.get(str(kind), pb.TASK_KIND_UNSPECIFIED),
        description=task.description,
        prompts=list(task.prompts),
        labels=[pb.CategoryLabel(value=float(v), label=str(name)) for v, name in sorted(labels.items())],
        placeholder=task.placeholder if task.kind.value == "regression" else "",
        source=task.source or "request",
        unit=task.unit,
    )
    if isinstance(values, ValueRange):
        msg.value_range.CopyFrom(pb.ValueRange(start=values.start, stop=values.stop, step=values.step))
    elif values is not None:
        msg.values.extend(float(v) for v in values)
    if threshold is not None:
        msg.threshold = float(threshold)
    if task.calibration is not None:
        msg.calibration.CopyFrom(pb.LinearCalibration(a=task.calibration[0], b=task.calibration[1]))
    return msg


def encoder_info_to_proto(encoder: EncoderStats | None, decode: DecodePoolStats | None) -> pb.EncoderInfo | None:
    """The ingest-path block of GetServerInfo: the batching encoder's statistics and the decode pool's."""
    if encoder is None or decode is None:
        return None
    return pb.EncoderInfo(
        device=encoder.device,
        precision=encoder.precision,
        compiled=encoder.compiled,
        batch_frames=encoder.batch_frames,
        batch_wait_ms=encoder.batch_wait_ms,
        batches=encoder.batches,
        frames=encoder.frames,
        mean_frames_per_batch=encoder.mean_frames_per_batch,
        queue_wait_p50_ms=encoder.queue_wait_p50_ms,
        queue_wait_p99_ms=encoder.queue_wait_p99_ms,
        retried_batches=encoder.retried_batches,
        text_batches=encoder.text_batches,
        queued_frames=encoder.queued_frames,
        decode_workers=decode.workers,
        decode_worker_restarts=decode.restarts,
        decode_crashes=decode.crashes,
        decode_timeouts=decode.timeouts,
        decode_timeout_s=decode.time_limit_s,
    )


def ingest_to_proto(outcome: IngestOutcome) -> pb.IngestVideoResponse:
    """What an ingest did, for IngestVideo's reply."""
    return pb.IngestVideoResponse(
        video=video_to_proto(outcome.video),
        already_stored=outcome.already_stored,
        decode_seconds=outcome.decode_seconds,
        encode_seconds=outcome.encode_seconds,
        store_seconds=outcome.store_seconds,
        metadata_updated=outcome.metadata_updated,
        metadata_conflicts=[
            pb.MetadataConflict(field=c.field, stored=c.stored, uploaded=c.uploaded, replaced=c.replaced)
            for c in outcome.metadata_conflicts
        ],
    )


def import_to_proto(outcome: ImportOutcome) -> pb.ImportEmbeddingsResponse:
    """What importing one shard committed, for ImportEmbeddings' reply."""
    return pb.ImportEmbeddingsResponse(
        shard_name=outcome.shard_name,
        already_imported=outcome.already_imported,
        videos_added=outcome.videos_added,
        videos_already_stored=outcome.videos_already_stored,
        frames_added=outcome.frames_added,
        seconds=outcome.seconds,
    )


def search_result_to_proto(result: SearchResult) -> pb.SearchResult:
    """One search result with its best frames (and thumbnail)."""
    return pb.SearchResult(
        video=video_to_proto(result.video),
        score=float(result.score),
        best_frames=hits_to_proto(result.best_frames),
        thumbnail=result.thumbnail or b"",
    )


def score_to_proto(score: VideoScore) -> pb.VideoScore:
    """One video's result for a task; value and decision only when the task kind has them."""
    msg = pb.VideoScore(video_id=score.video_id, score=float(score.score), label=score.label or "")
    if score.value is not None:
        msg.value = float(score.value)
    if score.decision is not None:
        msg.decision = bool(score.decision)
    if score.percentile is not None:
        msg.percentile, msg.percentile_of = float(score.percentile), int(score.percentile_of)
    return msg


def server_info_to_proto(info: ServerInfo) -> pb.GetServerInfoResponse:
    """GetServerInfo's reply."""
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
        max_upload_bytes=info.max_upload_bytes,
        skipped_plugins=plugin_problems_to_proto(info.skipped_plugins),
        search=pb.SearchBackendInfo(
            backend=info.search.backend,
            device=info.search.device,
            precision=info.search.precision,
            memory_bytes=info.search.memory_bytes,
            memory_cap_bytes=info.search.memory_cap_bytes,
        ),
        encoder=encoder_info_to_proto(info.encoder, info.decode),
        warm_up_texts_done=info.warm_up.texts_done if info.warm_up else 0,
        warm_up_texts_total=info.warm_up.texts_total if info.warm_up else 0,
        warm_up_finished=info.warm_up.finished if info.warm_up else True,
        warm_up_error=info.warm_up.error if info.warm_up else "",
    )


def delete_outcome_to_proto(outcome: DeleteOutcome) -> pb.DeleteVideosResponse:
    """What DeleteVideos did, or would do for a dry run."""
    return pb.DeleteVideosResponse(
        matched=outcome.matched,
        deleted=outcome.deleted,
        not_found=list(outcome.not_found),
        confirm_token=outcome.confirm_token,
    )


def backup_progress_to_proto(progress: BackupProgress) -> pb.BackupResponse:
    return pb.BackupResponse(**dataclasses.asdict(progress))  # the same fields, by name
