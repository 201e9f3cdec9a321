"""Every bound on what one request can make the server hold, with its default: one owner for the numbers.

Each field is one `echosearch serve` flag (docs/api.md, "Limits"); the checks that use them
live where the input enters (upload receiving, metadata, filters, tasks, decoding).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from echosearch.server.errors import InvalidRequestError
from echosearch.server.media.frame_limits import DEFAULT_MAX_FRAME_PIXELS

if TYPE_CHECKING:
    from echosearch.server.media.video import Sampling
    from echosearch.server.records import VideoMetadata


@dataclass(frozen=True)
class Limits:
    """Per-request resource caps; a request over one gets INVALID_ARGUMENT or RESOURCE_EXHAUSTED naming the cap."""

    max_upload_bytes: int = 2 << 30
    upload_idle_timeout_s: float = 30.0  # no message for this long: the upload is cancelled and its worker freed
    max_concurrent_uploads: int = 0  # 0 = half of --workers, so reads always keep worker threads of their own
    min_chunk_bytes: int = 16 << 10  # every upload chunk but the last is at least this big
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    max_frames_per_video: int = 512
    max_metadata_key_bytes: int = 256
    max_metadata_value_bytes: int = 1024
    max_tags_per_video: int = 256
    max_metadata_bytes: int = 64 << 10  # all keys and values of one video together
    max_filter_terms: int = 1000  # values in one filter, all fields together
    max_prompts_per_task: int = 2048
    max_page_bytes: int = 3 << 20  # a page of videos stays under the 4 MiB a gRPC client accepts by default

    def with_overrides(self, **values: object) -> Limits:
        """A copy with the given fields replaced; None values keep the default."""
        given = {k: v for k, v in values.items() if v is not None}
        unknown = set(given) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown limits: {', '.join(sorted(unknown))}")
        return replace(self, **given)  # type: ignore[arg-type]

    def validate(self) -> None:
        """ValueError naming a cap that is not positive."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0 or (value == 0 and f.name != "max_concurrent_uploads"):
                raise ValueError(f"limit {f.name} must be positive, not {value}")

    def upload_slots(self, workers: int) -> int:
        """Concurrent uploads allowed with `workers` RPC threads: always fewer than the threads."""
        if self.max_concurrent_uploads > 0:
            return max(1, min(self.max_concurrent_uploads, workers - 1))
        return max(1, workers // 2)

    def check_metadata(self, source_name: str, metadata: VideoMetadata) -> None:
        """InvalidRequestError naming the field and the cap when what a video stores besides its frames is too big."""
        values = {"source_name": source_name, "study_id": metadata.study_id, "patient_id": metadata.patient_id}
        values["view"] = metadata.view
        if len(metadata.tags) > self.max_tags_per_video:
            raise InvalidRequestError(
                f"{len(metadata.tags)} metadata tags are over the server's limit of {self.max_tags_per_video} "
                "tags per video (--max-tags-per-video)"
            )
        total = 0
        for key, value in metadata.tags.items():
            key_bytes = len(key.encode())
            if key_bytes > self.max_metadata_key_bytes:
                raise InvalidRequestError(
                    f"metadata tag key {_preview(key)} is {key_bytes} bytes, over the server's limit of "
                    f"{self.max_metadata_key_bytes} bytes per key (--max-metadata-key-bytes)"
                )
            total += key_bytes
            values[f"tag {_preview(key)}"] = value
        for name, value in values.items():
            size = len(value.encode()) if value else 0
            if size > self.max_metadata_value_bytes:
                raise InvalidRequestError(
                    f"metadata {name} is {size} bytes, over the server's limit of {self.max_metadata_value_bytes} "
                    "bytes per value (--max-metadata-value-bytes)"
                )
            total += size
        if total > self.max_metadata_bytes:
            raise InvalidRequestError(
                f"the video's metadata is {total} bytes in all, over the server's limit of {self.max_metadata_bytes} "
                "bytes per video (--max-metadata-bytes)"
            )

    def sampling_within(self, sampling: Sampling) -> Sampling:
        """The sampling with its frame cap lowered to --max-frames-per-video; INVALID_ARGUMENT for a count over it."""
        cap = self.max_frames_per_video
        if sampling.mode == "count" and sampling.count > cap:
            raise InvalidRequestError(
                f"sampling 'count' asks for {sampling.count} frames, over the server's limit of {cap} frames per "
                "video (--max-frames-per-video)"
            )
        sampling.validate()
        if sampling.max_frames > cap:
            return replace(sampling, max_frames=cap)
        return sampling

    def check_filter_terms(self, terms: int) -> None:
        """InvalidRequestError when a filter lists more values than --max-filter-terms."""
        if terms > self.max_filter_terms:
            raise InvalidRequestError(
                f"the filter lists {terms} values, over the server's limit of {self.max_filter_terms} "
                "(--max-filter-terms); filter on a coarser field, or split the request"
            )


def _preview(text: str, limit: int = 40) -> str:
    """A value short enough to quote in a message."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
