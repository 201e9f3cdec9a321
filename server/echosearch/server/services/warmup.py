"""Warm start: the registered tasks' prompts encoded in the background after start, into the prompt cache.

A video page scores every task; the first one after a fresh start would encode ~600 prompt texts first
(a minute on a CPU for EchoCLIP's text tower). The warm-up does that once, in a daemon thread, task by task
through the persistent prompt cache (texts already stored cost a catalog read, not an encode), so a
restarted server with a warm catalog is ready at once. `info` reports its progress; the UI shows it
instead of waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from echosearch.server.status_records import WarmUpState
from echosearch.tasks.spec import Task

log = logging.getLogger(__name__)


class WarmUp:
    """Encodes `tasks`' candidate texts through `embed` (the prompt cache's), one task at a time."""

    def __init__(self, tasks: Sequence[Task], embed: Callable[[Sequence[str]], object]) -> None:
        self._tasks = list(tasks)
        self._embed = embed
        self._total = sum(len(t.candidate_texts()) for t in self._tasks)
        self._done = 0
        self._error = ""
        self._over = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WarmUp:
        """Run in a daemon thread (a server that stops mid-warm-up does not wait for it)."""
        self._thread = threading.Thread(target=self._run, name="prompt-warm-up", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            for task in self._tasks:
                if self._stopping.is_set():  # the server is closing: stop between tasks
                    return
                texts = task.candidate_texts()
                self._embed(texts)
                self._done += len(texts)
            log.info("prompt warm-up done: %d texts of %d tasks in %.1fs", self._total, len(self._tasks),
                     time.perf_counter() - started)  # fmt: skip
        except Exception as exc:  # a failed warm-up only means the first pages encode on demand
            self._error = f"{type(exc).__name__}: {exc}"
            log.warning("prompt warm-up stopped (%s); prompts are encoded on first use instead", self._error)
        finally:
            self._over.set()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the task being encoded, and wait for that (the services close the catalog next)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def state(self) -> WarmUpState:
        """Progress now."""
        return WarmUpState(self._done, self._total, self._over.is_set(), self._error)

    def when_over(self, timeout: float | None = None) -> bool:
        """Wait until the warm-up has finished (or failed); whether it has."""
        return self._over.wait(timeout)
