"""Receiving an upload's body within bounds: concurrent uploads, time between messages, chunk size, total bytes.

The body is hashed as it streams and spooled: small uploads stay in memory, larger ones go to
a file in the data directory's `.uploads/` (sized for videos, unlike /tmp), so a 300 MiB upload
costs one copy on disk, not several in memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from echosearch.server.errors import BusyError, InvalidRequestError, InvalidVideoError
from echosearch.server.storage.disk_errors import disk_errors

log = logging.getLogger(__name__)

SPOOL_DIR = ".uploads"
MEMORY_SPOOL_BYTES = 8 << 20  # bodies up to this stay in memory; larger ones go to a file


def normalise_sha256(value: str) -> str:
    """A hex SHA-256 as the catalog stores it (stripped, lower case); '' stays ''."""
    return value.strip().lower()


def clean_spool(data_dir: Path) -> None:
    """Remove spool files a crashed server left behind (called at start)."""
    folder = Path(data_dir) / SPOOL_DIR
    if not folder.is_dir():
        return
    for leftover in folder.iterdir():
        try:
            leftover.unlink()
            log.info("removed a leftover upload spool file %s", leftover.name)
        except OSError:
            log.warning("cannot remove leftover upload spool file %s", leftover, exc_info=True)


class UploadSlots:
    """A fixed number of uploads received at once; the next one is refused at once, not queued."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold a slot for the duration; BusyError (RESOURCE_EXHAUSTED) when none is free."""
        if not self._free.acquire(blocking=False):
            raise BusyError(
                f"the server is already receiving {self.slots} uploads (--max-concurrent-uploads {self.slots}); "
                "retry in a moment or upload with fewer parallel jobs"
            )
        try:
            yield
        finally:
            self._free.release()


class Watch:
    """One watched upload: `touch()` on every message; `timed_out` once the watchdog cancelled it."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self.cancel = cancel
        self.last = time.monotonic()
        self.timed_out = False

    def touch(self) -> None:
        self.last = time.monotonic()

    def finish(self) -> None:
        """The body is in: from here on the server works and the client waits, which is not idling."""
        self.last = float("inf")


class IdleWatchdog:
    """One thread that cancels uploads whose client has sent nothing for `timeout` seconds, freeing their worker."""

    def __init__(self, timeout: float) -> None:
        self.timeout = float(timeout)
        self._watches: set[Watch] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, cancel: Callable[[], None]) -> Iterator[Watch]:
        """Watch one upload while the block runs; `cancel` is called from the watchdog thread on timeout."""
        w = Watch(cancel)
        with self._lock:
            self._watches.add(w)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="upload-watchdog", daemon=True)
                self._thread.start()
        try:
            yield w
        finally:
            with self._lock:
                self._watches.discard(w)

    def _run(self) -> None:
        interval = max(0.05, min(1.0, self.timeout / 4))
        while True:
            time.sleep(interval)
            now = time.monotonic()
            with self._lock:
                idle = [w for w in self._watches if not w.timed_out and now - w.last > self.timeout]  # inf: finished
                for w in idle:
                    w.timed_out = True
            for w in idle:
                log.warning("upload idle for more than %.0fs: cancelled, its worker freed", self.timeout)
                try:
                    w.cancel()
                except Exception:
                    log.warning("cancelling an idle upload failed", exc_info=True)


@dataclass
class ReceivedUpload:
    """An upload's body: in memory (`data`) or spooled to `path`; its size and SHA-256 as received."""

    size: int
    sha256: str
    data: bytes | None
    path: Path | None

    @property
    def source(self) -> bytes | Path:
        """What Engine.ingest takes: the bytes, or the spooled file."""
        return self.data if self.data is not None else self.path  # type: ignore[return-value]

    def discard(self) -> None:
        """Delete the spool file, if any."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def receive_body(
    chunks: Iterator[bytes],
    *,
    name: str,
    check_size: Callable[[int], None],
    min_chunk_bytes: int,
    spool_dir: Path,
    watch: Watch | None = None,
) -> ReceivedUpload:
    """Read every chunk, enforcing the size limit (`check_size(bytes so far)`) and the minimum chunk size (all chunks but the last)."""
    digest = hashlib.sha256()
    memory = bytearray()
    spool = None
    size = 0
    small_before = False
    try:
        with disk_errors(spool_dir.parent):
            for chunk in chunks:
                if watch is not None:
                    watch.touch()
                if small_before:
                    raise InvalidRequestError(
                        f"{name}: upload chunks must be at least {min_chunk_bytes} bytes, except the last one; "
                        "send the file in larger chunks (the echosearch client sends 1 MiB)"
                    )
                small_before = len(chunk) < min_chunk_bytes
                size += len(chunk)
                check_size(size)  # the upload-size rule (TooLargeError); stops receiving at once
                digest.update(chunk)
                if spool is None and len(memory) + len(chunk) <= MEMORY_SPOOL_BYTES:
                    memory += chunk
                    continue
                if spool is None:
                    spool_dir.mkdir(parents=True, exist_ok=True)
                    spool = tempfile.NamedTemporaryFile(dir=spool_dir, prefix="upload-", suffix=".part", delete=False)
                    spool.write(memory)
                    memory = bytearray()
                spool.write(chunk)
            if watch is not None:
                watch.finish()
            if size == 0:
                raise InvalidVideoError(f"{name}: no bytes received; send the file as chunks after the header")
            if spool is None:
                return ReceivedUpload(size, digest.hexdigest(), bytes(memory), None)
            spool.close()
            return ReceivedUpload(size, digest.hexdigest(), None, Path(spool.name))
    except BaseException:
        if spool is not None:
            spool.close()
            os.unlink(spool.name)
        raise
