"""Domain exceptions (stdlib only). The server's gRPC layer maps each class to one status code (rpc/status.py).

They live in the light package so that the plugin API (`echosearch.tasks`) can raise them
without the server stack; server code imports them as `echosearch.server.errors`.
"""

from __future__ import annotations


class EchoSearchError(Exception):
    """Base of every error the service reports to a caller; the message is shown to a person."""


class InvalidVideoError(EchoSearchError):
    """The bytes are not a decodable video (corrupt, empty, truncated, no video stream)."""


class InvalidRequestError(EchoSearchError):
    """A request argument is wrong (bad filter, bad custom task, bad sampling option...)."""


class NotFoundError(EchoSearchError):
    """An id or name (video, task) that does not exist."""


class AlreadyExistsError(EchoSearchError):
    """A name that is already taken (e.g. a stored task)."""


class PreconditionError(EchoSearchError):
    """The request is valid but not in this state (e.g. deleting a plugin task)."""


class TooLargeError(EchoSearchError):
    """Input over a configured limit (upload size, frame count, value-range steps)."""


class ModelMismatchError(EchoSearchError):
    """A store bound to one model identity was asked to take embeddings of another."""


class StoreVersionError(EchoSearchError):
    """The database was written by a newer echosearch than this one."""


class ModelLoadError(EchoSearchError):
    """A model spec could not be loaded (unknown prefix, download failed, bad folder)."""
