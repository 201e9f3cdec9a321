"""Domain exceptions of the service: defined in the light `echosearch.errors`, imported from here by server code.

The gRPC layer maps each class to one status code (api.py, `STATUS_CODES`).
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

__all__ = [
    "AlreadyExistsError",
    "EchoSearchError",
    "InvalidRequestError",
    "InvalidVideoError",
    "ModelLoadError",
    "ModelMismatchError",
    "NotFoundError",
    "PreconditionError",
    "StoreVersionError",
    "TooLargeError",
]
