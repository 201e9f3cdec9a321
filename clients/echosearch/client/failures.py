"""A failed call (`ApiError`: status code + the server's message), and which failures are worth a retry.

Two kinds are: UNAVAILABLE (the server is down or restarting: a few retries), and a busy server (all upload
slots taken: RESOURCE_EXHAUSTED with the trailing metadata `echosearch-busy: 1`), for which an upload waits
for a free slot. Any other RESOURCE_EXHAUSTED (an upload over the size limit, say) is final.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

BUSY_METADATA = "echosearch-busy"
T = TypeVar("T")


REQUEST_ID_KEY = "echosearch-request-id"  # trailing metadata: the id the server's log lines of the call carry


class ApiError(Exception):
    """A failed call: `code` is the grpc.StatusCode, `message` the server's explanation, `request_id` the id the
    server logged the call under (quote it to whoever reads the server's log)."""

    def __init__(self, code: grpc.StatusCode, message: str, request_id: str = "") -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> ApiError:
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        details = err.details() if hasattr(err, "details") else str(err)
        trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
        rid = next((str(v) for k, v in trailing or () if k == REQUEST_ID_KEY), "")
        return cls(code or grpc.StatusCode.UNKNOWN, details or "", rid)


def unavailable(err: grpc.RpcError) -> bool:
    """The server could not be reached (down, restarting, the network)."""
    return err.code() == grpc.StatusCode.UNAVAILABLE


def busy(err: grpc.RpcError) -> bool:
    """RESOURCE_EXHAUSTED that the server marked as busy (all upload slots taken), not a too-large upload."""
    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return False
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    return any(key == BUSY_METADATA for key, _ in trailing or ())


def retryable(err: grpc.RpcError) -> bool:
    """UNAVAILABLE, or a busy server."""
    return unavailable(err) or busy(err)


def backoff(attempt: int) -> None:
    """Sleep before retry `attempt` (0, 1, ...): jittered exponential backoff, 0.1-0.2 s doubling up to 2.5-5 s."""
    time.sleep(min(0.2 * 2**attempt, 5.0) * random.uniform(0.5, 1.0))


def slot_backoff(attempt: int) -> None:
    """Sleep before asking a busy server again: 0.1-0.2 s doubling up to 1-2 s, so a freed slot is taken soon."""
    time.sleep(min(0.2 * 2**attempt, 2.0) * random.uniform(0.5, 1.0))


def call(
    attempt: Callable[[], T],
    *,
    idempotent: bool,
    retries: int,
    slot_wait: float | None,
    on_wait: Callable[[str], None],
) -> T:
    """Run `attempt`; ApiError when it fails for good.

    Idempotent calls are tried again `retries` times while the server is UNAVAILABLE, and for up to
    `slot_wait` seconds (None: without end) while it is busy, calling `on_wait(why)` before each wait.
    """
    unavailable_tries = busy_tries = 0
    waiting_since: float | None = None
    while True:
        try:
            return attempt()
        except grpc.RpcError as err:
            if idempotent and unavailable(err) and unavailable_tries < retries:
                backoff(unavailable_tries)
                unavailable_tries += 1
                continue
            if not idempotent or not busy(err):
                raise ApiError.from_rpc_error(err) from None
            waiting_since = time.monotonic() if waiting_since is None else waiting_since
            if slot_wait is not None and time.monotonic() - waiting_since >= slot_wait:
                raise ApiError.from_rpc_error(err) from None
            on_wait(f"waiting for a free upload slot: {(err.details() or 'the server is busy').split(';')[0]}")
        slot_backoff(busy_tries)
        busy_tries += 1
