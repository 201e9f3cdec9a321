"""The stored-video use cases: get, list (paged), frame image, metadata update, delete, export."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from echosearch.server import cancellation
from echosearch.server.errors import InvalidRequestError, NotFoundError
from echosearch.server.records import (
    METADATA_FIELDS,
    TAG_PREFIX,
    ExportChunk,
    FrameEmbeddings,
    MetadataChange,
    VideoFilter,
    VideoMetadata,
    VideoRecord,
)
from echosearch.server.services.container import Services
from echosearch.server.storage.disk_errors import disk_errors

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 10_000
MAX_PAGE_TOKEN_CHARS = 128  # tokens this server gives out are ~30 characters
EXPORT_CHUNK_BYTES = 1 << 20


def get_video(
    services: Services, video_id: int, *, with_embeddings: bool = False
) -> tuple[VideoRecord, FrameEmbeddings | None]:
    """A stored video's record, and its frames' embeddings when asked."""
    if with_embeddings:  # one snapshot: a delete racing this read is NOT_FOUND, never a video without frames
        return services.reader.get_video_and_frames(int(video_id))
    return services.reader.get_video(int(video_id)), None


def records_by_id(services: Services, video_ids: Sequence[int]) -> dict[int, VideoRecord]:
    """The stored records of these videos (absent ones left out), in one catalog read."""
    if not video_ids:
        return {}
    found = services.reader.list_videos(VideoFilter(video_ids=tuple(int(v) for v in video_ids)), limit=len(video_ids))
    return {r.video_id: r for r in found}


def frame_image(services: Services, video_id: int, frame_index: int) -> bytes:
    """The JPEG thumbnail of one stored frame; NotFoundError saying why when there is none."""
    if not services.config.media.thumbnails:
        raise NotFoundError("this server runs with --thumbnails off and serves no frame images")
    reader = services.reader
    jpeg = reader.frame_image(int(video_id), int(frame_index))
    if jpeg is not None:
        return jpeg
    record = reader.get_video(int(video_id))  # NotFoundError for an unknown video
    stored = reader.get_frames(record.video_id).frame_indices
    if int(frame_index) not in set(stored.tolist()):
        shown = ", ".join(str(i) for i in stored[:12]) + (" ..." if len(stored) > 12 else "")
        raise NotFoundError(f"video {video_id} has no stored frame {frame_index}; its stored frames are {shown}")
    raise NotFoundError(f"video {video_id} was ingested without thumbnails (frame {frame_index} has no image)")


# ---- listing --------------------------------------------------------------------------------


def list_videos(
    services: Services, flt: VideoFilter | None = None, *, page_size: int = 100, page_token: str = ""
) -> tuple[list[VideoRecord], str, int]:
    """One page of videos in id order, the token of the next page ("" at the end), the total matching."""
    services.check_filter(flt)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidRequestError(f"page size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
    after = _decode_page_token(page_token)
    page = services.reader.list_videos(flt, limit=page_size + 1, after_id=after)
    more = len(page) > page_size
    page = page[:page_size]
    token = page_token_after(page[-1].video_id) if more and page else ""
    return page, token, services.reader.count_videos(flt)


def page_token_after(video_id: int) -> str:
    """The token of the page that starts after `video_id` (lets the API cut a page short by bytes)."""
    return base64.urlsafe_b64encode(json.dumps({"after": int(video_id)}).encode()).decode().rstrip("=")


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


# ---- changes --------------------------------------------------------------------------------


def update_video_metadata(
    services: Services, video_id: int, metadata: VideoMetadata, remove: Sequence[str] = ()
) -> tuple[VideoRecord, bool]:
    """Set fields and tags, clear fields or remove tags (`remove`: field names, tag.KEY or KEY); logged."""
    return apply_metadata_change(services, int(video_id), metadata_change(metadata, remove))


def metadata_change(set_: VideoMetadata, remove: Sequence[str]) -> MetadataChange:
    """Validate a request: `remove` names fields, `tag.KEY` or a bare tag KEY; none may also be set."""
    clear: list[str] = []
    drop: list[str] = []
    for name in remove:
        name = name.strip()
        if name in METADATA_FIELDS:
            clear.append(name)
        elif name.startswith(TAG_PREFIX) and len(name) > len(TAG_PREFIX):
            drop.append(name[len(TAG_PREFIX) :])
        elif name:
            drop.append(name)
        else:
            raise InvalidRequestError("an empty name in remove; give a field name or a tag key")
    both = [f for f in clear if getattr(set_, f) is not None] + [k for k in drop if k in set_.tags]
    if both:
        raise InvalidRequestError(f"{', '.join(both)}: both set and removed in one request; do one or the other")
    change = MetadataChange(set_, tuple(dict.fromkeys(clear)), tuple(dict.fromkeys(drop)))
    if change.is_empty():
        raise InvalidRequestError("nothing to change: set a field or tag, or name one to remove")
    return change


def apply_metadata_change(services: Services, video_id: int, change: MetadataChange) -> tuple[VideoRecord, bool]:
    """Write a checked change; whether anything changed.

    The caps of an ingest's metadata hold for the video's metadata after the change (tags count and bytes
    per video, not per request), checked inside the write's transaction so concurrent updates cannot add up.
    """
    name = f"video {video_id}"
    services.limits.check_metadata(name, change.set)  # refused before a transaction when the request alone is over
    record, changed = services.store.update_metadata(
        int(video_id), change, check=lambda after: services.limits.check_metadata(name, after)
    )
    if changed:
        log.info("updated metadata of video %d", video_id)
    return record, changed


def delete_video(services: Services, video_id: int) -> None:
    """Remove a video from catalog and indexes together."""
    services.store.delete_video(int(video_id))
    log.info("deleted video %d", video_id)


# ---- export ---------------------------------------------------------------------------------


def export_parquet(services: Services, path: Path, flt: VideoFilter | None = None) -> int:
    """Write frame embeddings with their video metadata to a Parquet file; returns rows written."""
    services.check_filter(flt)
    with disk_errors(services.data_dir):
        rows = services.reader.export_parquet(Path(path), flt)
    log.info("exported %d frame rows to %s", rows, path)
    return rows


def export_chunks(
    services: Services, flt: VideoFilter | None = None, chunk_bytes: int = EXPORT_CHUNK_BYTES
) -> Iterator[ExportChunk]:
    """The Parquet export as it streams: at least one chunk; the first says the rows and the file's size.

    The file can be gigabytes: it is spooled in the data directory (sized for it), not in memory or /tmp,
    and removed when the stream ends or is abandoned. A cancelled call stops between chunks.
    """
    services.check_filter(flt)
    with tempfile.TemporaryDirectory(dir=services.data_dir, prefix=".export-") as tmp:
        path = Path(tmp) / "export.parquet"
        rows = export_parquet(services, path, flt)
        total = path.stat().st_size
        with path.open("rb") as f:
            first = True
            while True:
                cancellation.check()
                chunk = f.read(chunk_bytes)
                if not chunk and not first:
                    return
                yield ExportChunk(chunk, rows=rows, total_bytes=total) if first else ExportChunk(chunk)
                if not chunk:
                    return
                first = False
