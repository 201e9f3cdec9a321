"""Work that may yield the CPU: run it on a thread of its own at a lower scheduling priority.

A bulk import decodes, checks and writes a shard of up to millions of rows on a 2-core machine; searches of
other clients must not queue behind it. Linux schedules threads (its `nice` is per thread), so the import runs
on a fresh thread niced by `NICE`, in the caller's context (its cancellation binding and search-plan recorder
travel with it), while the calling gRPC worker waits. Elsewhere, or without the right, it simply runs.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
NICE = 10  # low enough that a search thread wins the core, high enough that the import still proceeds


def lower_this_thread(nice: int = NICE) -> None:
    """Nice the calling thread (Linux: `nice` is per thread); elsewhere, or without the right, nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # not Linux, or not allowed: the work runs at normal priority
        pass


def run_in_background(fn: Callable[[], T], *, nice: int = NICE) -> T:
    """fn() on a thread niced by `nice` (Linux); its result, or its exception raised here."""
    context = contextvars.copy_context()
    box: dict[str, object] = {}

    def target() -> None:
        lower_this_thread(nice)
        try:
            box["value"] = context.run(fn)
        except BaseException as exc:  # re-raised in the caller's thread, with its traceback
            box["error"] = exc

    worker = threading.Thread(target=target, name="low-priority-work", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
