"""Whether the request being served is still wanted, visible to deep code without passing a context around.

The API binds each call's liveness check for the duration of its handler; long loops (prompt
encoding, scoring) call `check()` between chunks so a cancelled call or one past its deadline
stops working instead of running on for a client that has gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from echosearch.server.errors import RequestCancelledError

_is_active: ContextVar[Callable[[], bool] | None] = ContextVar("echosearch_request_active", default=None)


@contextmanager
def bound_to(is_active: Callable[[], bool]) -> Iterator[None]:
    """Make `is_active` the current request's liveness check while the block runs (in this thread)."""
    token = _is_active.set(is_active)
    try:
        yield
    finally:
        _is_active.reset(token)


def check() -> None:
    """RequestCancelledError when the current request was cancelled or is past its deadline; no-op outside a request."""
    is_active = _is_active.get()
    if is_active is not None and not is_active():
        raise RequestCancelledError("the caller cancelled the request or its deadline passed")
