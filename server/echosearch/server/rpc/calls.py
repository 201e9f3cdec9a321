"""How every RPC runs: counted while in flight (shutdown waits for them), bound to its caller's liveness
(cancellation.py: deep loops stop for a caller that has gone), its errors answered through status.py."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from echosearch.server import cancellation
from echosearch.server.rpc.request_log import logged_call
from echosearch.server.rpc.status import fail, outcome_of

Method = TypeVar("Method", bound=Callable[..., Any])


class InFlight:
    """Counts calls running in the servicer, so shutdown can wait for their work to end."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        """Block until no call runs (True) or the timeout passes (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)

    @property
    def count(self) -> int:
        return self._count


def rpc(method: Method) -> Method:
    """A servicer method run as an RPC: counted in `self.in_flight_calls`, cancellable, errors mapped, its end
    logged and told to `self.rpc_observer`."""
    name = method.__name__
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with (
                self.in_flight_calls,
                cancellation.bound_to(context.is_active),
                logged_call(name, context, self.rpc_observer) as out,
            ):
                try:
                    yield from method(self, request, context)
                except Exception as exc:
                    out.append(outcome_of(exc, context))
                    fail(exc, context, name)

        return streaming  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        with (
            self.in_flight_calls,
            cancellation.bound_to(context.is_active),
            logged_call(name, context, self.rpc_observer) as out,
        ):
            try:
                return method(self, request, context)
            except Exception as exc:
                out.append(outcome_of(exc, context))
                fail(exc, context, name)  # aborts: the call ends with a status, never with None

    return unary  # type: ignore[return-value]
