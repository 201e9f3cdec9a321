"""Every bound on what one request can make the server hold, with its default: one owner for the numbers.

Each field is one `echosearch serve` flag, declared here with its help (docs/api.md, "Limits"); the checks
that use them run where the input enters (the upload protocol, the services, decoding). Light: the
client CLI builds the flags from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, ClassVar

from echosearch.server.errors import InvalidRequestError
from echosearch.server.options import check_ranges, option

if TYPE_CHECKING:
    from echosearch.server.records import Sampling, TaskRequest, VideoMetadata


@dataclass(frozen=True)
class Limits:
    """Per-request resource caps; a request over one gets INVALID_ARGUMENT or RESOURCE_EXHAUSTED naming the cap."""

    TITLE: ClassVar[str] = "per-request limits (docs/api.md, Limits)"

    max_upload_bytes: int = option(
        2 << 30,
        flag="--max-upload-mb",
        unit=1 << 20,
        minimum=1,
        metavar="N",
        help="largest accepted upload in MiB (default {default})",
    )
    # no message for this long: the upload is cancelled and its worker freed
    upload_idle_timeout_s: float = option(
        30.0,
        flag="--upload-idle-timeout",
        above=0,
        metavar="S",
        help="seconds an upload may send nothing (default {default})",
    )
    # 0 = half of --workers, so reads always keep worker threads of their own
    max_concurrent_uploads: int = option(
        0,
        flag="--max-concurrent-uploads",
        minimum=0,
        metavar="N",
        help="uploads received at once (default: half of --workers)",
    )
    min_chunk_bytes: int = option(
        16 << 10,
        flag="--min-chunk-bytes",
        minimum=1,
        metavar="N",
        help="smallest upload chunk but the last (default {default})",
    )
    max_frame_pixels: int = option(
        4096 * 4096,
        flag="--max-frame-pixels",
        minimum=1,
        metavar="N",
        help="largest frame, width x height (default {default} = 4096x4096)",
    )
    max_frames_per_video: int = option(
        512, flag="--max-frames-per-video", minimum=1, metavar="N", help="frames embedded per video (default {default})"
    )
    max_metadata_key_bytes: int = option(
        256, flag="--max-metadata-key-bytes", minimum=1, metavar="N", help="longest tag key (default {default})"
    )
    max_metadata_value_bytes: int = option(
        1024,
        flag="--max-metadata-value-bytes",
        minimum=1,
        metavar="N",
        help="longest metadata value (default {default})",
    )
    max_tags_per_video: int = option(
        256, flag="--max-tags-per-video", minimum=1, metavar="N", help="tags per video (default {default})"
    )
    max_metadata_bytes: int = option(  # all keys and values of one video together
        64 << 10,
        flag="--max-metadata-bytes",
        minimum=1,
        metavar="N",
        help="all metadata of one video (default {default})",
    )
    max_filter_terms: int = option(  # values in one filter, all fields together
        1000, flag="--max-filter-terms", minimum=1, metavar="N", help="values in one filter (default {default})"
    )
    max_prompts_per_task: int = option(
        2048, flag="--max-prompts-per-task", minimum=1, metavar="N", help="prompts of one task (default {default})"
    )
    # tasks: every stored task is in every ListTasks page set and is re-read at each start
    max_task_description_bytes: int = option(
        4096,
        flag="--max-task-description-bytes",
        minimum=1,
        metavar="N",
        help="longest task description (default {default})",
    )
    max_prompt_bytes: int = option(
        1024, flag="--max-prompt-bytes", minimum=1, metavar="N", help="longest task prompt (default {default})"
    )
    max_task_categories: int = option(
        256,
        flag="--max-task-categories",
        minimum=1,
        metavar="N",
        help="categories (named values) of one task (default {default})",
    )
    max_stored_tasks: int = option(
        1000, flag="--max-stored-tasks", minimum=1, metavar="N", help="stored tasks on the server (default {default})"
    )
    # bulk import: checked from a shard's Parquet footer before a row is decompressed
    max_shard_rows: int = option(
        2_000_000, flag="--max-shard-rows", minimum=1, metavar="N", help="frame rows of one shard (default {default})"
    )
    max_shard_bytes: int = option(  # a default bulk-embed shard (250,000 frames with thumbnails) is ~1.3 GiB
        2 << 30,
        flag="--max-shard-mb",
        unit=1 << 20,
        minimum=1,
        metavar="N",
        help="MiB one shard's rows may decompress to (default {default})",
    )
    # a page of videos stays under the 4 MiB a gRPC client accepts by default
    max_page_bytes: int = option(
        3 << 20,
        flag="--max-page-bytes",
        minimum=1,
        metavar="N",
        help="bytes of one page or search reply (default {default})",
    )

    def with_overrides(self, **values: object) -> Limits:
        """A copy with the given fields replaced; None values keep the default."""
        given = {k: v for k, v in values.items() if v is not None}
        unknown = set(given) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown limits: {', '.join(sorted(unknown))}")
        return replace(self, **given)  # type: ignore[arg-type]

    def validate(self) -> None:
        """ValueError naming the flag of a cap that is out of range (every cap positive; 0 uploads = derived)."""
        check_ranges(self)

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

    def check_task(self, request: TaskRequest, description: str = "") -> None:
        """InvalidRequestError naming the cap when a task's description, a prompt or its categories are too big.

        Checked before the task is built, so a task of a million labels costs nothing to refuse.
        """
        size = len(description.encode())
        if size > self.max_task_description_bytes:
            raise InvalidRequestError(
                f"the task description is {size} bytes, over the server's limit of "
                f"{self.max_task_description_bytes} (--max-task-description-bytes)"
            )
        for i, prompt in enumerate(request.prompts):
            size = len(prompt.encode())
            if size > self.max_prompt_bytes:
                raise InvalidRequestError(
                    f"prompt {i + 1} is {size} bytes, over the server's limit of {self.max_prompt_bytes} "
                    "bytes per prompt (--max-prompt-bytes)"
                )
        categories = max(len(request.labels or {}), len(set(request.values or ())))
        if categories > self.max_task_categories:
            raise InvalidRequestError(
                f"the task names {categories} categories, over the server's limit of {self.max_task_categories} "
                "(--max-task-categories)"
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
