"""Domain exceptions of the service: defined in the light `echosearch.errors`, imported from here by server code.

The gRPC layer maps each class to one status code (api.py, `STATUS_CODES`).
"""

from __future__ import annotations

from echosearch.errors import (
    EchoSearchError,
    InvalidRequestError,
    InvalidVideoError,
    ModelLoadError,
    ModelMismatchError,
    NotFoundError,
    StoreVersionError,
    TooLargeError,
)

__all__ = [
    "EchoSearchError",
    "InvalidRequestError",
    "InvalidVideoError",
    "ModelLoadError",
    "ModelMismatchError",
    "NotFoundError",
    "StoreVersionError",
    "TooLargeError",
    "RequestCancelledError",
    "DeadlineExceededError",
]


class RequestCancelledError(EchoSearchError):
    """The caller cancelled (or its deadline passed) while its work was queued; the work was dropped."""


class DeadlineExceededError(EchoSearchError):
    """A bounded step (decoding one upload) ran past its time limit and was stopped."""
