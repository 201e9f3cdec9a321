"""The batching encoder: batched == alone (bit-identical on CPU), failure isolation, halving, fairness, texts first, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from echosearch.server.encoder import BatchingEncoder
from echosearch.server.errors import RequestCancelledError, TooLargeError
from echosearch.server.model import EchoClipModel, load_model

POISON = 255  # a frame whose every pixel is 255 makes the injected model fail


@pytest.fixture(scope="module")
def model() -> EchoClipModel:
    return load_model("random:tiny", device="cpu")


@pytest.fixture
def fresh_model(model: EchoClipModel):
    """The module's model with image_features restored after a test replaces it."""
    yield model
    model.__dict__.pop("image_features", None)
    model.__dict__.pop("encode_texts", None)


def _video(rows: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 255, size=(rows, 3, 224, 224), dtype=np.uint8))


def _concurrently(encoder: BatchingEncoder, videos: list[torch.Tensor]) -> list[np.ndarray | BaseException]:
    results: list[np.ndarray | BaseException] = [None] * len(videos)  # type: ignore[list-item]
    start = threading.Barrier(len(videos))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = encoder.encode_frames(videos[i])
        except BaseException as exc:  # collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(videos))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


class Gate:
    """Wraps model.image_features: logs each call's row count, and holds the first call until released."""

    def __init__(self, model: EchoClipModel) -> None:
        self.inner = model.image_features
        self.calls: list[tuple[str, int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        model.image_features = self  # type: ignore[method-assign]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls.append(("frames", len(batch)))
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(30)
        return self.inner(batch)


def test_concurrent_requests_equal_each_alone_bit_for_bit(model: EchoClipModel) -> None:
    videos = [_video(n, seed) for seed, n in enumerate((20, 5, 11, 1, 20, 3))]
    alone = [model.encode_frames(v) for v in videos]
    with BatchingEncoder(model, batch_frames=32, batch_wait_ms=20) as encoder:
        together = _concurrently(encoder, videos)
        stats = encoder.stats()
    for a, b in zip(alone, together, strict=True):
        assert isinstance(b, np.ndarray)
        assert np.array_equal(a, b)  # CPU fp32: identical, not merely close
    assert stats.frames == sum(len(v) for v in videos)
    # Frames of different requests really shared batches (fewer batches than requests' own chunks).
    assert stats.batches < sum(-(-len(v) // 32) for v in videos) + 2
    assert stats.mean_frames_per_batch > 13
    assert stats.queue_wait_p99_ms >= stats.queue_wait_p50_ms >= 0


def test_a_failing_frame_fails_only_its_request(fresh_model: EchoClipModel) -> None:
    inner = fresh_model.image_features

    def poisoned(batch: torch.Tensor) -> torch.Tensor:
        if bool((batch.flatten(1) == POISON).all(dim=1).any()):
            raise RuntimeError("injected model failure")
        return inner(batch)

    fresh_model.image_features = poisoned  # type: ignore[method-assign]
    bad = _video(6, 99)
    bad[4] = POISON
    videos = [_video(5, 1), bad, _video(7, 2), _video(3, 3)]
    with BatchingEncoder(fresh_model, batch_frames=32, batch_wait_ms=50) as encoder:
        results = _concurrently(encoder, videos)
        stats = encoder.stats()
    assert isinstance(results[1], RuntimeError) and "injected" in str(results[1])
    for i in (0, 2, 3):
        assert isinstance(results[i], np.ndarray)
        assert np.array_equal(results[i], inner(videos[i]).numpy())
    assert stats.retried_batches >= 1


def test_out_of_memory_halves_the_batch_until_it_fits(fresh_model: EchoClipModel) -> None:
    inner = fresh_model.image_features
    sizes: list[int] = []

    def small_memory(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(len(batch))
        if len(batch) > 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return inner(batch)

    fresh_model.image_features = small_memory  # type: ignore[method-assign]
    videos = [_video(12, 4), _video(5, 5)]
    with BatchingEncoder(fresh_model, batch_frames=32, batch_wait_ms=50) as encoder:
        results = _concurrently(encoder, videos)
        assert encoder.stats().retried_batches >= 2
    for video, result in zip(videos, results, strict=True):
        assert np.array_equal(result, inner(video).numpy())
    # One batch of both (its first 16-frame CPU pass fails), then halves until they fit.
    assert max(sizes) == 16 and min(sizes) <= 5


def test_out_of_memory_on_a_single_frame_gives_up_with_resource_exhausted(fresh_model: EchoClipModel) -> None:
    sizes: list[int] = []

    def no_memory(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(len(batch))
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    fresh_model.image_features = no_memory  # type: ignore[method-assign]
    with BatchingEncoder(fresh_model, batch_frames=8) as encoder, pytest.raises(TooLargeError, match="single frame"):
        encoder.encode_frames(_video(8, 6))
    assert sizes[:4] == [8, 4, 2, 1]  # halved down to one frame before giving up


def test_a_long_video_does_not_starve_a_short_one(fresh_model: EchoClipModel) -> None:
    gate = Gate(fresh_model)
    finished: list[str] = []
    with BatchingEncoder(fresh_model, batch_frames=8, chunk_frames=4) as encoder:
        first = encoder.submit_frames(_video(8, 7))  # occupies the worker at the gate
        assert gate.entered.wait(30)
        long = encoder.submit_frames(_video(64, 8))
        short = encoder.submit_frames(_video(12, 9))
        long.future.add_done_callback(lambda _: finished.append("long"))
        short.future.add_done_callback(lambda _: finished.append("short"))
        gate.release.set()
        long.future.result(60), short.future.result(60), first.future.result(60)
    assert finished == ["short", "long"]
    # Round-robin: the short video was done within the first three 8-frame batches after the gate.
    assert [n for _, n in gate.calls[1:4]] == [8, 8, 8]


def test_a_text_is_encoded_before_queued_frames(fresh_model: EchoClipModel) -> None:
    gate = Gate(fresh_model)
    events: list[str] = []
    texts_inner = fresh_model.encode_texts

    def texts(batch: list[str]) -> np.ndarray:
        events.append(f"text after {len(gate.calls)} frame batches")
        return texts_inner(batch)

    fresh_model.encode_texts = texts  # type: ignore[method-assign]
    with BatchingEncoder(fresh_model, batch_frames=8) as encoder:
        first = encoder.submit_frames(_video(8, 10))
        assert gate.entered.wait(30)
        long = encoder.submit_frames(_video(64, 11))  # 8 batches queued behind the gate
        answer: list[np.ndarray] = []
        asker = threading.Thread(target=lambda: answer.append(encoder.encode_texts(["mitral regurgitation"])))
        asker.start()
        while encoder.queue_position()[0] == 0 and asker.is_alive():
            threading.Event().wait(0.01)
        assert encoder.queue_position() == (1, 64)  # the text is queued behind 64 frames...
        gate.release.set()
        asker.join(60)
        long.future.result(60), first.future.result(60)
    # ...and was answered right after the batch in flight, before any of them.
    assert events == ["text after 1 frame batches"]
    assert np.array_equal(answer[0], texts_inner(["mitral regurgitation"]))


def test_cancelling_drops_queued_frames(fresh_model: EchoClipModel) -> None:
    gate = Gate(fresh_model)
    with BatchingEncoder(fresh_model, batch_frames=8) as encoder:
        first = encoder.submit_frames(_video(8, 12))
        assert gate.entered.wait(30)
        doomed = encoder.submit_frames(_video(64, 13))
        stopped = threading.Event()
        waiter: list[BaseException] = []

        def wait_with_stop() -> None:
            try:
                encoder.encode_frames(_video(16, 14), should_stop=stopped.is_set)
            except BaseException as exc:
                waiter.append(exc)

        t = threading.Thread(target=wait_with_stop)
        t.start()
        doomed.cancel()
        stopped.set()
        t.join(30)
        gate.release.set()
        first.future.result(60)
        with pytest.raises(RequestCancelledError):
            doomed.future.result(0)
        assert isinstance(waiter[0], RequestCancelledError)
        assert encoder.queue_position() == (0, 0)
    assert sum(n for _, n in gate.calls) == 8  # the cancelled frames were never encoded


def test_empty_request_and_closed_encoder(model: EchoClipModel) -> None:
    encoder = BatchingEncoder(model)
    assert encoder.encode_frames(torch.zeros((0, 3, 224, 224), dtype=torch.uint8)).shape == (0, model.embed_dim)
    encoder.close()
    with pytest.raises(RuntimeError, match="closed"):
        encoder.encode_texts(["x"])


def test_on_a_cpu_a_text_waits_for_one_forward_pass_not_the_whole_batch(fresh_model: EchoClipModel) -> None:
    assert fresh_model.call_frames == 16
    gate = Gate(fresh_model)
    events: list[str] = []
    texts_inner = fresh_model.encode_texts

    def texts(batch: list[str]) -> np.ndarray:
        events.append(f"text after {len(gate.calls)} passes")
        return texts_inner(batch)

    fresh_model.encode_texts = texts  # type: ignore[method-assign]
    with BatchingEncoder(fresh_model, batch_frames=48) as encoder:
        frames = encoder.submit_frames(_video(48, 15))  # one batch: three 16-frame passes
        assert gate.entered.wait(30)  # the first pass is running
        asker = threading.Thread(target=encoder.encode_texts, args=(["aortic stenosis"],))
        asker.start()
        while encoder.queue_position()[0] == 0 and asker.is_alive():
            threading.Event().wait(0.01)
        gate.release.set()
        asker.join(60)
        result = frames.future.result(60)
    assert events == ["text after 1 passes"]  # between the first and second pass of the batch
    assert [n for _, n in gate.calls] == [16, 16, 16]
    assert np.array_equal(result, fresh_model.__class__.image_features(fresh_model, _video(48, 15)).numpy())
