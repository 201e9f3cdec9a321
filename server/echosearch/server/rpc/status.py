"""The one table from domain errors to gRPC status codes, and how a failed call is answered.

Anything not in the table is a bug: logged with its stack and an incident id, answered INTERNAL
with a generic message, and the server stays up.
"""

from __future__ import annotations

import logging
import uuid
from typing import NoReturn

import grpc

from echosearch.server import errors
from echosearch.server.rpc.request_log import REQUEST_ID_KEY, request_id

log = logging.getLogger(__name__)

# The one place domain errors become status codes; the first matching class wins.
STATUS_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (errors.InvalidVideoError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.TooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.BusyError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.DiskFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.RequestCancelledError, grpc.StatusCode.CANCELLED),  # normally nobody hears it: fail() stops quietly
    (errors.ModelMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.StoreVersionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ModelLoadError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.DataDirError, grpc.StatusCode.FAILED_PRECONDITION),
)

# Trailing metadata on a RESOURCE_EXHAUSTED that a retry may cure (a concurrency cap, not a size limit).
BUSY_METADATA = "echosearch-busy"


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status code a domain error maps to, or None for an unexpected error."""
    for cls, code in STATUS_CODES:
        if isinstance(exc, cls):
            return code
    return None


def outcome_of(exc: Exception, context: grpc.ServicerContext) -> str:
    """The status name a call that raised `exc` ends with (the per-call log line's code)."""
    if isinstance(exc, errors.RequestCancelledError) or not context.is_active():
        return "CANCELLED"
    code = status_for(exc)
    return code.name if code is not None else "INTERNAL"


def fail(exc: Exception, context: grpc.ServicerContext, method: str) -> NoReturn:
    """Answer a call that raised `exc`: its status and message, or INTERNAL with an incident id (always aborts,
    so it never returns)."""
    if isinstance(exc, errors.RequestCancelledError) or not context.is_active():
        # The caller went away (cancelled or past its deadline): nobody hears an answer. Abort all the same:
        # a method that returned None would make gRPC log a serialisation traceback for every such call.
        log.info("%s: caller cancelled or deadline passed; stopped", method)
        context.abort(grpc.StatusCode.CANCELLED, "the caller cancelled the call or its deadline passed")
    code = status_for(exc)
    if isinstance(exc, errors.BusyError):
        # tells clients this one is worth a retry (the request id stays: setting trailers replaces them)
        context.set_trailing_metadata(((BUSY_METADATA, "1"), (REQUEST_ID_KEY, request_id() or "")))
    if code is not None:
        log.info("%s: %s: %s", method, code.name, exc)
        context.abort(code, str(exc))
    incident = uuid.uuid4().hex[:12]
    log.error("%s failed (incident %s)", method, incident, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, f"internal server error (incident {incident}); the server log has details")
