"""The batching encoder: one worker thread per device owns the model; requests submit frames or texts and wait on futures.

- Frame batches form *across* requests, up to `batch_frames` rows or `batch_wait_ms` after the oldest
  waiting request arrived, whichever comes first.
- Fair: requests are served round-robin in chunks of `chunk_frames` rows, so a 512-frame video shares
  each batch with a 20-frame one instead of making it wait for all 512.
- Texts (search queries, task prompts) go first: a text waits for at most the batch in flight (on a CPU,
  for one forward pass of it: texts are served between a batch's fixed-shape passes).
- A batch that fails is retried as two halves, down to single frames (CUDA out-of-memory included);
  only the request owning a frame that fails alone gets the error, never its batch-mates.
- Cancelling a request drops its frames that are still queued.
- Embeddings do not depend on batching: on a CPU every forward pass has one fixed shape
  (EchoClipModel.image_features), so they are bit-identical to encoding each video alone; on CUDA they
  agree to cosine >= 0.9999 (tests/test_gpu.py).
- On CUDA the next batch is copied from a pinned host buffer on its own stream while the previous one
  computes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import torch

from echosearch.server.encoder_device import DeviceRunner, Launched, is_oom
from echosearch.server.encoder_jobs import FramesJob, Slice, TextJob, gather, split
from echosearch.server.encoder_options import DEFAULT_BATCH_FRAMES, EncoderOptions
from echosearch.server.errors import RequestCancelledError, TooLargeError
from echosearch.server.event_counts import COUNT_BUCKETS, LATENCY_BUCKETS_S, BucketHistogram
from echosearch.server.model import EchoClipModel
from echosearch.server.status_records import EncoderStats

log = logging.getLogger(__name__)

DEFAULT_BATCH_WAIT_MS = EncoderOptions.batch_wait_ms
DEFAULT_CHUNK_FRAMES = {"cuda": 32, "cpu": 8}
_WAIT_SAMPLES = 4096  # queue waits kept for the p50/p99 in stats()


def default_batch_frames(model: EchoClipModel) -> int:
    """256 frames per batch on CUDA, 32 on a CPU."""
    return DEFAULT_BATCH_FRAMES["cuda" if model.device.type == "cuda" else "cpu"]


class FramesTicket:
    """A submitted request: its future, and cancel() to drop its queued frames."""

    def __init__(self, encoder: BatchingEncoder, job: FramesJob) -> None:
        self._encoder = encoder
        self._job = job
        self.future = job.future

    def cancel(self) -> None:
        """Drop this request's queued frames; its future raises RequestCancelledError."""
        self._encoder._cancel(self._job)


