"""The chunked-upload protocol of IngestVideo and ImportEmbeddings, written once.

A client-streaming upload is one header message, then the body as chunks. The protocol bounds what
an upload can make the server hold: uploads at once (a slot each, refused rather than queued), time
between messages (an idle watchdog cancels the call and frees its worker), chunk size and total bytes;
it checks the body against the header's size and SHA-256. The body is hashed as it streams and
spooled: small uploads stay in memory, larger ones go to the data directory's spool (services/spool.py),
so a 300 MiB upload costs one copy on disk, not several in memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import grpc

from echosearch.server.errors import (
    BusyError,
    DeadlineExceededError,
    DiskFullError,
    InvalidRequestError,
    InvalidVideoError,
    RequestCancelledError,
    TooLargeError,
)
from echosearch.server.event_counts import Tally
from echosearch.server.limits import Limits
from echosearch.server.services.spool import UploadSpool

log = logging.getLogger(__name__)

# Why an upload was refused, as the metric label `reason` says it (and "idle_timeout" for a stalled one).
REFUSAL_REASONS: dict[type[Exception], str] = {
    BusyError: "busy",
    TooLargeError: "too_large",
    InvalidRequestError: "invalid",
    InvalidVideoError: "invalid_video",
    RequestCancelledError: "cancelled",
    DeadlineExceededError: "decode_timeout",
    DiskFullError: "disk_full",
}


def refusal_reason(exc: BaseException) -> str | None:
    """The `reason` label of an upload that ended with `exc` (its nearest listed class), None when unlisted."""
    return next((REFUSAL_REASONS[k] for k in type(exc).__mro__ if k in REFUSAL_REASONS), None)


MEMORY_SPOOL_BYTES = 8 << 20  # bodies up to this stay in memory; larger ones go to a file

Header = TypeVar("Header")
Reply = TypeVar("Reply")


class UploadMessage(Protocol[Header]):
    """IngestVideoRequest / ImportEmbeddingsRequest: a `payload` oneof of `header` and `chunk`."""

    header: Header
    chunk: bytes

    def WhichOneof(self, oneof_group: str) -> str | None: ...


@dataclass(frozen=True)
class Expected:
    """What a header announced of the body: its name in messages, its size and hash ("" / 0: not given)."""

    name: str
    size_bytes: int = 0
    sha256: str = ""


@dataclass
class ReceivedUpload:
    """An upload's body: in memory (`data`) or spooled to `path`; its size and SHA-256 as received."""

    size: int
    sha256: str
    data: bytes | None
    path: Path | None

    @property
    def source(self) -> bytes | Path:
        """What the use case takes: the bytes, or the spooled file."""
        return self.data if self.data is not None else self.path  # type: ignore[return-value]

    def discard(self) -> None:
        """Delete the spool file, if any."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class UploadHandler(Protocol[Header, Reply]):
    """One upload RPC's part of the protocol: what its header means, and what to do with the body."""

    method: str  # "IngestVideo"
    header_hint: str  # what the header carries, for the message when it is missing

    def start(self, header: Header) -> Expected | Reply:
        """Check the header; Expected to receive the body, or the reply when the header alone answers."""
        ...

    def check_size(self, name: str, size: int, *, partial: bool) -> None:
        """The upload-size rule (TooLargeError); `partial` while more bytes are coming."""
        ...

    def finish(self, expected: Expected, body: ReceivedUpload) -> Reply:
        """The reply once the body is in and matches the header."""
        ...


