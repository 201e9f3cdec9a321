import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Aggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGGREGATION_UNSPECIFIED: _ClassVar[Aggregation]
    AGGREGATION_MAX: _ClassVar[Aggregation]
    AGGREGATION_MEAN: _ClassVar[Aggregation]

class SamplingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLING_MODE_UNSPECIFIED: _ClassVar[SamplingMode]
    SAMPLING_MODE_REFERENCE: _ClassVar[SamplingMode]
    SAMPLING_MODE_ALL: _ClassVar[SamplingMode]
    SAMPLING_MODE_EVERY: _ClassVar[SamplingMode]
    SAMPLING_MODE_COUNT: _ClassVar[SamplingMode]

class ChannelOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_ORDER_UNSPECIFIED: _ClassVar[ChannelOrder]
    CHANNEL_ORDER_RGB: _ClassVar[ChannelOrder]
    CHANNEL_ORDER_BGR: _ClassVar[ChannelOrder]

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TASK_KIND_BINARY: _ClassVar[TaskKind]
    TASK_KIND_REGRESSION: _ClassVar[TaskKind]
    TASK_KIND_CATEGORICAL: _ClassVar[TaskKind]
AGGREGATION_UNSPECIFIED: Aggregation
AGGREGATION_MAX: Aggregation
AGGREGATION_MEAN: Aggregation
SAMPLING_MODE_UNSPECIFIED: SamplingMode
SAMPLING_MODE_REFERENCE: SamplingMode
SAMPLING_MODE_ALL: SamplingMode
SAMPLING_MODE_EVERY: SamplingMode
SAMPLING_MODE_COUNT: SamplingMode
CHANNEL_ORDER_UNSPECIFIED: ChannelOrder
CHANNEL_ORDER_RGB: ChannelOrder
CHANNEL_ORDER_BGR: ChannelOrder
TASK_KIND_UNSPECIFIED: TaskKind
TASK_KIND_BINARY: TaskKind
TASK_KIND_REGRESSION: TaskKind
TASK_KIND_CATEGORICAL: TaskKind

