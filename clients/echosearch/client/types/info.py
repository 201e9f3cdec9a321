"""What the server says about itself (GetServerInfo): model, device, search backend, counts, ingest path."""

from __future__ import annotations

from dataclasses import dataclass, fields

from echosearch.client.types.tasks import PluginProblem
from echosearch.v1 import echosearch_pb2 as pb


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
    # the prompt warm-up: registered tasks' texts encoded (or found cached) so far, of all; finished when done
    warm_up_texts_done: int = 0
    warm_up_texts_total: int = 0
    warm_up_finished: bool = True
    warm_up_error: str = ""

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
            warm_up_texts_done=i.warm_up_texts_done,
            warm_up_texts_total=i.warm_up_texts_total,
            warm_up_finished=i.warm_up_finished,
            warm_up_error=i.warm_up_error,
        )