class Uploads:
    """The protocol for one server: its upload slots, its idle watchdog, its spool."""

    def __init__(self, limits: Limits, workers: int, spool: UploadSpool) -> None:
        # Uploads get fewer slots than there are worker threads, so reads always find a free thread.
        self._slots = UploadSlots(limits.upload_slots(workers))
        self._watchdog = IdleWatchdog(limits.upload_idle_timeout_s)
        self._min_chunk_bytes = limits.min_chunk_bytes
        self._spool = spool
        self.refused = Tally()  # uploads refused or abandoned, by reason (REFUSAL_REASONS, idle_timeout, cancelled)
        self.bytes_received = Tally()  # "bodies": bytes of upload bodies received in full

    def receive(
        self,
        requests: Iterable[UploadMessage[Header]],
        context: grpc.ServicerContext,
        handler: UploadHandler[Header, Reply],
    ) -> Reply:
        """Run one upload: a slot, the header, the body within bounds, the checks, then `handler.finish`."""
        broken: str | None = None  # why the request stream broke, when it did
        try:
            with self._slots.hold(), self._watchdog.watch(context.cancel) as watch:
                try:
                    return self._receive(iter(requests), context, handler, watch)
                except grpc.RpcError:
                    # The request stream broke: the client went away, or the watchdog cancelled an idle upload.
                    broken = "idle_timeout" if watch.timed_out else "cancelled"
                    if watch.timed_out:
                        log.warning(
                            "%s: nothing received for %.0fs (--upload-idle-timeout); cancelled",
                            handler.method,
                            self._watchdog.timeout,
                        )
                    raise RequestCancelledError() from None
        except Exception as exc:
            reason = broken or refusal_reason(exc)
            if reason is not None:
                self.refused.add(reason)
            raise

    @property
    def slots_in_use(self) -> int:
        return self._slots.in_use

    @property
    def slots(self) -> int:
        return self._slots.slots

    def _receive(
        self,
        requests: Iterator[UploadMessage[Header]],
        context: grpc.ServicerContext,
        handler: UploadHandler[Header, Reply],
        watch: Watch,
    ) -> Reply:
        first = next(requests, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise InvalidRequestError(f"the first {handler.method} message must be a header ({handler.header_hint})")
        watch.touch()
        expected = handler.start(first.header)
        if not isinstance(expected, Expected):  # answered from the header alone
            watch.finish()
            return expected
        name = expected.name
        body = receive_body(
            _chunks(requests, handler.method),
            name=name,
            check_size=lambda size: handler.check_size(name, size, partial=True),
            min_chunk_bytes=self._min_chunk_bytes,
            spool=self._spool,
            watch=watch,
        )
        self.bytes_received.add("bodies", body.size)
        try:
            if not context.is_active():
                raise RequestCancelledError()
            if expected.size_bytes and body.size != expected.size_bytes:
                raise InvalidRequestError(
                    f"{name}: received {body.size} bytes but the header announced {expected.size_bytes}; "
                    "the upload was truncated, send it again"
                )
            if expected.sha256 and body.sha256 != expected.sha256:
                raise InvalidRequestError(
                    f"{name}: the received bytes do not match the header's sha256; the upload was corrupted, "
                    "send it again"
                )
            return handler.finish(expected, body)
        finally:
            body.discard()


def normalise_sha256(value: str) -> str:
    """A hex SHA-256 as the catalog stores it (stripped, lower case); '' stays ''."""
    return value.strip().lower()


def _chunks(requests: Iterator[UploadMessage[Header]], method: str) -> Iterator[bytes]:
    for msg in requests:
        if msg.WhichOneof("payload") != "chunk":
            raise InvalidRequestError(
                f"only the first {method} message may be a header; send the body as chunks after it"
            )
        yield msg.chunk


class UploadSlots:
    """A fixed number of uploads received at once; the next one is refused at once, not queued."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._held = 0  # slots held now: one count under one lock decides a refusal and is what metrics read
        self._lock = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold a slot for the duration; BusyError (RESOURCE_EXHAUSTED) when none is free."""
        with self._lock:
            full = self._held >= self.slots
            if not full:
                self._held += 1
        if full:
            raise BusyError(
                f"the server is already receiving {self.slots} uploads (--max-concurrent-uploads {self.slots}); "
                "retry in a moment or upload with fewer parallel jobs"
            )
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1

    @property
    def in_use(self) -> int:
        return self._held


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


def receive_body(
    chunks: Iterator[bytes],
    *,
    name: str,
    check_size: Callable[[int], None],
    min_chunk_bytes: int,
    spool: UploadSpool,
    watch: Watch | None = None,
) -> ReceivedUpload:
    """Read every chunk, enforcing the size limit (`check_size(bytes so far)`) and the minimum chunk size (all chunks but the last)."""
    digest = hashlib.sha256()
    memory = bytearray()
    file = None
    size = 0
    small_before = False
    try:
        with spool.writing():
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
                if file is None and len(memory) + len(chunk) <= MEMORY_SPOOL_BYTES:
                    memory += chunk
                    continue
                if file is None:
                    file = spool.new_file("upload-")
                    file.write(memory)
                    memory = bytearray()
                file.write(chunk)
            if watch is not None:
                watch.finish()
            if size == 0:
                raise InvalidVideoError(f"{name}: no bytes received; send the file as chunks after the header")
            if file is None:
                return ReceivedUpload(size, digest.hexdigest(), bytes(memory), None)
            file.close()
            return ReceivedUpload(size, digest.hexdigest(), None, Path(file.name))
    except BaseException:
        if file is not None:
            file.close()
            os.unlink(file.name)
        raise
