"""The bulk-import use case: one Parquet shard from `bulk embed` into the store, in one transaction."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from echosearch.server.bulk.shards import read_shard
from echosearch.server.errors import TooLargeError
from echosearch.server.limits import Limits
from echosearch.server.model import EchoClipModel
from echosearch.server.storage.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportOutcome:
    """What importing one shard committed."""

    shard_name: str
    already_imported: bool
    videos_added: int
    videos_already_stored: int
    frames_added: int
    seconds: float


def previously_imported(store: Store, name: str, shard_sha256: str) -> ImportOutcome | None:
    """The outcome recorded when this shard (by content hash) was committed before, else None."""
    done = store.catalog.imported_shard(shard_sha256)
    return None if done is None else ImportOutcome(name, True, int(done[0]), int(done[1]), int(done[2]), 0.0)


def import_shard(
    store: Store,
    model: EchoClipModel,
    path: Path,
    *,
    name: str,
    shard_sha256: str,
    limits: Limits | None = None,
    thumbnails: bool = True,
) -> ImportOutcome:
    """Check a shard against the serving model, then commit its new videos and index them in bulk.

    The shard is read and checked before the Store's write lock is taken: other writers wait only for the commit.
    `thumbnails` False (a server with --thumbnails off) leaves the shard's thumbnail JPEGs out.
    """
    started = time.perf_counter()
    batch = read_shard(path, name, model_identity=model.identity, dim=model.embed_dim, thumbnails=thumbnails)
    if limits is not None:  # the caps an IngestVideo header meets, per video of the shard
        counts = batch.counts
        for i, metadata in enumerate(batch.metadata):
            label = f"shard {name} row {int(batch.offsets[i])} ({batch.source_name[i]})"
            limits.check_metadata(label, metadata)
            if counts[i] > limits.max_frames_per_video:
                raise TooLargeError(
                    f"{label}: {int(counts[i])} frames, over the server's --max-frames-per-video "
                    f"({limits.max_frames_per_video})"
                )
    done = store.import_batch(batch, shard_sha256=shard_sha256)
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