class VideoMetadata(_message.Message):
    __slots__ = ("study_id", "patient_id", "view", "acquisition_time", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    ACQUISITION_TIME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    patient_id: str
    view: str
    acquisition_time: _timestamp_pb2.Timestamp
    tags: _containers.ScalarMap[str, str]
    def __init__(self, study_id: _Optional[str] = ..., patient_id: _Optional[str] = ..., view: _Optional[str] = ..., acquisition_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VideoFilter(_message.Message):
    __slots__ = ("video_ids", "study_ids", "patient_ids", "views", "acquisition_time", "ingested_at", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    STUDY_IDS_FIELD_NUMBER: _ClassVar[int]
    PATIENT_IDS_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    ACQUISITION_TIME_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    video_ids: _containers.RepeatedScalarFieldContainer[int]
    study_ids: _containers.RepeatedScalarFieldContainer[str]
    patient_ids: _containers.RepeatedScalarFieldContainer[str]
    views: _containers.RepeatedScalarFieldContainer[str]
    acquisition_time: TimeRange
    ingested_at: TimeRange
    tags: _containers.ScalarMap[str, str]
    def __init__(self, video_ids: _Optional[_Iterable[int]] = ..., study_ids: _Optional[_Iterable[str]] = ..., patient_ids: _Optional[_Iterable[str]] = ..., views: _Optional[_Iterable[str]] = ..., acquisition_time: _Optional[_Union[TimeRange, _Mapping]] = ..., ingested_at: _Optional[_Union[TimeRange, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Video(_message.Message):
    __slots__ = ("video_id", "sha256", "source_name", "size_bytes", "fps", "total_frames", "sampled_frames", "width", "height", "ingested_at", "model_identity", "metadata", "sequence", "thumbnails_withheld")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FRAMES_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AT_FIELD_NUMBER: _ClassVar[int]
    MODEL_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    THUMBNAILS_WITHHELD_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    sha256: str
    source_name: str
    size_bytes: int
    fps: float
    total_frames: int
    sampled_frames: int
    width: int
    height: int
    ingested_at: _timestamp_pb2.Timestamp
    model_identity: str
    metadata: VideoMetadata
    sequence: int
    thumbnails_withheld: str
    def __init__(self, video_id: _Optional[int] = ..., sha256: _Optional[str] = ..., source_name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., fps: _Optional[float] = ..., total_frames: _Optional[int] = ..., sampled_frames: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., ingested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model_identity: _Optional[str] = ..., metadata: _Optional[_Union[VideoMetadata, _Mapping]] = ..., sequence: _Optional[int] = ..., thumbnails_withheld: _Optional[str] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("frame_id", "frame_index", "timestamp_seconds", "embedding")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    frame_index: int
    timestamp_seconds: float
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, frame_id: _Optional[int] = ..., frame_index: _Optional[int] = ..., timestamp_seconds: _Optional[float] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class FrameHit(_message.Message):
    __slots__ = ("frame_id", "frame_index", "timestamp_seconds", "score")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    frame_index: int
    timestamp_seconds: float
    score: float
    def __init__(self, frame_id: _Optional[int] = ..., frame_index: _Optional[int] = ..., timestamp_seconds: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("video", "score", "best_frames", "thumbnail")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BEST_FRAMES_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    video: Video
    score: float
    best_frames: _containers.RepeatedCompositeFieldContainer[FrameHit]
    thumbnail: bytes
    def __init__(self, video: _Optional[_Union[Video, _Mapping]] = ..., score: _Optional[float] = ..., best_frames: _Optional[_Iterable[_Union[FrameHit, _Mapping]]] = ..., thumbnail: _Optional[bytes] = ...) -> None: ...

class Sampling(_message.Message):
    __slots__ = ("mode", "step", "count", "max_frames")
    MODE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    mode: SamplingMode
    step: int
    count: int
    max_frames: int
    def __init__(self, mode: _Optional[_Union[SamplingMode, str]] = ..., step: _Optional[int] = ..., count: _Optional[int] = ..., max_frames: _Optional[int] = ...) -> None: ...

class IngestVideoHeader(_message.Message):
    __slots__ = ("source_name", "metadata", "sampling", "channel_order", "size_bytes", "sha256", "update_metadata")
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ORDER_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    UPDATE_METADATA_FIELD_NUMBER: _ClassVar[int]
    source_name: str
    metadata: VideoMetadata
    sampling: Sampling
    channel_order: ChannelOrder
    size_bytes: int
    sha256: str
    update_metadata: bool
    def __init__(self, source_name: _Optional[str] = ..., metadata: _Optional[_Union[VideoMetadata, _Mapping]] = ..., sampling: _Optional[_Union[Sampling, _Mapping]] = ..., channel_order: _Optional[_Union[ChannelOrder, str]] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., update_metadata: _Optional[bool] = ...) -> None: ...

class IngestVideoRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: IngestVideoHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[IngestVideoHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class MetadataConflict(_message.Message):
    __slots__ = ("field", "stored", "uploaded", "replaced")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    field: str
    stored: str
    uploaded: str
    replaced: bool
    def __init__(self, field: _Optional[str] = ..., stored: _Optional[str] = ..., uploaded: _Optional[str] = ..., replaced: _Optional[bool] = ...) -> None: ...

class IngestVideoResponse(_message.Message):
    __slots__ = ("video", "already_stored", "decode_seconds", "encode_seconds", "store_seconds", "metadata_updated", "metadata_conflicts")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    ALREADY_STORED_FIELD_NUMBER: _ClassVar[int]
    DECODE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STORE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_UPDATED_FIELD_NUMBER: _ClassVar[int]
    METADATA_CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    video: Video
    already_stored: bool
    decode_seconds: float
    encode_seconds: float
    store_seconds: float
    metadata_updated: bool
    metadata_conflicts: _containers.RepeatedCompositeFieldContainer[MetadataConflict]
    def __init__(self, video: _Optional[_Union[Video, _Mapping]] = ..., already_stored: _Optional[bool] = ..., decode_seconds: _Optional[float] = ..., encode_seconds: _Optional[float] = ..., store_seconds: _Optional[float] = ..., metadata_updated: _Optional[bool] = ..., metadata_conflicts: _Optional[_Iterable[_Union[MetadataConflict, _Mapping]]] = ...) -> None: ...

class GetVideoRequest(_message.Message):
    __slots__ = ("video_id", "include_embeddings")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    include_embeddings: bool
    def __init__(self, video_id: _Optional[int] = ..., include_embeddings: _Optional[bool] = ...) -> None: ...

class GetVideoResponse(_message.Message):
    __slots__ = ("video", "frames")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    video: Video
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    def __init__(self, video: _Optional[_Union[Video, _Mapping]] = ..., frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ...) -> None: ...

class ListVideosRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: VideoFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[VideoFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListVideosResponse(_message.Message):
    __slots__ = ("videos", "next_page_token", "total_size")
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    videos: _containers.RepeatedCompositeFieldContainer[Video]
    next_page_token: str
    total_size: int
    def __init__(self, videos: _Optional[_Iterable[_Union[Video, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class UpdateVideoMetadataRequest(_message.Message):
    __slots__ = ("video_id", "set", "remove")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    set: VideoMetadata
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, video_id: _Optional[int] = ..., set: _Optional[_Union[VideoMetadata, _Mapping]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateVideoMetadataResponse(_message.Message):
    __slots__ = ("video", "changed")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    video: Video
    changed: bool
    def __init__(self, video: _Optional[_Union[Video, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class DeleteVideoRequest(_message.Message):
    __slots__ = ("video_id",)
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    def __init__(self, video_id: _Optional[int] = ...) -> None: ...

class DeleteVideoResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteVideosRequest(_message.Message):
    __slots__ = ("video_ids", "filter", "dry_run", "confirm_token")
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_TOKEN_FIELD_NUMBER: _ClassVar[int]
    video_ids: _containers.RepeatedScalarFieldContainer[int]
    filter: VideoFilter
    dry_run: bool
    confirm_token: str
    def __init__(self, video_ids: _Optional[_Iterable[int]] = ..., filter: _Optional[_Union[VideoFilter, _Mapping]] = ..., dry_run: _Optional[bool] = ..., confirm_token: _Optional[str] = ...) -> None: ...

class DeleteVideosResponse(_message.Message):
    __slots__ = ("matched", "deleted", "not_found", "confirm_token")
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_TOKEN_FIELD_NUMBER: _ClassVar[int]
    matched: int
    deleted: int
    not_found: _containers.RepeatedScalarFieldContainer[int]
    confirm_token: str
    def __init__(self, matched: _Optional[int] = ..., deleted: _Optional[int] = ..., not_found: _Optional[_Iterable[int]] = ..., confirm_token: _Optional[str] = ...) -> None: ...

class SearchByTextRequest(_message.Message):
    __slots__ = ("text", "k", "aggregation", "filter", "frames_per_video", "include_thumbnails")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_VIDEO_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_THUMBNAILS_FIELD_NUMBER: _ClassVar[int]
    text: str
    k: int
    aggregation: Aggregation
    filter: VideoFilter
    frames_per_video: int
    include_thumbnails: bool
    def __init__(self, text: _Optional[str] = ..., k: _Optional[int] = ..., aggregation: _Optional[_Union[Aggregation, str]] = ..., filter: _Optional[_Union[VideoFilter, _Mapping]] = ..., frames_per_video: _Optional[int] = ..., include_thumbnails: _Optional[bool] = ...) -> None: ...

class SearchByTextResponse(_message.Message):
    __slots__ = ("results", "plan")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    plan: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., plan: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchByVideoRequest(_message.Message):
    __slots__ = ("video_id", "k", "aggregation", "filter", "frames_per_video", "include_thumbnails")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_VIDEO_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_THUMBNAILS_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    k: int
    aggregation: Aggregation
    filter: VideoFilter
    frames_per_video: int
    include_thumbnails: bool
    def __init__(self, video_id: _Optional[int] = ..., k: _Optional[int] = ..., aggregation: _Optional[_Union[Aggregation, str]] = ..., filter: _Optional[_Union[VideoFilter, _Mapping]] = ..., frames_per_video: _Optional[int] = ..., include_thumbnails: _Optional[bool] = ...) -> None: ...

class SearchByVideoResponse(_message.Message):
    __slots__ = ("results", "plan")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    plan: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., plan: _Optional[_Iterable[str]] = ...) -> None: ...

class ValueRange(_message.Message):
    __slots__ = ("start", "stop", "step")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    start: float
    stop: float
    step: float
    def __init__(self, start: _Optional[float] = ..., stop: _Optional[float] = ..., step: _Optional[float] = ...) -> None: ...

class CategoryLabel(_message.Message):
    __slots__ = ("value", "label")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    value: float
    label: str
    def __init__(self, value: _Optional[float] = ..., label: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("name", "kind", "description", "prompts", "values", "labels", "threshold", "placeholder", "source", "value_range", "unit", "calibration")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PLACEHOLDER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_RANGE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: TaskKind
    description: str
    prompts: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[float]
    labels: _containers.RepeatedCompositeFieldContainer[CategoryLabel]
    threshold: float
    placeholder: str
    source: str
    value_range: ValueRange
    unit: str
    calibration: LinearCalibration
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., description: _Optional[str] = ..., prompts: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[float]] = ..., labels: _Optional[_Iterable[_Union[CategoryLabel, _Mapping]]] = ..., threshold: _Optional[float] = ..., placeholder: _Optional[str] = ..., source: _Optional[str] = ..., value_range: _Optional[_Union[ValueRange, _Mapping]] = ..., unit: _Optional[str] = ..., calibration: _Optional[_Union[LinearCalibration, _Mapping]] = ...) -> None: ...

class LinearCalibration(_message.Message):
    __slots__ = ("a", "b")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    a: float
    b: float
    def __init__(self, a: _Optional[float] = ..., b: _Optional[float] = ...) -> None: ...

class CustomTask(_message.Message):
    __slots__ = ("name", "kind", "prompts", "value_range", "values", "labels", "threshold")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    VALUE_RANGE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: TaskKind
    prompts: _containers.RepeatedScalarFieldContainer[str]
    value_range: ValueRange
    values: _containers.RepeatedScalarFieldContainer[float]
    labels: _containers.RepeatedCompositeFieldContainer[CategoryLabel]
    threshold: float
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., prompts: _Optional[_Iterable[str]] = ..., value_range: _Optional[_Union[ValueRange, _Mapping]] = ..., values: _Optional[_Iterable[float]] = ..., labels: _Optional[_Iterable[_Union[CategoryLabel, _Mapping]]] = ..., threshold: _Optional[float] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("page_token", "page_size")
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page_token: str
    page_size: int
    def __init__(self, page_token: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token", "skipped")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    skipped: _containers.RepeatedCompositeFieldContainer[PluginProblem]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., skipped: _Optional[_Iterable[_Union[PluginProblem, _Mapping]]] = ...) -> None: ...

class PluginProblem(_message.Message):
    __slots__ = ("plugin", "distribution", "task", "reason")
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    plugin: str
    distribution: str
    task: str
    reason: str
    def __init__(self, plugin: _Optional[str] = ..., distribution: _Optional[str] = ..., task: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ScoreVideosRequest(_message.Message):
    __slots__ = ("task_name", "custom_task", "video_ids", "filter", "top_k", "batch_size", "bottom_k")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_TASK_FIELD_NUMBER: _ClassVar[int]
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BOTTOM_K_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    custom_task: CustomTask
    video_ids: _containers.RepeatedScalarFieldContainer[int]
    filter: VideoFilter
    top_k: int
    batch_size: int
    bottom_k: int
    def __init__(self, task_name: _Optional[str] = ..., custom_task: _Optional[_Union[CustomTask, _Mapping]] = ..., video_ids: _Optional[_Iterable[int]] = ..., filter: _Optional[_Union[VideoFilter, _Mapping]] = ..., top_k: _Optional[int] = ..., batch_size: _Optional[int] = ..., bottom_k: _Optional[int] = ...) -> None: ...

class ScoreVideosResponse(_message.Message):
    __slots__ = ("scores", "task")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[VideoScore]
    task: Task
    def __init__(self, scores: _Optional[_Iterable[_Union[VideoScore, _Mapping]]] = ..., task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class VideoScore(_message.Message):
    __slots__ = ("video_id", "score", "value", "label", "decision", "percentile", "percentile_of")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_OF_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    score: float
    value: float
    label: str
    decision: bool
    percentile: float
    percentile_of: int
    def __init__(self, video_id: _Optional[int] = ..., score: _Optional[float] = ..., value: _Optional[float] = ..., label: _Optional[str] = ..., decision: _Optional[bool] = ..., percentile: _Optional[float] = ..., percentile_of: _Optional[int] = ...) -> None: ...

class ExportEmbeddingsRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: VideoFilter
    def __init__(self, filter: _Optional[_Union[VideoFilter, _Mapping]] = ...) -> None: ...

class ExportEmbeddingsResponse(_message.Message):
    __slots__ = ("chunk", "rows", "total_bytes")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    rows: int
    total_bytes: int
    def __init__(self, chunk: _Optional[bytes] = ..., rows: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetServerInfoResponse(_message.Message):
    __slots__ = ("version", "model_spec", "model_identity", "device", "precision", "embed_dim", "index_factory", "index_on_gpu", "videos", "frames", "tasks", "max_upload_bytes", "skipped_plugins", "search", "encoder", "warm_up_texts_done", "warm_up_texts_total", "warm_up_finished", "warm_up_error")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_SPEC_FIELD_NUMBER: _ClassVar[int]
    MODEL_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    EMBED_DIM_FIELD_NUMBER: _ClassVar[int]
    INDEX_FACTORY_FIELD_NUMBER: _ClassVar[int]
    INDEX_ON_GPU_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_PLUGINS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    WARM_UP_TEXTS_DONE_FIELD_NUMBER: _ClassVar[int]
    WARM_UP_TEXTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    WARM_UP_FINISHED_FIELD_NUMBER: _ClassVar[int]
    WARM_UP_ERROR_FIELD_NUMBER: _ClassVar[int]
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
    skipped_plugins: _containers.RepeatedCompositeFieldContainer[PluginProblem]
    search: SearchBackendInfo
    encoder: EncoderInfo
    warm_up_texts_done: int
    warm_up_texts_total: int
    warm_up_finished: bool
    warm_up_error: str
    def __init__(self, version: _Optional[str] = ..., model_spec: _Optional[str] = ..., model_identity: _Optional[str] = ..., device: _Optional[str] = ..., precision: _Optional[str] = ..., embed_dim: _Optional[int] = ..., index_factory: _Optional[str] = ..., index_on_gpu: _Optional[bool] = ..., videos: _Optional[int] = ..., frames: _Optional[int] = ..., tasks: _Optional[int] = ..., max_upload_bytes: _Optional[int] = ..., skipped_plugins: _Optional[_Iterable[_Union[PluginProblem, _Mapping]]] = ..., search: _Optional[_Union[SearchBackendInfo, _Mapping]] = ..., encoder: _Optional[_Union[EncoderInfo, _Mapping]] = ..., warm_up_texts_done: _Optional[int] = ..., warm_up_texts_total: _Optional[int] = ..., warm_up_finished: _Optional[bool] = ..., warm_up_error: _Optional[str] = ...) -> None: ...

class SearchBackendInfo(_message.Message):
    __slots__ = ("backend", "device", "precision", "memory_bytes", "memory_cap_bytes")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CAP_BYTES_FIELD_NUMBER: _ClassVar[int]
    backend: str
    device: str
    precision: str
    memory_bytes: int
    memory_cap_bytes: int
    def __init__(self, backend: _Optional[str] = ..., device: _Optional[str] = ..., precision: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., memory_cap_bytes: _Optional[int] = ...) -> None: ...

class EncoderInfo(_message.Message):
    __slots__ = ("device", "precision", "compiled", "batch_frames", "batch_wait_ms", "batches", "frames", "mean_frames_per_batch", "queue_wait_p50_ms", "queue_wait_p99_ms", "retried_batches", "text_batches", "queued_frames", "decode_workers", "decode_worker_restarts", "decode_crashes", "decode_timeouts", "decode_timeout_s")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    COMPILED_FIELD_NUMBER: _ClassVar[int]
    BATCH_FRAMES_FIELD_NUMBER: _ClassVar[int]
    BATCH_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    MEAN_FRAMES_PER_BATCH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_P50_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_P99_MS_FIELD_NUMBER: _ClassVar[int]
    RETRIED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    TEXT_BATCHES_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    DECODE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    DECODE_WORKER_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    DECODE_CRASHES_FIELD_NUMBER: _ClassVar[int]
    DECODE_TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    DECODE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
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
    def __init__(self, device: _Optional[str] = ..., precision: _Optional[str] = ..., compiled: _Optional[bool] = ..., batch_frames: _Optional[int] = ..., batch_wait_ms: _Optional[float] = ..., batches: _Optional[int] = ..., frames: _Optional[int] = ..., mean_frames_per_batch: _Optional[float] = ..., queue_wait_p50_ms: _Optional[float] = ..., queue_wait_p99_ms: _Optional[float] = ..., retried_batches: _Optional[int] = ..., text_batches: _Optional[int] = ..., queued_frames: _Optional[int] = ..., decode_workers: _Optional[int] = ..., decode_worker_restarts: _Optional[int] = ..., decode_crashes: _Optional[int] = ..., decode_timeouts: _Optional[int] = ..., decode_timeout_s: _Optional[float] = ...) -> None: ...

class GetFrameImageRequest(_message.Message):
    __slots__ = ("video_id", "frame_index")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    frame_index: int
    def __init__(self, video_id: _Optional[int] = ..., frame_index: _Optional[int] = ...) -> None: ...

class GetFrameImageResponse(_message.Message):
    __slots__ = ("jpeg", "media_type")
    JPEG_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    jpeg: bytes
    media_type: str
    def __init__(self, jpeg: _Optional[bytes] = ..., media_type: _Optional[str] = ...) -> None: ...

class CreateTaskRequest(_message.Message):
    __slots__ = ("task", "description", "calibration", "replace")
    TASK_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    task: CustomTask
    description: str
    calibration: LinearCalibration
    replace: bool
    def __init__(self, task: _Optional[_Union[CustomTask, _Mapping]] = ..., description: _Optional[str] = ..., calibration: _Optional[_Union[LinearCalibration, _Mapping]] = ..., replace: _Optional[bool] = ...) -> None: ...

class CreateTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class DeleteTaskRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ImportEmbeddingsHeader(_message.Message):
    __slots__ = ("shard_name", "size_bytes", "sha256", "force")
    SHARD_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    shard_name: str
    size_bytes: int
    sha256: str
    force: bool
    def __init__(self, shard_name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class ImportEmbeddingsRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ImportEmbeddingsHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[ImportEmbeddingsHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ImportEmbeddingsResponse(_message.Message):
    __slots__ = ("shard_name", "already_imported", "videos_added", "videos_already_stored", "frames_added", "seconds")
    SHARD_NAME_FIELD_NUMBER: _ClassVar[int]
    ALREADY_IMPORTED_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_ADDED_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_ALREADY_STORED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_ADDED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    shard_name: str
    already_imported: bool
    videos_added: int
    videos_already_stored: int
    frames_added: int
    seconds: float
    def __init__(self, shard_name: _Optional[str] = ..., already_imported: _Optional[bool] = ..., videos_added: _Optional[int] = ..., videos_already_stored: _Optional[int] = ..., frames_added: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ("out_dir", "max_bytes_per_second")
    OUT_DIR_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    out_dir: str
    max_bytes_per_second: int
    def __init__(self, out_dir: _Optional[str] = ..., max_bytes_per_second: _Optional[int] = ...) -> None: ...

class BackupResponse(_message.Message):
    __slots__ = ("phase", "bytes_done", "bytes_total", "done", "videos", "frames", "files", "catalog_sequence", "seconds", "writes_paused_seconds", "out_dir")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    CATALOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    WRITES_PAUSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OUT_DIR_FIELD_NUMBER: _ClassVar[int]
    phase: str
    bytes_done: int
    bytes_total: int
    done: bool
    videos: int
    frames: int
    files: int
    catalog_sequence: int
    seconds: float
    writes_paused_seconds: float
    out_dir: str
    def __init__(self, phase: _Optional[str] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., done: _Optional[bool] = ..., videos: _Optional[int] = ..., frames: _Optional[int] = ..., files: _Optional[int] = ..., catalog_sequence: _Optional[int] = ..., seconds: _Optional[float] = ..., writes_paused_seconds: _Optional[float] = ..., out_dir: _Optional[str] = ...) -> None: ...
