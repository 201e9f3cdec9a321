"""Domain exceptions. The gRPC layer maps each class to one status code (api.py)."""

from __future__ import annotations


class EchoSearchError(Exception):
    """Base of every error the service reports to a caller; the message is shown to a person."""


class InvalidVideoError(EchoSearchError):
    """The bytes are not a decodable video (corrupt, empty, truncated, no video stream)."""


class InvalidRequestError(EchoSearchError):
    """A request argument is wrong (bad filter, bad custom task, bad sampling option...)."""


class NotFoundError(EchoSearchError):
    """An id or name (video, task) that does not exist."""


class TooLargeError(EchoSearchError):
    """Input over a configured limit (upload size, frame count, value-range steps)."""


class ModelMismatchError(EchoSearchError):
    """A store bound to one model identity was asked to take embeddings of another."""


class StoreVersionError(EchoSearchError):
    """The database was written by a newer echosearch than this one."""


class ModelLoadError(EchoSearchError):
    """A model spec could not be loaded (unknown prefix, download failed, bad folder)."""


class RequestCancelledError(EchoSearchError):
    """The caller cancelled (or its deadline passed) while its work was queued; the work was dropped."""


class DeadlineExceededError(EchoSearchError):
    """A bounded step (decoding one upload) ran past its time limit and was stopped."""
