"""What the service reports about itself (GetServerInfo): the search backend, the batching encoder, the decode
pool, the prompt warm-up, and the whole ServerInfo. Plain records, like records.py (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass

from echosearch.server.records import PluginProblem


@dataclass(frozen=True)
class WarmUpState:
    """How far the prompt warm-up is: texts of the registered tasks encoded or found cached, out of all."""

    texts_done: int
    texts_total: int
    finished: bool
    error: str = ""


@dataclass(frozen=True)
class SearchBackendInfo:
    """The backend answering searches and scoring: "faiss-cpu", "faiss-gpu", "torch-cuda" or "torch-cpu"."""

    backend: str
    device: str
    precision: str
    memory_bytes: int
    memory_cap_bytes: int


@dataclass(frozen=True)
class EncoderStats:
    """What the batching encoder has done since start."""

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


@dataclass(frozen=True)
class DecodePoolStats:
    """The decode pool's size, its time limit per video, and what went wrong in it since start."""

    workers: int
    busy: int
    decoded: int
    restarts: int
    crashes: int
    timeouts: int
    time_limit_s: float


@dataclass(frozen=True)
class ServerInfo:
    """What a client may want to know about the running service."""

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
    search: SearchBackendInfo
    skipped_plugins: tuple[PluginProblem, ...] = ()
    encoder: EncoderStats | None = None
    decode: DecodePoolStats | None = None
    warm_up: WarmUpState | None = None


@dataclass(frozen=True)
class BackupProgress:
    """How far a backup is (phase, bytes), and with `done` what it holds (services/backup.py)."""

    phase: str  # "catalog", "index", "key", "manifest"
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
