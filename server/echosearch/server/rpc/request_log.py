"""One log line per RPC, and the call's request id on every line logged while it runs (and in its trailers).

A request id is made when a call starts; the client gets it in the trailing metadata `echosearch-request-id`
(the CLI prints it with an error), and every log record emitted on the call's thread carries it as
`request_id`, with the method as `rpc_method` (a record factory reads the call's context variable). With
`serve --log-format json` each record is one JSON object (log_format.JsonFormatter). Nothing of a request's content
is logged here: method, status, duration, ids; never metadata values or prompts.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import grpc

REQUEST_ID_KEY = "echosearch-request-id"
_current: ContextVar[tuple[str, str] | None] = ContextVar("echosearch_rpc", default=None)  # (method, request id)
log = logging.getLogger("echosearch.rpc")


def request_id() -> str | None:
    """The request id of the call running on this thread, if any."""
    current = _current.get()
    return current[1] if current else None


@contextmanager
def logged_call(
    method: str, context: grpc.ServicerContext, observe: Callable[[str, str, float], None] | None = None
) -> Iterator[list[str]]:
    """Bind a fresh request id to the call, send it to the client, and log the call's end with its status
    (the block appends it to the list it is given; "OK" when nothing did) and duration; `observe(method, status,
    seconds)` gets the same (the RPC metrics)."""
    rid = uuid.uuid4().hex[:16]
    token = _current.set((method, rid))
    context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
    outcome: list[str] = []
    started = time.perf_counter()
    try:
        yield outcome
    finally:
        seconds = time.perf_counter() - started
        ms = 1000 * seconds
        code = outcome[-1] if outcome else "OK"
        if observe is not None:
            observe(method, code, seconds)
        log.info("%s %s %.1f ms", method, code, ms, extra={"rpc_code": code, "duration_ms": round(ms, 2)})
        _current.reset(token)


def install_record_factory() -> None:
    """Every log record gets the running call's `rpc_method` and `request_id` (None outside a call); once."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "echosearch_rpc", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        current = _current.get()
        record.rpc_method, record.request_id = current if current else (None, None)
        return record

    factory.echosearch_rpc = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
