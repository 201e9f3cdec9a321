"""Decode-worker stand-ins for tests: uploads whose bytes start with a marker crash or hang the worker."""

from __future__ import annotations

import os
import time
from typing import Any

from echosearch.server.media.prepare import PrepareOptions, prepare

CRASH = b"ECHOSEARCH-TEST-CRASH"
HANG = b"ECHOSEARCH-TEST-HANG"


def prepare_or_misbehave(source: Any, options: PrepareOptions):
    """The real prepare(), except for marked uploads: CRASH exits the worker mid-decode, HANG never returns."""
    if isinstance(source, bytes) and source.startswith(CRASH):
        os._exit(7)
    if isinstance(source, bytes) and source.startswith(HANG):
        time.sleep(3600)
    return prepare(source, options)
