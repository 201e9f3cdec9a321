"""cpu_priority.run_in_background: the work runs niced on its own thread, in the caller's context."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from echosearch.server import cancellation
from echosearch.server.cpu_priority import NICE, run_in_background
from echosearch.server.errors import RequestCancelledError


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_work_runs_niced_on_another_thread():
    caller = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, caller)
    seen = run_in_background(lambda: (threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0)))
    assert seen[0] != caller and seen[1] == before + NICE
    assert os.getpriority(os.PRIO_PROCESS, caller) == before  # the gRPC worker thread keeps its priority


def test_errors_and_the_cancellation_binding_cross_over():
    with cancellation.bound_to(lambda: False), pytest.raises(RequestCancelledError):
        run_in_background(cancellation.check)  # the caller has gone: the background work sees it
    with pytest.raises(ZeroDivisionError):
        run_in_background(lambda: 1 / 0)
    assert run_in_background(lambda: 42) == 42
