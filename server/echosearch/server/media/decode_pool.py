"""Decoding in worker processes: FFmpeg runs outside the server, one upload per worker under a time limit.

A worker that crashes on an upload (a segfault in a codec, os._exit, the OOM killer) fails that upload
with InvalidVideoError; one that runs past the limit is killed and its upload fails with
DeadlineExceededError. Either way the pool starts a replacement and the server stays up. Workers reply
with numpy arrays (plain pickles: no shared-memory file descriptors to leak), uint8 crops 4x smaller
than the normalised float pixels.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from echosearch.server.errors import (
    DeadlineExceededError,
    EchoSearchError,
    InvalidVideoError,
    RequestCancelledError,
)
from echosearch.server.media.options import MediaOptions, default_decode_workers
from echosearch.server.media.prepare import PrepareOptions, prepare
from echosearch.server.media.preprocess import PreparedVideo
from echosearch.server.status_records import DecodePoolStats

log = logging.getLogger(__name__)

DEFAULT_TIME_LIMIT_S = MediaOptions.decode_timeout_s
PrepareFn = Callable[[Any, PrepareOptions], PreparedVideo]


class _Worker:
    def __init__(self, ctx: Any, prepare_fn: PrepareFn) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, prepare_fn), daemon=True, name="echosearch-decode")
        self.process.start()
        child.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class DecodePool:
    """A fixed number of decode processes; prepare() runs one upload in one of them."""

    def __init__(
        self,
        workers: int | None = None,
        *,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        prepare_fn: PrepareFn = prepare,
        start_method: str = "forkserver",
    ) -> None:
        self.size = int(workers if workers is not None else default_decode_workers())
        if self.size < 1:
            raise ValueError(f"decode workers must be >= 1, got {self.size}")
        if time_limit_s <= 0:
            raise ValueError(f"the decode time limit must be > 0 s, got {time_limit_s}")
        self.time_limit_s = float(time_limit_s)
        self._prepare_fn = prepare_fn
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            # The fork server imports the media stack once; each worker (and each replacement) forks from it.
            self._ctx.set_forkserver_preload(["echosearch.server.media.prepare"])
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._all: set[_Worker] = set()
        self._closed = False
        self._decoded = self._restarts = self._crashes = self._timeouts = 0
        for _ in range(self.size):
            self._add_worker()
        log.info("decode pool: %d worker processes, %.0f s per video", self.size, self.time_limit_s)

    def prepare(
        self,
        source: bytes | Path,
        options: PrepareOptions | None = None,
        *,
        name: str = "upload",
        should_stop: Callable[[], bool] | None = None,
    ) -> PreparedVideo:
        """Decode one upload (a path on disk, or bytes) in a worker; uint8 pixels. Errors name `name`."""
        options = options or PrepareOptions()
        source = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source)
        worker = self._take(should_stop)
        failed = True
        try:
            try:
                worker.conn.send((source, options))
            except (BrokenPipeError, OSError):  # the worker died while idle: one retry with a fresh one
                self._replace(worker, reason="died while idle")
                worker = self._take(should_stop)
                worker.conn.send((source, options))
            reply = self._wait(worker, name, should_stop)
            failed = False
        finally:
            if failed:
                self._replace(worker, reason="failed")
            else:
                self._idle.put(worker)
        status, payload = reply
        if status == "error":
            raise payload
        with self._lock:
            self._decoded += 1
        return _from_wire(payload)

    def stats(self) -> DecodePoolStats:
        """Pool size, busy workers, decoded uploads, restarts, crashes and timeouts since start."""
        with self._lock:
            return DecodePoolStats(
                workers=self.size,
                busy=self.size - self._idle.qsize(),
                decoded=self._decoded,
                restarts=self._restarts,
                crashes=self._crashes,
                timeouts=self._timeouts,
                time_limit_s=self.time_limit_s,
            )

    def close(self) -> None:
        """Stop every worker (idle ones exit cleanly, any still decoding are killed)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in workers:
            worker.process.join(2)
            worker.kill()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals -------------------------------------------------------------------------

    def _take(self, should_stop: Callable[[], bool] | None) -> _Worker:
        while True:
            if self._closed:
                raise RuntimeError("the decode pool is closed (the server is stopping)")
            try:
                return self._idle.get(timeout=0.1)
            except queue.Empty:
                if should_stop is not None and should_stop():
                    raise RequestCancelledError("the caller cancelled while waiting for a decoder") from None

    def _wait(self, worker: _Worker, name: str, should_stop: Callable[[], bool] | None) -> tuple[str, Any]:
        deadline = time.monotonic() + self.time_limit_s
        while True:
            try:
                if worker.conn.poll(min(0.1, max(0.0, deadline - time.monotonic()))):
                    return worker.conn.recv()
            except (EOFError, OSError, ConnectionResetError):
                pass  # the worker died mid-decode: handled below
            if not worker.process.is_alive() or worker.conn.closed:
                worker.process.join(1)
                code = worker.process.exitcode
                with self._lock:
                    self._crashes += 1
                log.warning("decode worker crashed on %s (exit code %s); replacing it", name, code)
                raise InvalidVideoError(
                    f"{name}: the video decoder crashed on this file (worker exit code {code}); "
                    "the file is probably corrupt or in a format this server cannot read"
                )
            if time.monotonic() >= deadline:
                with self._lock:
                    self._timeouts += 1
                log.warning("decoding %s passed the %.0f s limit; killing its worker", name, self.time_limit_s)
                raise DeadlineExceededError(
                    f"{name}: decoding took longer than the server's limit of {self.time_limit_s:.0f} s per video "
                    "and was stopped; the file may be damaged, or ask the operator for a larger --decode-timeout"
                )
            if should_stop is not None and should_stop():
                raise RequestCancelledError(f"{name}: the caller cancelled during decoding")

    def _add_worker(self) -> None:
        worker = _Worker(self._ctx, self._prepare_fn)
        with self._lock:
            self._all.add(worker)
        self._idle.put(worker)

    def _replace(self, worker: _Worker, *, reason: str) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            if self._closed:
                return
            self._restarts += 1
        log.info("decode worker %s; starting a replacement", reason)
        self._add_worker()


def _to_wire(video: PreparedVideo) -> dict[str, Any]:
    """Every field as it is, the pixels as a numpy array (a plain pickle: no shared-memory descriptor)."""
    wire = {f.name: getattr(video, f.name) for f in fields(video)}
    wire["pixels"] = np.ascontiguousarray(video.pixels.numpy())
    return wire


def _from_wire(payload: dict[str, Any]) -> PreparedVideo:
    return PreparedVideo(**{**payload, "pixels": torch.from_numpy(payload["pixels"])})


def _worker_main(conn: Connection, prepare_fn: PrepareFn) -> None:
    """A decode worker: one (source, options) in, ("ok", frames) or ("error", EchoSearchError) out, until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server handles ^C; workers stop when it closes the pool
    torch.set_num_threads(1)  # the pool is the parallelism
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - opencv is a server dependency
        pass
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        source, options = job
        try:
            reply: tuple[str, Any] = ("ok", _to_wire(prepare_fn(source, options)))
        except EchoSearchError as exc:
            reply = ("error", exc)
        except Exception as exc:  # FFmpeg/PyAV errors the media layer did not classify
            reply = ("error", InvalidVideoError(f"decoding failed ({type(exc).__name__}: {exc})"))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return
