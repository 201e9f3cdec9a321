"""The delete-many use case: DeleteVideos by ids, or by filter behind a dry run's confirmation token.

A filter can match more than its author thinks (a typo in a tag matches nothing; a missing one matches
everything). So a filter delete runs in two steps: a dry run counts the matching videos and returns a
token derived from exactly those ids; the delete recomputes the set and proceeds only when its token is
the same, so it deletes what was counted and nothing that arrived since.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np

from echosearch.server.errors import InvalidRequestError, PreconditionError
from echosearch.server.records import DeleteOutcome, VideoFilter
from echosearch.server.services.container import Services

log = logging.getLogger(__name__)

TOKEN_PREFIX = "del1-"


def confirm_token(video_ids: np.ndarray) -> str:
    """The token of a set of videos: a digest of its sorted ids (no secret; it names a set, it grants nothing)."""
    ids = np.sort(np.asarray(video_ids, dtype=np.int64))
    return TOKEN_PREFIX + hashlib.sha256(ids.tobytes()).hexdigest()[:24]


def delete_videos(
    services: Services,
    *,
    video_ids: Sequence[int] = (),
    flt: VideoFilter | None = None,
    dry_run: bool = False,
    token: str = "",
) -> DeleteOutcome:
    """Delete the given videos, or those matching `flt` (see the module docstring), in one transaction."""
    if bool(video_ids) == (flt is not None):
        raise InvalidRequestError("give video ids or a filter to delete by, not both and not neither")
    services.check_filter(flt, video_ids)
    if video_ids:
        return _by_ids(services, list(dict.fromkeys(int(v) for v in video_ids)), dry_run)
    matched = services.reader.select_video_ids(flt)
    expected = confirm_token(matched)
    if dry_run:
        return DeleteOutcome(matched=len(matched), deleted=0, confirm_token=expected)
    if not token:
        raise PreconditionError(
            f"a delete by filter needs the confirm_token of a dry run ({len(matched)} videos match now); "
            "run it with dry_run first"
        )
    if token != expected:
        raise PreconditionError(
            f"the videos matching the filter changed since the dry run ({len(matched)} match now); "
            "run the dry run again and confirm its count"
        )
    deleted = services.store.delete_videos(matched.tolist()) if len(matched) else 0
    log.info("deleted %d videos matching a filter", deleted)
    return DeleteOutcome(matched=len(matched), deleted=deleted)


def _by_ids(services: Services, ids: list[int], dry_run: bool) -> DeleteOutcome:
    stored = services.reader.select_video_ids(VideoFilter(video_ids=tuple(ids)))
    present = set(stored.tolist())
    missing = tuple(v for v in ids if v not in present)
    if dry_run or not present:
        return DeleteOutcome(matched=len(present), deleted=0, not_found=missing)
    deleted = services.store.delete_videos(sorted(present))
    log.info("deleted %d videos by id (%d not stored)", deleted, len(missing))
    return DeleteOutcome(matched=len(present), deleted=deleted, not_found=missing)
