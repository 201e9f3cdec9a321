"""Domain exceptions of the service: defined in the light `echosearch.errors`, imported from here by server code.

The gRPC layer maps each class to one status code (rpc/status.py, `STATUS_CODES`). The few errors only
the server raises (resource limits it enforces while serving) are defined here.
"""

from __future__ import annotations

from echosearch.errors import (
    AlreadyExistsError,
    EchoSearchError,
    InvalidRequestError,
    InvalidVideoError,
    ModelLoadError,
    ModelMismatchError,
    NotFoundError,
    PreconditionError,
    StoreVersionError,
    TooLargeError,
)


class BusyError(EchoSearchError):
    """The server is at a concurrency cap (e.g. uploads at once); the caller may retry shortly."""


class DiskFullError(EchoSearchError):
    """The data directory ran out of space (or its disk failed) while writing."""


class RequestCancelledError(EchoSearchError):
    """The caller cancelled or passed its deadline; the work stopped (no status is sent: nobody is listening)."""


__all__ = [
    "AlreadyExistsError",
    "BusyError",
    "DataDirError",
    "DiskFullError",
    "EchoSearchError",
    "InvalidRequestError",
    "InvalidVideoError",
    "ModelLoadError",
    "ModelMismatchError",
    "NotFoundError",
    "PreconditionError",
    "RequestCancelledError",
    "StoreVersionError",
    "TooLargeError",
    "DeadlineExceededError",
]


class DeadlineExceededError(EchoSearchError):
    """A bounded step (decoding one upload) ran past its time limit and was stopped."""


class DataDirError(EchoSearchError):
    """The data directory cannot be used: not a folder, not writable, or in use by another process (serve only)."""
