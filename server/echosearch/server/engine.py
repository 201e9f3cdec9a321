"""The use cases — ingest, search, score, delete, export — composed from model, video, store and tasks.

Thread-safety: gRPC calls arrive on many threads. Decoding runs in worker
processes (media/decode_pool.py: FFmpeg outside the server, a time limit per
video); the batching encoder (encoder.py) owns the model in one worker thread and
encodes the frames of concurrent ingests in shared batches, texts first.
The engine holds no write lock: the Store is the only write path and owns its
locking, so a search never waits on a decode or an encode. Reads go through the
Store's read-only catalog view (`store.reader`).

Requests are validated here, once (domain rules); the proto conversion only maps
wire enums, and the layers below only assert.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from echosearch.server import cancellation
from echosearch.server.bulk.importing import ImportOutcome, import_shard, previously_imported
from echosearch.server.encoder import DEFAULT_BATCH_WAIT_MS, BatchingEncoder, EncoderStats
from echosearch.server.errors import (
    InvalidRequestError,
    ModelMismatchError,
    NotFoundError,
    RequestCancelledError,
    TooLargeError,
)
from echosearch.server.limits import Limits
from echosearch.server.lru import LRUCache
from echosearch.server.media.decode_pool import DEFAULT_TIME_LIMIT_S, DecodePool, DecodePoolStats
from echosearch.server.media.dicom.header import merge_metadata
from echosearch.server.media.dicom.phi import DEFAULT_PHI_MODE, policy_for_store
from echosearch.server.media.prepare import DEFAULT_DICOM_MASK, DICOM_MASKS, PrepareOptions
from echosearch.server.media.video import Sampling
from echosearch.server.metadata_update import MetadataChange, metadata_change, reingest_change
from echosearch.server.model import EchoClipModel, load_model
from echosearch.server.records import FrameEmbeddings, FrameHit, VideoFilter, VideoMetadata, VideoRecord
from echosearch.server.storage.disk_errors import disk_errors
from echosearch.server.storage.store import Store
from echosearch.server.tasks.prompt_cache import PromptEmbeddingCache
from echosearch.server.tasks.registry import PluginProblem, load_registry
from echosearch.server.tasks.scoring_service import MAX_K, TaskScorer, VideoScore
from echosearch.server.tasks.stored import StoredTasks
from echosearch.tasks.spec import Task, custom_task, validate_task

log = logging.getLogger(__name__)

AGGREGATIONS = ("max", "mean")
CHANNEL_ORDERS = ("rgb", "bgr")
_QUERY_CACHE_SIZE = 1024


@dataclass(frozen=True)
class IngestOutcome:
    """What an ingest did: the stored video, whether it was already there, where the time went."""

    video: VideoRecord
    already_stored: bool
    decode_seconds: float
    encode_seconds: float
    store_seconds: float
    metadata_updated: bool = False  # already stored, and the upload's differing metadata was written


@dataclass(frozen=True)
class SearchResult:
    """One video found by a search, with its best-matching frames."""

    video: VideoRecord
    score: float
    best_frames: tuple[FrameHit, ...]
    thumbnail: bytes | None = None  # the best frame's JPEG, when asked for and kept


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
    search: SearchBackendInfo
    encoder: EncoderStats | None = None
    decode: DecodePoolStats | None = None


@dataclass(frozen=True)
class SearchBackendInfo:
    """The engine answering searches and scoring: "faiss-cpu", "faiss-gpu", "torch-cuda" or "torch-cpu"."""

    backend: str
    device: str
    precision: str
    memory_bytes: int
    memory_cap_bytes: int


def package_version() -> str:
    """The installed echosearch version, or 0+unknown in a bare checkout."""
    try:
        return version("echosearch")
    except PackageNotFoundError:
        return "0+unknown"


class Engine:
    """The service's use cases over one data directory and one model."""

    def __init__(
        self,
        *,
        data_dir: Path,
        model_spec: str,
        device: str = "auto",
        precision: str = "fp32",
        index_factory: str = "Flat",
        use_gpu: bool | None = None,
        max_upload_bytes: int | None = None,
        model: EchoClipModel | None = None,
        thumbnails: bool = True,
        search_device: str = "auto",
        gpu_memory_gb: float | None = None,
        search_precision: str = "fp16",
        limits: Limits | None = None,
        phi: str = DEFAULT_PHI_MODE,
        dicom_mask: str = DEFAULT_DICOM_MASK,
        batch_frames: int | None = None,
        batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        compile: bool = False,
        decode_workers: int | None = None,
        decode_timeout_s: float = DEFAULT_TIME_LIMIT_S,
        decode_pool: DecodePool | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.thumbnails = bool(thumbnails)  # keep a JPEG of each embedded frame's model-input crop
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.limits = (limits or Limits()).with_overrides(max_upload_bytes=max_upload_bytes)
        self.max_upload_bytes = self.limits.max_upload_bytes
        self.phi_policy = policy_for_store(phi, self.data_dir)  # DICOM PatientID: hash (per-store key) | keep | drop
        if dicom_mask not in DICOM_MASKS:
            raise InvalidRequestError(f"--dicom-mask must be one of {', '.join(DICOM_MASKS)}, not {dicom_mask!r}")
        self.dicom_mask = dicom_mask
        self.model = model if model is not None else load_model(model_spec, device=device, precision=precision)
        self.store = Store(
            self.data_dir,
            index_factory=index_factory,
            use_gpu=use_gpu,
            search_device=search_device,
            gpu_memory_gb=gpu_memory_gb,
            matrix_precision=search_precision,
        )
        self.reader = self.store.reader
        bound = self.reader.model_identity
        if bound is not None and bound != self.model.identity:
            self.store.close()
            raise ModelMismatchError(
                f"the store in {self.data_dir} holds embeddings of model {bound!r}, but this server "
                f"was started with {self.model.identity!r}; start it with that model's --model spec, "
                "or use another --data directory for the new model"
            )
        # Plugin prompts are checked against this model's context, the same rule as for custom tasks.
        self.registry = load_registry(count_tokens=self.model.count_tokens, context_length=self.model.context_length)
        self.stored_tasks = StoredTasks(self.store, self.registry, self._check_task)
        self.encoder = BatchingEncoder(
            self.model, batch_frames=batch_frames, batch_wait_ms=batch_wait_ms, compile=compile
        )
        self.decode_pool = decode_pool or DecodePool(decode_workers, time_limit_s=decode_timeout_s)
        self._query_cache: LRUCache[str, np.ndarray] = LRUCache(_QUERY_CACHE_SIZE)
        self.prompts = PromptEmbeddingCache(self._encode_texts, self.model.identity, self.store)
        self.scorer = TaskScorer(self.store, self.prompts)
        log.info(
            "engine ready: model %s on %s, %d videos / %d frames, index %s%s",
            self.model.identity,
            self.model.device,
            self.reader.count_videos(),
            self.reader.count_frames(),
            self.store.index_factory,
            " (GPU)" if self.store.on_gpu else "",
        )

    # ---- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Stop the decode workers and the encoder, save the index and close the catalog; safe to call twice."""
        self.decode_pool.close()
        self.encoder.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> ServerInfo:
        """Version, model identity, device, index type and counts."""
        return ServerInfo(
            version=package_version(),
            model_spec=self.model.spec,
            model_identity=self.model.identity,
            device=str(self.model.device),
            precision=self.model.precision,
            embed_dim=self.model.embed_dim,
            index_factory=self.store.index_factory,
            index_on_gpu=bool(self.store.on_gpu),
            videos=self.reader.count_videos(),
            frames=self.reader.count_frames(),
            tasks=len(self.registry) + len(self.stored_tasks.list()),
            search=SearchBackendInfo(**self.store.search_backend_info()),
            encoder=self.encoder.stats(),
            decode=self.decode_pool.stats(),
        )

    # ---- encoding --------------------------------------------------------------------

    # The two calls into the model, both through the batching encoder.
    def _encode_frames(self, pixels: torch.Tensor, should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        return self.encoder.encode_frames(pixels, should_stop=should_stop)

    def _encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_texts(list(texts))

    def _embed_query(self, text: str) -> np.ndarray:
        """A search text's embedding; recent ones are kept in memory (searches repeat)."""
        hit = self._query_cache.get(text)
        if hit is not None:
            return hit
        vector = self._encode_texts([text])[0]
        self._query_cache.put(text, vector)
        return vector

    # ---- ingest ----------------------------------------------------------------------

    def ingest(
        self,
        source: bytes | Path,
        *,
        source_name: str,
        metadata: VideoMetadata = VideoMetadata(),
        sampling: Sampling = Sampling(),
        channel_order: str = "rgb",
        sha256: str | None = None,
    ) -> IngestOutcome:
        """Decode, embed and store one video in one catalog transaction; idempotent by content sha256.

        `sampling` was checked when it was made (Sampling validates itself on construction) and is
        lowered here to the server's frame cap. A path is decoded from the file, never read into
        memory whole; `sha256` is the content's hash when the caller already computed it while receiving.
        """
        if channel_order not in CHANNEL_ORDERS:
            raise InvalidRequestError(f"channel order must be 'rgb' or 'bgr', not {channel_order!r}")
        data: bytes | Path
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            size = len(data)
        else:
            data = Path(source)
            size = self._file_size(data)
        self.check_upload_size(source_name, size)
        sampling = self.check_ingest_args(source_name, metadata, sampling)
        if sha256 is None:
            sha256 = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else _hash_file(data)
        existing = self.reader.find_by_sha256(sha256)
        if existing is not None:
            record, updated = self.update_stored_on_reingest(existing, metadata)
            return IngestOutcome(record, True, 0.0, 0.0, 0.0, updated)

        started = time.perf_counter()
        options = PrepareOptions(
            sampling,
            channel_order=channel_order,
            mean=self.model.mean,
            std=self.model.std,
            image_size=self.model.image_size,
            thumbnails=self.thumbnails,
            max_frame_pixels=self.limits.max_frame_pixels,
            dicom_mask=self.dicom_mask,
            phi_policy=self.phi_policy,
        )
        # Decoded in a worker process (a path is read there, not here); uint8 crops.
        prepared = self.decode_pool.prepare(data, options, name=source_name, should_stop=_caller_gone)
        if prepared.header_metadata is not None:  # a DICOM's header, read in the worker; PatientID via the policy
            metadata = merge_metadata(prepared.header_metadata, metadata)
        decoded = time.perf_counter()
        cancellation.check()  # nobody waits for this video any more: do not encode it (once encoded, it is stored)
        # A caller that goes away while its frames are queued takes them out of the encoder's queue.
        embeddings = self._encode_frames(prepared.pixels, _caller_gone)
        encoded = time.perf_counter()
        frames = FrameEmbeddings(
            frame_indices=np.asarray(prepared.frame_indices, dtype=np.int64),
            timestamps=np.asarray(prepared.timestamps, dtype=np.float64),
            embeddings=embeddings,
            thumbnails=prepared.thumbnails,
        )
        # The store binds the model (identity, width) inside the ingest transaction, once.
        record, created = self.store.add_video(
            sha256=sha256,
            source_name=source_name,
            size_bytes=size,
            fps=float(prepared.fps),
            total_frames=int(prepared.total_frames),
            width=int(prepared.width),
            height=int(prepared.height),
            model_identity=self.model.identity,
            metadata=metadata,
            frames=frames,
        )
        stored = time.perf_counter()
        if created:
            log.info(
                "ingested video %d %s: %d frames (decode %.2fs, encode %.2fs, store %.3fs)",
                record.video_id,
                source_name,
                record.sampled_frames,
                decoded - started,
                encoded - decoded,
                stored - encoded,
            )
        return IngestOutcome(record, not created, decoded - started, encoded - decoded, stored - encoded)

    def update_stored_on_reingest(self, stored: VideoRecord, metadata: VideoMetadata) -> tuple[VideoRecord, bool]:
        """Stored content uploaded again with metadata: write the metadata's set fields and tags when they differ."""
        change = reingest_change(stored.metadata, metadata)
        if change is None:
            return stored, False
        record, changed = self.update_video_metadata_change(stored.video_id, change)
        return record, changed

    def update_video_metadata(
        self, video_id: int, metadata: VideoMetadata, remove: Sequence[str] = ()
    ) -> tuple[VideoRecord, bool]:
        """Set fields and tags, clear fields or remove tags (`remove`: field names, tag.KEY or KEY); logged."""
        return self.update_video_metadata_change(int(video_id), metadata_change(metadata, remove))

    def update_video_metadata_change(self, video_id: int, change: MetadataChange) -> tuple[VideoRecord, bool]:
        self.limits.check_metadata(f"video {video_id}", change.set)  # the same caps as an ingest's metadata
        record, changed = self.store.update_metadata(int(video_id), change)
        if changed:
            log.info("updated metadata of video %d", video_id)
        return record, changed

    def stored_video(self, sha256: str) -> VideoRecord | None:
        """The stored video with this content hash (hex SHA-256), if any."""
        return self.reader.find_by_sha256(sha256.strip().lower())

    def check_upload_size(self, name: str, size: int, *, partial: bool = False) -> None:
        """The upload-size rule (TooLargeError); `partial` when `size` bytes arrived and more are coming."""
        limit = self.max_upload_bytes
        if size > limit:
            what = f"more than {size} bytes" if partial else f"{size} bytes"
            raise TooLargeError(
                f"{name}: {what} is over the server's upload limit of {limit} bytes ({limit / 2**20:.0f} MiB); "
                "split or shorten the video, or start the server with a larger --max-upload-mb"
            )

    def check_ingest_args(self, source_name: str, metadata: VideoMetadata, sampling: Sampling) -> Sampling:
        """Validate what an ingest stores besides the video (before any byte is received); the sampling within the caps."""
        self.limits.check_metadata(source_name, metadata)
        return self.limits.sampling_within(sampling)

    @staticmethod
    def _file_size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError as exc:
            raise InvalidRequestError(f"cannot read {path}: {exc.strerror or exc}") from None

    # ---- bulk import (issue 10) ---------------------------------------------------------

    def imported_shard(self, name: str, shard_sha256: str) -> ImportOutcome | None:
        """The recorded outcome when a shard with this content hash was imported before."""
        return previously_imported(self.store, name, shard_sha256.strip().lower())

    def import_shard(self, path: Path, *, name: str, shard_sha256: str) -> ImportOutcome:
        """Import one `bulk embed` Parquet shard: one transaction, bulk index add; idempotent by sha256."""
        return import_shard(
            self.store,
            self.model,
            Path(path),
            name=name,
            shard_sha256=shard_sha256.lower(),
            limits=self.limits,
            thumbnails=self.thumbnails,
        )

    # ---- videos ----------------------------------------------------------------------

    def get_video(self, video_id: int, *, with_embeddings: bool = False) -> tuple[VideoRecord, FrameEmbeddings | None]:
        """A stored video's record, and its frames' embeddings when asked."""
        if with_embeddings:  # one snapshot: a delete racing this read is NOT_FOUND, never a video without frames
            return self.reader.get_video_and_frames(int(video_id))
        return self.reader.get_video(int(video_id)), None

    def frame_image(self, video_id: int, frame_index: int) -> bytes:
        """The JPEG thumbnail of one stored frame; NotFoundError saying why when there is none."""
        if not self.thumbnails:
            raise NotFoundError("this server runs with --thumbnails off and serves no frame images")
        jpeg = self.reader.frame_image(int(video_id), int(frame_index))
        if jpeg is not None:
            return jpeg
        record = self.reader.get_video(int(video_id))  # NotFoundError for an unknown video
        stored = self.reader.get_frames(record.video_id).frame_indices
        if int(frame_index) not in set(stored.tolist()):
            shown = ", ".join(str(i) for i in stored[:12]) + (" ..." if len(stored) > 12 else "")
            raise NotFoundError(f"video {video_id} has no stored frame {frame_index}; its stored frames are {shown}")
        raise NotFoundError(f"video {video_id} was ingested without thumbnails (frame {frame_index} has no image)")

    def list_videos(
        self, flt: VideoFilter | None = None, *, page_size: int = 100, page_token: str = ""
    ) -> tuple[list[VideoRecord], str, int]:
        """One page of videos in id order, the token of the next page ("" at the end), the total matching."""
        if not 1 <= page_size <= 10_000:
            raise InvalidRequestError(f"page size must be between 1 and 10000, not {page_size}")
        after = _decode_page_token(page_token)
        page = self.reader.list_videos(flt, limit=page_size + 1, after_id=after)
        more = len(page) > page_size
        page = page[:page_size]
        token = self.page_token_after(page[-1].video_id) if more and page else ""
        return page, token, self.reader.count_videos(flt)

    @staticmethod
    def page_token_after(video_id: int) -> str:
        """The token of the page that starts after `video_id` (lets the API cut a page short by bytes)."""
        return _encode_page_token(video_id)

    def delete_video(self, video_id: int) -> None:
        """Remove a video from catalog and indexes together."""
        self.store.delete_video(int(video_id))
        log.info("deleted video %d", video_id)

    def _records(self, video_ids: Sequence[int]) -> dict[int, VideoRecord]:
        if not video_ids:
            return {}
        found = self.reader.list_videos(VideoFilter(video_ids=tuple(int(v) for v in video_ids)), limit=len(video_ids))
        return {r.video_id: r for r in found}

    # ---- search ----------------------------------------------------------------------

    def search_by_text(
        self,
        text: str,
        *,
        k: int = 10,
        aggregation: str = "max",
        flt: VideoFilter | None = None,
        frames_per_video: int = 1,
        with_thumbnails: bool = False,
    ) -> list[SearchResult]:
        """Top-k videos for a text: by best frame ("max") or by the EchoCLIP binary score ("mean").

        `with_thumbnails`: each result carries its best frame's JPEG (when the server keeps them).
        """
        if not text or not text.strip():
            raise InvalidRequestError("search text is empty")
        too_long = self.model.count_tokens(text) - self.model.context_length
        if too_long > 0:
            raise InvalidRequestError(
                f"search text is {too_long} tokens longer than the model's context of {self.model.context_length} tokens; shorten it"
            )
        self._check_search_args(k, aggregation, frames_per_video)
        query = self._embed_query(text)
        results = self._search(query, k=k, aggregation=aggregation, flt=flt, frames_per_video=frames_per_video)
        return self._with_thumbnails(results) if with_thumbnails else results

    def search_by_video(
        self,
        video_id: int,
        *,
        k: int = 10,
        aggregation: str = "mean",
        flt: VideoFilter | None = None,
        frames_per_video: int = 1,
        with_thumbnails: bool = False,
    ) -> list[SearchResult]:
        """Videos most like a stored one (its normalised mean frame as the query), itself excluded."""
        self._check_search_args(k, aggregation, frames_per_video)
        frames = self.reader.get_frames(int(video_id))
        query = frames.embeddings.mean(axis=0)
        query = (query / max(float(np.linalg.norm(query)), 1e-12)).astype(np.float32)
        results = self._search(
            query, k=k, aggregation=aggregation, flt=flt, frames_per_video=frames_per_video, exclude=(int(video_id),)
        )
        return self._with_thumbnails(results) if with_thumbnails else results

    def _with_thumbnails(self, results: list[SearchResult]) -> list[SearchResult]:
        """The results with their best frame's JPEG attached (one catalog read for all of them)."""
        if not self.thumbnails or not results:
            return results
        best = [r.best_frames[0].frame_id for r in results if r.best_frames]
        jpegs = self.reader.thumbnails_for(best)
        return [
            dataclasses.replace(r, thumbnail=jpegs.get(r.best_frames[0].frame_id)) if r.best_frames else r
            for r in results
        ]

    def _search(
        self,
        query: np.ndarray,
        *,
        k: int,
        aggregation: str,
        flt: VideoFilter | None,
        frames_per_video: int,
        exclude: Sequence[int] = (),
    ) -> list[SearchResult]:
        cancellation.check()  # the query may have waited for the encoder: skip the search if nobody waits
        hits = self.store.search_videos(
            query, k, aggregation=aggregation, flt=flt, frames_per_video=frames_per_video, exclude=exclude
        )
        records = self._records([h.video_id for h in hits])
        # A video deleted between the search and the lookup is simply left out.
        return [SearchResult(records[h.video_id], float(h.score), h.best_frames) for h in hits if h.video_id in records]

    @staticmethod
    def _check_search_args(k: int, aggregation: str, frames_per_video: int) -> None:
        if not 1 <= k <= MAX_K:
            raise InvalidRequestError(f"k must be between 1 and {MAX_K}, not {k}")
        if aggregation not in AGGREGATIONS:
            raise InvalidRequestError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {aggregation!r}")
        if not 0 <= frames_per_video <= 64:
            raise InvalidRequestError(f"frames per video must be between 0 and 64, not {frames_per_video}")

    # ---- tasks -----------------------------------------------------------------------

    def list_tasks(self) -> list[Task]:
        """Every registered and stored task, sorted by name."""
        return sorted(self.registry.list() + self.stored_tasks.list(), key=lambda t: t.name)

    def skipped_plugins(self) -> list[PluginProblem]:
        """Plugins and plugin tasks skipped at start-up, with the reasons (clients see them, not only the log)."""
        return list(self.registry.skipped)

    def get_task(self, name: str) -> Task:
        """A registered or stored task by name (NotFoundError naming close matches)."""
        stored = self.stored_tasks.get(name)
        return stored if stored is not None else self.registry.get(name)

    def _check_task(self, task: Task) -> Task:
        return validate_task(task, count_tokens=self.model.count_tokens, context_length=self.model.context_length)

    def create_task(
        self,
        *,
        description: str = "",
        calibration: tuple[float, float] | None = None,
        replace: bool = False,
        **task_args: object,
    ) -> Task:
        """Save a custom task (custom_task's arguments) on the server as a stored task."""
        task = self.custom_task(**task_args)  # type: ignore[arg-type]
        task = dataclasses.replace(task, description=description, calibration=calibration)
        stored = self.stored_tasks.create(task, replace=replace)
        log.info("stored task %r (%s) saved", stored.name, stored.kind.value)
        return stored

    def delete_task(self, name: str) -> None:
        """Remove a stored task."""
        self.stored_tasks.delete(name)
        log.info("stored task %r deleted", name)

    def custom_task(
        self,
        *,
        name: str,
        kind: str,
        prompts: Sequence[str],
        values: object = None,
        labels: object = None,
        threshold: float | None = None,
    ) -> Task:
        """A task from a request, validated against this model's tokenizer."""
        kwargs: dict[str, object] = {}
        if values is not None:
            kwargs["values"] = values
        if labels is not None:
            kwargs["labels"] = labels
        return custom_task(
            name=name or "custom",
            kind=kind,
            prompts=prompts,
            threshold=threshold,
            count_tokens=self.model.count_tokens,
            context_length=self.model.context_length,
            max_candidates=self.limits.max_prompts_per_task,
            **kwargs,
        )

    def score_videos(
        self,
        task: Task,
        *,
        flt: VideoFilter | None = None,
        video_ids: Sequence[int] | None = None,
        top_k: int | None = None,
        batch_size: int = 1024,
        bottom_k: int | None = None,
    ) -> Iterator[list[VideoScore]]:
        """Score a task over a selection from stored embeddings only, batch by batch (see tasks/scoring_service.py).

        `top_k` / `bottom_k`: only the k highest / lowest (binary by score, regression and categorical by value).
        """
        return self.scorer.score_videos(
            task, flt=flt, video_ids=video_ids, top_k=top_k, bottom_k=bottom_k, batch_size=batch_size
        )

    # ---- export ----------------------------------------------------------------------

    def export_parquet(self, path: Path, flt: VideoFilter | None = None) -> int:
        """Write frame embeddings with their video metadata to a Parquet file; returns rows written."""
        with disk_errors(self.data_dir):
            rows = self.reader.export_parquet(Path(path), flt)
        log.info("exported %d frame rows to %s", rows, path)
        return rows


def _caller_gone() -> bool:
    """Whether the request this thread serves was cancelled or passed its deadline (see cancellation.py)."""
    try:
        cancellation.check()
    except RequestCancelledError:
        return True
    return False


def _encode_page_token(after_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after_id}).encode()).decode().rstrip("=")


MAX_PAGE_TOKEN_CHARS = 128  # tokens this server gives out are ~30 characters


def _decode_page_token(token: str) -> int | None:
    """The video id a page token continues after; strict: exactly {"after": int}, short, or INVALID_ARGUMENT."""
    if not token:
        return None
    try:
        if len(token) > MAX_PAGE_TOKEN_CHARS:
            raise ValueError
        padded = token + "=" * (-len(token) % 4)
        parsed = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(parsed, dict) or set(parsed) != {"after"}:
            raise ValueError
        after = parsed["after"]
        if type(after) is not int or not 0 <= after < 2**63:
            raise ValueError
        return after
    except (ValueError, TypeError, RecursionError, binascii.Error):
        raise InvalidRequestError("page token is not one this server gave out; start again without a token") from None


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
