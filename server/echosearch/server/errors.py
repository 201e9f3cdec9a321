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
    "DataDirError",
    "EchoSearchError",
    "InvalidRequestError",
    "InvalidVideoError",
    "ModelLoadError",
    "ModelMismatchError",
    "NotFoundError",
    "StoreVersionError",
    "TooLargeError",
]


class DataDirError(EchoSearchError):
    """The data directory cannot be used: not a folder, not writable, or in use by another process (serve only)."""
