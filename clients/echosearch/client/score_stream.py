"""`Client.score`'s answer: the VideoScore results as the server streams them, batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from echosearch.client.failures import ApiError, backoff
from echosearch.client.types import Task, VideoScore


class ScoreStream:
    """Iterates VideoScore results as the server streams them; `.task` is the task as scored (after the first batch)."""

    def __init__(self, start_call: Callable[[], Any], retries: int) -> None:
        """start_call: a new ScoreVideos call (a gRPC response iterator); retries: how often to start one again."""
        self._start_call = start_call
        self._retries = retries
        self._call: Any = None
        self.task: Task | None = None

    def batches(self) -> Iterator[list[VideoScore]]:
        """The results batch by batch (a retry on UNAVAILABLE happens only before the first batch arrives)."""
        started = False
        for n in range(self._retries + 1):
            self._call = self._start_call()
            try:
                for msg in self._call:
                    started = True
                    if msg.HasField("task"):
                        self.task = Task.from_proto(msg.task)
                    yield [VideoScore.from_proto(s) for s in msg.scores]
                return
            except grpc.RpcError as err:
                if started or err.code() != grpc.StatusCode.UNAVAILABLE or n == self._retries:
                    raise ApiError.from_rpc_error(err) from None
            backoff(n)

    def __iter__(self) -> Iterator[VideoScore]:
        for batch in self.batches():
            yield from batch

    def cancel(self) -> None:
        """Stop the server's scoring early."""
        if self._call is not None:
            self._call.cancel()
