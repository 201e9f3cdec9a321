"""The Client's task calls: ListTasks (following its pages), ScoreVideos, CreateTask and DeleteTask."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from echosearch.client.score_stream import ScoreStream
from echosearch.client.types import CustomTask, PluginProblem, Task, VideoFilter
from echosearch.client.types.videos import filter_proto
from echosearch.v1 import echosearch_pb2 as pb
from echosearch.v1 import echosearch_pb2_grpc as pb_grpc

T = TypeVar("T")


class TaskCalls:
    """Mixed into `Client`, which provides the channel, the call metadata and the retry rule."""

    _stub: pb_grpc.EchoSearchServiceStub
    _metadata: tuple[tuple[str, str], ...]
    long_timeout: float | None
    retries: int

    def _unary(self, method: Callable[..., T], request: Any, *, idempotent: bool = True) -> T:
        raise NotImplementedError  # Client's

    # ---- tasks ------------------------------------------------------------------------

    def list_tasks(self) -> list[Task]:
        """Every registered task, sorted by name."""
        return self.list_tasks_and_problems()[0]

    def list_tasks_and_problems(self) -> tuple[list[Task], list[PluginProblem]]:
        """Every registered task, and the plugins and tasks the server skipped at start-up with the reasons.

        The server sends the tasks in pages (--max-page-bytes); this follows them to the end.
        """
        reply = self._unary(self._stub.ListTasks, pb.ListTasksRequest())
        tasks = [Task.from_proto(t) for t in reply.tasks]
        skipped = [PluginProblem.from_proto(p) for p in reply.skipped]
        while reply.next_page_token:
            reply = self._unary(self._stub.ListTasks, pb.ListTasksRequest(page_token=reply.next_page_token))
            tasks.extend(Task.from_proto(t) for t in reply.tasks)
        return tasks, skipped

    def score(
        self,
        task: str | CustomTask,
        *,
        video_ids: Sequence[int] | None = None,
        filter: VideoFilter | None = None,
        top_k: int | None = None,
        batch_size: int = 0,
        bottom_k: int | None = None,
    ) -> ScoreStream:
        """Score a task (registered name or CustomTask) over ids / a filter / everything.

        top_k / bottom_k: only the k highest / lowest (binary: by score; regression, categorical: by value).
        """
        request = pb.ScoreVideosRequest(
            video_ids=list(video_ids or ()),
            filter=filter_proto(filter),
            top_k=top_k or 0,
            bottom_k=bottom_k or 0,
            batch_size=batch_size,
        )
        if isinstance(task, CustomTask):
            request.custom_task.CopyFrom(task.to_proto())
        else:
            request.task_name = task
        return ScoreStream(
            lambda: self._stub.ScoreVideos(request, timeout=self.long_timeout, metadata=self._metadata), self.retries
        )

    def create_task(
        self,
        task: CustomTask,
        *,
        description: str = "",
        calibration: tuple[float, float] | None = None,
        replace: bool = False,
    ) -> Task:
        """Save a custom task on the server as a stored task (regression: optional value = a*raw + b)."""
        request = pb.CreateTaskRequest(task=task.to_proto(), description=description, replace=replace)
        if calibration is not None:
            request.calibration.CopyFrom(pb.LinearCalibration(a=calibration[0], b=calibration[1]))
        return Task.from_proto(self._unary(self._stub.CreateTask, request, idempotent=replace).task)

    def delete_task(self, name: str) -> None:
        """Remove a stored task (NOT_FOUND when there is none)."""
        self._unary(self._stub.DeleteTask, pb.DeleteTaskRequest(name=name), idempotent=False)
