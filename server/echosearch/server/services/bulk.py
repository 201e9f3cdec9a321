"""The bulk-import use case (ImportEmbeddings): one `bulk embed` Parquet shard into the store, in one transaction.

Idempotent by the shard file's SHA-256: a shard committed before is acknowledged from its header alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from echosearch.server.bulk.shards import read_shard
from echosearch.server.cpu_priority import run_in_background
from echosearch.server.errors import TooLargeError
from echosearch.server.records import ImportOutcome
from echosearch.server.services.container import Services
from echosearch.server.storage.catalog.video_batch import VideoBatch

log = logging.getLogger(__name__)


def imported_shard(services: Services, name: str, shard_sha256: str) -> ImportOutcome | None:
    """The outcome recorded when a shard with this content hash was committed before, else None."""
    done = services.reader.imported_shard(shard_sha256.strip().lower())
    return None if done is None else ImportOutcome(name, True, int(done[0]), int(done[1]), int(done[2]), 0.0)


def import_shard(services: Services, source: bytes | Path, *, name: str, shard_sha256: str) -> ImportOutcome:
    """Check a shard against the serving model and the server's limits, then commit its new videos and index them.

    The shard is read and checked before the Store's write lock is taken: other writers wait only for the
    commit. A server with --thumbnails off leaves the shard's thumbnail JPEGs out. All of it runs at a lower
    CPU priority (cpu_priority.py), so other clients' searches keep the cores.
    """
    return run_in_background(lambda: _import(services, source, name=name, shard_sha256=shard_sha256))


def _import(services: Services, source: bytes | Path, *, name: str, shard_sha256: str) -> ImportOutcome:
    started = time.perf_counter()
    if isinstance(source, (bytes, bytearray, memoryview)):
        with _spooled(services, bytes(source)) as path:  # DuckDB reads Parquet from a file
            batch = _read(services, path, name)
    else:
        batch = _read(services, Path(source), name)
    _check_rows(services, batch, name)
    done = services.store.import_batch(batch, shard_sha256=shard_sha256.strip().lower())
    seconds = time.perf_counter() - started
    added = len(done.video_ids)
    log.info(
        "imported shard %s: %d videos added (%d already stored), %d frames in %.2fs",
        name,
        added,
        len(batch.sha256) - added,
        done.frames_added,
        seconds,
    )
    return ImportOutcome(name, False, added, len(batch.sha256) - added, done.frames_added, seconds)


def _read(services: Services, path: Path, name: str) -> VideoBatch:
    model, limits = services.model, services.limits
    return read_shard(
        path,
        name,
        model_identity=model.identity,
        dim=model.embed_dim,
        thumbnails=services.config.media.thumbnails,
        max_rows=limits.max_shard_rows,
        max_bytes=limits.max_shard_bytes,
    )


def _check_rows(services: Services, batch: VideoBatch, name: str) -> None:
    """The caps an IngestVideo header meets, per video of the shard."""
    limits = services.limits
    counts = batch.counts
    for i, metadata in enumerate(batch.metadata):
        label = f"shard {name} row {int(batch.offsets[i])} ({batch.source_name[i]})"
        limits.check_metadata(label, metadata)
        if counts[i] > limits.max_frames_per_video:
            raise TooLargeError(
                f"{label}: {int(counts[i])} frames, over the server's --max-frames-per-video "
                f"({limits.max_frames_per_video})"
            )


@contextmanager
def _spooled(services: Services, data: bytes) -> Iterator[Path]:
    """A shard received in memory, as a spool file for the block (DuckDB reads Parquet from files)."""
    spool = services.spool
    with spool.writing(), spool.new_file("shard-") as f:
        f.write(data)
    try:
        yield Path(f.name)
    finally:
        Path(f.name).unlink(missing_ok=True)