class BatchingEncoder:
    """Owns the model on one device; encodes frames of many requests in shared batches, texts first."""

    def __init__(
        self,
        model: EchoClipModel,
        *,
        batch_frames: int | None = None,
        batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        chunk_frames: int | None = None,
        compile: bool = False,
    ) -> None:
        kind = "cuda" if model.device.type == "cuda" else "cpu"
        self.model = model
        self.batch_frames = int(batch_frames or DEFAULT_BATCH_FRAMES[kind])
        if self.batch_frames < 1:
            raise ValueError(f"batch_frames must be >= 1, got {self.batch_frames}")
        if batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {batch_wait_ms}")
        self.batch_wait_s = float(batch_wait_ms) / 1000.0
        self.chunk_frames = max(1, min(self.batch_frames, int(chunk_frames or DEFAULT_CHUNK_FRAMES[kind])))
        self.compiled = bool(compile)
        if compile:
            model.compile_image_encoder()
        self._runner = DeviceRunner(model, self.batch_frames)
        self._cv = threading.Condition()
        self._frames: deque[FramesJob] = deque()  # jobs with unscheduled rows, in round-robin order
        self._texts: deque[TextJob] = deque()
        self._queued_rows = 0
        self._closed = False
        self._batches = 0
        self._frames_done = 0
        self._retries = 0
        self._text_batches = 0
        self._waits_ms: deque[float] = deque(maxlen=_WAIT_SAMPLES)
        # /metrics: whole-run histograms (the deque keeps recent waits for GetServerInfo's p50/p99)
        self.batch_size_histogram = BucketHistogram(COUNT_BUCKETS)
        self.queue_wait_histogram = BucketHistogram(LATENCY_BUCKETS_S)
        self._thread = threading.Thread(target=self._run, name=f"echosearch-encoder-{model.device}", daemon=True)
        self._thread.start()
        log.info(
            "encoder on %s (%s%s): batches of up to %d frames, wait %.1f ms, chunks of %d",
            model.device,
            model.precision,
            ", compiled" if compile else "",
            self.batch_frames,
            batch_wait_ms,
            self.chunk_frames,
        )

    # ---- requests ------------------------------------------------------------------------

    def submit_frames(self, pixels: torch.Tensor) -> FramesTicket:
        """Queue (n,3,S,S) pixels (uint8 crops or normalised float) of one request; the ticket's future gives (n,D)."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected pixels of shape (N,3,H,W), got {tuple(pixels.shape)}")
        job = FramesJob(pixels, self.model.embed_dim)
        if job.rows == 0:
            job.future.set_result(job.out)
            return FramesTicket(self, job)
        with self._cv:
            self._check_open()
            self._frames.append(job)
            self._queued_rows += job.rows
            self._cv.notify_all()
        return FramesTicket(self, job)

    def encode_frames(self, pixels: torch.Tensor, *, should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        """Encode one request's frames; polls `should_stop` while waiting and cancels when it says so."""
        ticket = self.submit_frames(pixels)
        while True:
            try:
                return ticket.future.result(timeout=None if should_stop is None else 0.1)
            except FutureTimeout:
                if should_stop is not None and should_stop():
                    ticket.cancel()
                    raise RequestCancelledError("the caller cancelled; its queued frames were dropped") from None

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(T,D) float32 L2-normalised text embeddings, ahead of queued frames."""
        job = TextJob(list(texts), self.model.embed_dim)
        if not job.texts:
            return job.out
        with self._cv:
            self._check_open()
            self._texts.append(job)
            self._cv.notify_all()
        return job.future.result()

    def queue_position(self) -> tuple[int, int]:
        """(texts waiting, frames waiting): what a newly submitted text or frame would queue behind."""
        with self._cv:
            return len(self._texts), self._queued_rows

    def stats(self) -> EncoderStats:
        """Batches, mean frames per batch, queue wait p50/p99 and the rest, since start."""
        with self._cv:
            waits = np.asarray(self._waits_ms, dtype=np.float64)
            batches, frames = self._batches, self._frames_done
            return EncoderStats(
                device=str(self.model.device),
                precision=self.model.precision,
                compiled=self.compiled,
                batch_frames=self.batch_frames,
                batch_wait_ms=self.batch_wait_s * 1000.0,
                batches=batches,
                frames=frames,
                mean_frames_per_batch=frames / batches if batches else 0.0,
                queue_wait_p50_ms=float(np.percentile(waits, 50)) if len(waits) else 0.0,
                queue_wait_p99_ms=float(np.percentile(waits, 99)) if len(waits) else 0.0,
                retried_batches=self._retries,
                text_batches=self._text_batches,
                queued_frames=self._queued_rows,
            )

    def close(self) -> None:
        """Finish what is queued, then stop the worker; later submissions raise RuntimeError."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def __enter__(self) -> BatchingEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the encoder is closed (the server is stopping)")

    def _cancel(self, job: FramesJob) -> None:
        with self._cv:
            if job.future.done():
                return
            job.future.set_exception(RequestCancelledError("the request was cancelled"))
            self._drop(job)

    def _drop(self, job: FramesJob) -> None:
        """Remove a dead job's unscheduled rows from the queue (caller holds the lock)."""
        if job in self._frames:
            self._frames.remove(job)
            self._queued_rows -= job.rows - job.next_row
            job.next_row = job.rows

    # ---- the worker ----------------------------------------------------------------------

    def _run(self) -> None:
        text_turn = True  # alternate when both wait, so a flood of prompts cannot starve frames either
        in_flight: tuple[list[Slice], Launched] | None = None
        while True:
            texts: TextJob | None = None
            batch: list[Slice] = []
            with self._cv:
                while not (self._texts or self._frames or self._closed or in_flight):
                    self._cv.wait()
                if self._texts and (text_turn or not self._frames):
                    texts = self._texts[0]
                elif self._frames:
                    if in_flight is None:
                        self._wait_for_batch()
                    if self._texts and not in_flight:
                        text_turn = True
                        continue
                    batch = self._form_batch()
                elif self._closed and not in_flight:
                    return
            if texts is not None:
                if in_flight is not None:
                    self._finish(*in_flight)
                    in_flight = None
                self._encode_text_chunk(texts)
                text_turn = False
                continue
            text_turn = True
            launched = self._launch(batch) if batch else None
            if in_flight is not None:  # CUDA: the previous batch finishes while this one is queued behind it
                self._finish(*in_flight)
                in_flight = None
            if launched is not None:
                if launched.done is None:  # CPU: computed already; deliver now
                    self._finish(batch, launched)
                else:
                    in_flight = (batch, launched)

    def _wait_for_batch(self) -> None:
        """Hold the batch open until it is full, a text arrives, or the oldest request waited batch_wait_ms."""
        oldest = min(job.submitted for job in self._frames)
        while self._queued_rows < self.batch_frames and not self._texts and not self._closed:
            remaining = oldest + self.batch_wait_s - time.monotonic()
            if remaining <= 0:
                return
            self._cv.wait(remaining)

    def _form_batch(self) -> list[Slice]:
        """Up to batch_frames rows, chunk_frames at a time from each request in turn (caller holds the lock)."""
        space = self.batch_frames
        slices: list[Slice] = []
        now = time.monotonic()
        while space and self._frames:
            job = self._frames.popleft()
            take = min(self.chunk_frames, job.rows - job.next_row, space)
            if job.started is None:
                job.started = now
                self._waits_ms.append((now - job.submitted) * 1000.0)
                self.queue_wait_histogram.observe(now - job.submitted)
            start = job.next_row
            if slices and slices[-1][0] is job and slices[-1][2] == start:
                slices[-1] = (job, slices[-1][1], start + take)
            else:
                slices.append((job, start, start + take))
            job.next_row += take
            self._queued_rows -= take
            space -= take
            if job.next_row < job.rows:
                self._frames.append(job)
        return slices

    def _launch(self, slices: list[Slice]) -> Launched | None:
        """Start a batch on the device; a launch failure is handled here by halving (returns None)."""
        slices = [s for s in slices if not s[0].dead]
        if not slices:
            return None
        try:
            if self._runner.cuda:
                return self._runner.launch(gather(slices))
            return self._cpu_batch_yielding_to_texts(gather(slices))
        except Exception as exc:
            self._retry_halves(slices, exc)
            return None

    def _cpu_batch_yielding_to_texts(self, pixels: torch.Tensor) -> Launched:
        """A CPU batch one fixed-shape forward pass at a time, serving waiting texts between passes.

        A CPU batch of ConvNeXt-B takes seconds; a search text then waits for one pass, not the whole
        batch. The passes split the batch exactly where image_features would, so results are unchanged.
        """
        step = self.model.call_frames if self.model.call_frames > 0 else len(pixels)
        parts = []
        for start in range(0, len(pixels), step):
            parts.append(self.model.image_features(pixels[start : start + step]))
            if start + step < len(pixels):
                self._texts_between_passes()
        return Launched(parts[0] if len(parts) == 1 else torch.cat(parts), None)

    def _texts_between_passes(self) -> None:
        with self._cv:
            waiting = list(self._texts)
        for job in waiting:  # one chunk of each text job waiting now
            self._encode_text_chunk(job)

    def _finish(self, slices: list[Slice], launched: Launched) -> None:
        try:
            embeddings = self._runner.finish(launched)
        except Exception as exc:
            self._retry_halves(slices, exc)
            return
        self._deliver(slices, embeddings)

    def _encode_now(self, slices: list[Slice]) -> None:
        slices = [s for s in slices if not s[0].dead]
        if not slices:
            return
        try:
            embeddings = self._runner.finish(self._runner.launch(gather(slices)))
        except Exception as exc:
            self._retry_halves(slices, exc)
            return
        self._deliver(slices, embeddings)

    def _retry_halves(self, slices: list[Slice], exc: Exception) -> None:
        """Encode a failed batch again as two halves; a single frame that still fails fails its request only."""
        rows = sum(stop - start for _, start, stop in slices)
        if is_oom(exc) and torch.cuda.is_available():
            torch.cuda.empty_cache()
        if rows <= 1:
            job = slices[0][0]
            log.warning("encoding a frame failed alone; failing its request: %s", exc)
            if is_oom(exc):
                error: Exception = TooLargeError(
                    "the model ran out of device memory encoding a single frame; the server needs more memory"
                )
                error.__cause__ = exc
            else:
                error = exc
            with self._cv:
                if not job.future.done():
                    job.future.set_exception(error)
                    self._drop(job)
            return
        with self._cv:
            self._retries += 1
        log.warning("a batch of %d frames failed (%s: %s); retrying it as two halves", rows, type(exc).__name__, exc)
        first, second = split(slices, rows // 2)
        self._encode_now(first)
        self._encode_now(second)

    def _deliver(self, slices: list[Slice], embeddings: np.ndarray) -> None:
        offset = 0
        done: list[FramesJob] = []
        for job, start, stop in slices:
            job.out[start:stop] = embeddings[offset : offset + stop - start]
            offset += stop - start
            job.unfinished -= stop - start
            if job.unfinished == 0:
                done.append(job)
        with self._cv:
            self._batches += 1
            self._frames_done += offset
        self.batch_size_histogram.observe(offset)
        for job in done:
            if not job.future.done():
                job.future.set_result(job.out)

    def _encode_text_chunk(self, job: TextJob) -> None:
        """Encode the next model.batch_size texts of the first text job (texts of one job stay in their own batches)."""
        step = self.model.batch_size
        start = job.next_row
        chunk = job.texts[start : start + step]
        try:
            job.out[start : start + len(chunk)] = self.model.encode_texts(chunk)
        except Exception as exc:
            log.warning("encoding %d texts failed: %s", len(chunk), exc)
            with self._cv:
                self._texts.remove(job)
            job.future.set_exception(exc)
            return
        job.next_row += len(chunk)
        with self._cv:
            self._text_batches += 1
            self._texts.remove(job)
            if job.next_row < len(job.texts):
                self._texts.append(job)  # round-robin between text jobs too
        if job.next_row >= len(job.texts):
            job.future.set_result(job.out)
