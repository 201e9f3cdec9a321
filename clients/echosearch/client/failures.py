"""A failed call (`ApiError`: status code + the server's message), and which failures are worth a retry."""

from __future__ import annotations

import random
import time

import grpc


class ApiError(Exception):
    """A failed call: `code` is the grpc.StatusCode, `message` the server's explanation."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> ApiError:
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        details = err.details() if hasattr(err, "details") else str(err)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "")


def retryable(err: grpc.RpcError) -> bool:
    """UNAVAILABLE, or RESOURCE_EXHAUSTED that the server marked as busy (all upload slots taken), not too large."""
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        return True
    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return False
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    return any(key == "echosearch-busy" for key, _ in trailing or ())


def backoff(attempt: int) -> None:
    """Sleep before retry `attempt` (0, 1, ...): jittered exponential backoff, 0.1-0.2 s doubling up to 2.5-5 s."""
    time.sleep(min(0.2 * 2**attempt, 5.0) * random.uniform(0.5, 1.0))
