"""Services: what the use cases run on — model, store, encoder, decode pool, tasks — built from one ServerConfig.

Thread-safety: gRPC calls arrive on many threads. Decoding runs in worker processes (media/decode_pool.py:
FFmpeg outside the server, a time limit per video); the batching encoder (encoder.py) owns the model in one
worker thread and encodes the frames of concurrent ingests in shared batches, texts first. The services hold
no write lock: the Store is the only write path and owns its locking, so a search never waits on a decode or
an encode. Reads go through the Store's read-only catalog view (`reader`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from echosearch.server.config import ServerConfig
from echosearch.server.encoder import BatchingEncoder
from echosearch.server.errors import InvalidRequestError, ModelMismatchError
from echosearch.server.limits import Limits
from echosearch.server.lru import LRUCache
from echosearch.server.media.decode_pool import DecodePool
from echosearch.server.media.dicom.phi import PhiPolicy, policy_for_store
from echosearch.server.media.options import DICOM_MASKS
from echosearch.server.model import EchoClipModel, load_model
from echosearch.server.records import VideoFilter
from echosearch.server.services.spool import UploadSpool
from echosearch.server.services.warmup import WarmUp
from echosearch.server.storage.filters import filter_terms
from echosearch.server.storage.reader import CatalogReader
from echosearch.server.storage.store import Store
from echosearch.server.tasks.prompt_cache import PromptEmbeddingCache
from echosearch.server.tasks.registry import TaskRegistry, load_registry
from echosearch.server.tasks.scoring_service import TaskScorer
from echosearch.server.tasks.stored import StoredTasks

log = logging.getLogger(__name__)

QUERY_CACHE_SIZE = 1024  # search texts whose embeddings are kept in memory (searches repeat)


@dataclass(eq=False)
class Services:
    """The parts one server runs on; `close()` stops them in order. Build one with `open_services`."""

    config: ServerConfig
    model: EchoClipModel
    store: Store
    encoder: BatchingEncoder
    decode_pool: DecodePool
    registry: TaskRegistry
    stored_tasks: StoredTasks
    prompts: PromptEmbeddingCache
    scorer: TaskScorer
    phi_policy: PhiPolicy  # DICOM PatientID: hash (per-store key) | keep | drop
    spool: UploadSpool
    query_cache: LRUCache[str, np.ndarray] = field(default_factory=lambda: LRUCache(QUERY_CACHE_SIZE))
    warm_up: WarmUp | None = None  # the background prompt warm-up (None: --warm-up off)
    backup_running: threading.Lock = field(default_factory=threading.Lock)  # one online backup at a time

    @property
    def data_dir(self) -> Path:
        return self.store.data_dir

    @property
    def limits(self) -> Limits:
        return self.config.limits

    @property
    def reader(self) -> CatalogReader:
        """The read-only catalog view every use case reads through."""
        return self.store.reader

    def check_filter(self, flt: VideoFilter | None, video_ids: Sequence[int] = ()) -> None:
        """InvalidRequestError when a selection lists more values than --max-filter-terms."""
        self.limits.check_filter_terms(len(video_ids))
        self.limits.check_filter_terms(filter_terms(flt))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts through the batching encoder (they go ahead of queued frames)."""
        return self.encoder.encode_texts(texts)

    def close(self) -> None:
        """Stop the prompt warm-up, the decode workers and the encoder, save the index and close the catalog; safe
        to call twice."""
        if self.warm_up is not None:
            self.warm_up.stop()
        self.decode_pool.close()
        self.encoder.close()
        self.store.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_services(
    config: ServerConfig, *, model: EchoClipModel | None = None, decode_pool: DecodePool | None = None
) -> Services:
    """Load the model (unless given), open the store in `config.data_dir`, start the encoder and decode workers.

    ModelMismatchError when the store holds another model's embeddings. `decode_pool`: a pool the caller
    made (tests inject one with hooks); it is closed with the services.
    """
    data_dir = Path(config.data_dir)
    media = config.media
    if media.dicom_mask not in DICOM_MASKS:
        raise InvalidRequestError(f"--dicom-mask must be one of {', '.join(DICOM_MASKS)}, not {media.dicom_mask!r}")
    if model is None:  # first: a start that cannot load its model leaves no data directory behind
        model = load_model(config.model.spec, device=config.model.device, precision=config.model.precision)
    data_dir.mkdir(parents=True, exist_ok=True)
    phi_policy = policy_for_store(media.phi, data_dir)
    store = _open_store(config, data_dir, model)
    encoder: BatchingEncoder | None = None
    try:
        # Plugin prompts are checked against this model's context, the same rule as for custom tasks.
        registry = load_registry(count_tokens=model.count_tokens, context_length=model.context_length)
        stored_tasks = StoredTasks(
            store,
            registry,
            count_tokens=model.count_tokens,
            context_length=model.context_length,
            max_stored=config.limits.max_stored_tasks,
        )
        enc = config.encoder
        encoder = BatchingEncoder(
            model, batch_frames=enc.batch_frames, batch_wait_ms=enc.batch_wait_ms, compile=enc.compile
        )
        if decode_pool is None:
            decode_pool = DecodePool(media.decode_workers, time_limit_s=media.decode_timeout_s)
    except BaseException:  # what was started stops again: no worker thread or open catalog is left behind
        if encoder is not None:
            encoder.close()
        store.close()
        raise
    prompts = PromptEmbeddingCache(encoder.encode_texts, model.identity, store)
    services = Services(
        config=config,
        model=model,
        store=store,
        encoder=encoder,
        decode_pool=decode_pool,
        registry=registry,
        stored_tasks=stored_tasks,
        prompts=prompts,
        scorer=TaskScorer(store, prompts),
        phi_policy=phi_policy,
        spool=UploadSpool(data_dir),
    )
    if not media.thumbnails:
        # a row count, not their bytes: summing JPEG sizes would read every one at each start
        kept = store.reader.thumbnail_count()
        if kept:  # --thumbnails off stops new ones; the ones stored before stay until purged
            log.warning(
                "--thumbnails off, but the store holds %d thumbnails from before; `echosearch check --data %s "
                "--purge-thumbnails` (server stopped) removes them",
                kept,
                data_dir,
            )
    if config.model.warm_up:
        services.warm_up = WarmUp(registry.list() + stored_tasks.list(), prompts.embed).start()
    log.info(
        "services ready: model %s on %s, %d videos / %d frames, index %s%s",
        model.identity,
        model.device,
        store.reader.count_videos(),
        store.reader.count_frames(),
        store.index_factory,
        " (GPU)" if store.on_gpu else "",
    )
    return services


def _open_store(config: ServerConfig, data_dir: Path, model: EchoClipModel) -> Store:
    """The store over `data_dir`, refused (and closed) when it holds another model's embeddings."""
    opts = config.storage
    store = Store(
        data_dir,
        index_factory=opts.index_factory,
        # DuckDB's default (80 % of RAM) let its cache of blocks read grow with the archive: ~2.7 GiB of RSS
        # per million frames after a full scan (bench/archive.py); scans re-read the page cache instead.
        memory_limit=f"{opts.catalog_memory_gb:g}GB",
        search_device=opts.search_device,
        gpu_memory_gb=opts.gpu_memory_gb,
        matrix_precision=opts.search_precision,
    )
    bound = store.reader.model_identity
    if bound is not None and bound != model.identity:
        store.close()
        raise ModelMismatchError(
            f"the store in {data_dir} holds embeddings of model {bound!r}, but this server "
            f"was started with {model.identity!r}; start it with that model's --model spec, "
            "or use another --data directory for the new model"
        )
    return store
