"""Video -> per-frame embeddings, with decoding of the next videos overlapped with encoding of the current one."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from echosearch.server.media.video import PreparedVideo, Sampling, Source, prepare_video
from echosearch.server.model import EchoClipModel

log = logging.getLogger(__name__)


class FrameEmbedder:
    """Embeds videos with one model; decode runs in worker threads (PyAV and torch release the GIL)."""

    def __init__(self, model: EchoClipModel, *, decode_workers: int = 2) -> None:
        if decode_workers < 1:
            raise ValueError(f"decode_workers must be >= 1, got {decode_workers}")
        self.model = model
        self.decode_workers = decode_workers
        self._pool = ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="echosearch-decode")

    def close(self) -> None:
        """Stop the decode threads (pending decodes are cancelled)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FrameEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare(self, source: Source, sampling: Sampling = Sampling(), channel_order: str = "rgb") -> PreparedVideo:
        """Decode + preprocess one video with this model's image size and normalisation."""
        m = self.model
        return prepare_video(
            source, sampling, channel_order=channel_order, mean=m.mean, std=m.std, image_size=m.image_size
        )

    def embed(
        self, source: Source, sampling: Sampling = Sampling(), channel_order: str = "rgb"
    ) -> tuple[PreparedVideo, np.ndarray, dict[str, float]]:
        """One video -> (prepared frames, (n,D) float32 embeddings, {"decode_s", "encode_s"})."""
        t0 = time.perf_counter()
        prepared = self.prepare(source, sampling, channel_order)
        t1 = time.perf_counter()
        embeddings = self.model.encode_frames(prepared.pixels)
        t2 = time.perf_counter()
        return prepared, embeddings, {"decode_s": t1 - t0, "encode_s": t2 - t1}

    def embed_many(
        self, sources: Iterable[Source], sampling: Sampling = Sampling(), channel_order: str = "rgb"
    ) -> Iterator[tuple[PreparedVideo | Exception, np.ndarray | None]]:
        """Embed videos in order; a video that fails to decode yields (its exception, None) and the rest go on."""
        sampling.validate()  # a bad option is the caller's error, not each video's
        ahead: deque[Future[PreparedVideo]] = deque()
        it = iter(sources)
        # Decoding runs at most decode_workers + 1 videos ahead: enough to hide decode behind encode,
        # few enough that prepared pixel tensors do not pile up in memory.
        window = self.decode_workers + 1
        try:
            while True:
                while len(ahead) < window:
                    try:
                        source = next(it)
                    except StopIteration:
                        break
                    ahead.append(self._pool.submit(self.prepare, source, sampling, channel_order))
                if not ahead:
                    return
                future = ahead.popleft()
                try:
                    prepared = future.result()
                except Exception as exc:  # one bad video must not stop the batch
                    log.info("video skipped: %s", exc)
                    yield exc, None
                    continue
                yield prepared, self.model.encode_frames(prepared.pixels)
        finally:
            for future in ahead:
                future.cancel()
