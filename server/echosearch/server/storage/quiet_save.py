"""Save the index snapshot once a bulk load has gone quiet.

Bulk imports do not save per shard (a 10M-frame load would rewrite gigabytes each time). Without a save at
the end, a server that crashed hours after a load would replay the whole load from the catalog at its next
start. Each import re-arms one timer; when no import has come for `quiet_s`, it saves once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

LOAD_QUIET_S = 30.0  # seconds without an import before the load counts as done


class QuietSaver:
    """Calls `save` once, `quiet_s` after the latest `touch`; `cancel` stops a pending save (at close)."""

    def __init__(self, save: Callable[[], None], quiet_s: float = LOAD_QUIET_S) -> None:
        self._save = save
        self.quiet_s = quiet_s
        self._lock = threading.Lock()  # guards the timer handle only; the save runs outside it
        self._timer: threading.Timer | None = None

    def touch(self) -> None:
        """(Re)start the quiet period."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.quiet_s, self._fire)
            self._timer.daemon = True
            self._timer.name = "echosearch-save-after-load"
            self._timer.start()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _fire(self) -> None:
        with self._lock:
            if self._timer is not threading.current_thread():
                return  # re-armed (or cancelled) since this one started waiting
            self._timer = None
        try:
            self._save()
            log.info("bulk load quiet for %.0f s: index snapshot saved", self.quiet_s)
        except Exception as exc:
            log.warning("could not save the index snapshot after a bulk load (%s); a restart catches up", exc)
