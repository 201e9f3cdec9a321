"""The task use cases: list, get, a task from a request, stored tasks (create, delete), and scoring."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence

from echosearch.server.errors import InvalidRequestError
from echosearch.server.records import PluginProblem, TaskRequest, VideoFilter, VideoScore
from echosearch.server.services.container import Services
from echosearch.server.tasks.scoring_service import MAX_K, MAX_SCORE_BATCH
from echosearch.tasks.spec import Task
from echosearch.tasks.spec import custom_task as build_custom_task

log = logging.getLogger(__name__)


def list_tasks(services: Services) -> list[Task]:
    """Every registered and stored task, sorted by name."""
    return sorted(services.registry.list() + services.stored_tasks.list(), key=lambda t: t.name)


MAX_TASKS_PER_PAGE = 1000


def list_tasks_page(services: Services, *, after: str = "", page_size: int = 0) -> tuple[list[Task], bool]:
    """The tasks sorted by name that come after `after`, at most `page_size` (0: up to MAX_TASKS_PER_PAGE),
    and whether more follow."""
    if page_size < 0:
        raise InvalidRequestError(f"page size must be 0 (the server's choice) or positive, not {page_size}")
    size = min(page_size or MAX_TASKS_PER_PAGE, MAX_TASKS_PER_PAGE)
    rest = [t for t in list_tasks(services) if t.name > after]
    return rest[:size], len(rest) > size


def skipped_plugins(services: Services) -> list[PluginProblem]:
    """Plugins and plugin tasks skipped at start-up, with the reasons (clients see them, not only the log)."""
    return list(services.registry.skipped)


def get_task(services: Services, name: str) -> Task:
    """A registered or stored task by name (NotFoundError naming close matches)."""
    stored = services.stored_tasks.get(name)
    return stored if stored is not None else services.registry.get(name)


def custom_task(services: Services, request: TaskRequest) -> Task:
    """A task from a request, validated against the task caps and this model's tokenizer."""
    services.limits.check_task(request)
    return build_custom_task(
        name=request.name or "custom",
        kind=request.kind,
        prompts=request.prompts,
        values=request.values,
        labels=request.labels,
        threshold=request.threshold,
        count_tokens=services.model.count_tokens,
        context_length=services.model.context_length,
        max_candidates=services.limits.max_prompts_per_task,
    )


def create_task(
    services: Services,
    request: TaskRequest,
    *,
    description: str = "",
    calibration: tuple[float, float] | None = None,
    replace: bool = False,
) -> Task:
    """Save a task from a request on the server as a stored task (survives restarts, scores like a plugin's)."""
    services.limits.check_task(request, description)
    task = dataclasses.replace(custom_task(services, request), description=description, calibration=calibration)
    stored = services.stored_tasks.create(task, replace=replace)
    log.info("stored task %r (%s) saved", stored.name, stored.kind.value)
    return stored


def delete_task(services: Services, name: str) -> None:
    """Remove a stored task, and its cached prompt embeddings that no other task uses."""
    task = services.stored_tasks.delete(name)
    still_used = {text for other in list_tasks(services) for text in other.candidate_texts()}
    orphaned = [text for text in task.candidate_texts() if text not in still_used]
    removed = services.store.delete_prompt_embeddings(services.model.identity, orphaned)
    services.prompts.forget(orphaned)
    log.info("stored task %r deleted (%d cached prompt embedding(s) removed)", name, removed)


def score_videos(
    services: Services,
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
    check_score_args(services, flt, video_ids, top_k=top_k, bottom_k=bottom_k, batch_size=batch_size)
    return services.scorer.score_videos(
        task, flt=flt, video_ids=video_ids, top_k=top_k, bottom_k=bottom_k, batch_size=batch_size
    )


def check_score_args(
    services: Services,
    flt: VideoFilter | None,
    video_ids: Sequence[int] | None,
    *,
    top_k: int | None,
    bottom_k: int | None,
    batch_size: int,
) -> None:
    """A score request's selection and sizes, checked once (InvalidRequestError saying what to change)."""
    if not 1 <= batch_size <= MAX_SCORE_BATCH:
        raise InvalidRequestError(f"batch size must be between 1 and {MAX_SCORE_BATCH}, not {batch_size}")
    if top_k is not None and bottom_k is not None:
        raise InvalidRequestError("ask for top k or bottom k, not both")
    k, which = (bottom_k, "bottom") if bottom_k is not None else (top_k, "top")
    if k is not None and not 1 <= k <= MAX_K:
        raise InvalidRequestError(f"{which} k must be between 1 and {MAX_K}, not {k}")
    if video_ids is not None and len(video_ids) == 0:
        raise InvalidRequestError("the list of video ids is empty; leave it out to select every video")
    services.check_filter(flt, video_ids or ())
