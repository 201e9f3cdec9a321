"""Issue 13, items 1 and 13: uploads are bounded (slots, idle time, chunk size, spooling) and reads never wait on them."""

from __future__ import annotations

import hashlib
import logging
import statistics
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echosearch.server.limits import Limits
from echosearch.server.rpc import uploads
from echosearch.server.services import ingest
from echosearch.v1 import echosearch_pb2 as pb
from tests.fixtures.servers import wait_until
from tests.fixtures.synthetic import make_video

WORKERS = 4
SLOTS = 2
IDLE_S = 4.0


@pytest.fixture(scope="module")
def server(serve_inprocess):
    limits = Limits(max_concurrent_uploads=SLOTS, upload_idle_timeout_s=IDLE_S, min_chunk_bytes=1024)
    return serve_inprocess("upload-limits", workers=WORKERS, limits=limits, token="s3cret")


AUTH = (("authorization", "Bearer s3cret"),)


def _header(**kw) -> pb.IngestVideoRequest:
    return pb.IngestVideoRequest(header=pb.IngestVideoHeader(**kw))


def _stalled(release: threading.Event):
    """A header, ten bytes, then silence until `release`."""
    yield _header(source_name="stalled.avi")
    yield pb.IngestVideoRequest(chunk=b"0123456789")
    release.wait(60)


def _timed_search(stub) -> float:
    started = time.perf_counter()
    stub.SearchByText(pb.SearchByTextRequest(text="a heart", k=3), metadata=AUTH, timeout=60)
    return time.perf_counter() - started


def test_stalled_uploads_leave_reads_answering_then_time_out(stub, channel):
    stub.IngestVideo(
        iter([_header(source_name="one.avi"), pb.IngestVideoRequest(chunk=make_video(seed=5))]), metadata=AUTH
    )
    unloaded = statistics.median(_timed_search(stub) for _ in range(5))

    release = threading.Event()
    try:
        # As many stalled uploads as there are worker threads: before the caps, they took every thread.
        calls = [stub.IngestVideo.future(_stalled(release), metadata=AUTH, timeout=60) for _ in range(WORKERS)]
        deadline = time.monotonic() + 5
        while sum(c.done() for c in calls) < WORKERS - SLOTS and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # a stalled upload that wrongly ended would show now
        refused = [c for c in calls if c.done()]
        assert len(refused) == WORKERS - SLOTS
        for call in refused:
            assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-concurrent-uploads" in call.details()
        stalled = [c for c in calls if c not in refused]

        loaded = [_timed_search(stub) for _ in range(5)]
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=AUTH, timeout=10)
        assert not any(c.done() for c in stalled), "the stalled uploads ended before the reads were measured"
        # Generous: the reads share two CPU cores with the test, but never wait for an upload slot.
        assert max(loaded) < max(20 * unloaded, unloaded + 2.0), (unloaded, loaded)

        # The idle timeout frees the stalled workers.
        for call in stalled:
            assert _finished_within(call, IDLE_S + 10)
            assert call.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        release.set()
    ok = stub.IngestVideo(
        iter([_header(source_name="two.avi"), pb.IngestVideoRequest(chunk=make_video(seed=6))]), metadata=AUTH
    )
    assert (ok.video.source_name, ok.video.sha256) == ("two.avi", hashlib.sha256(make_video(seed=6)).hexdigest())


def _finished_within(call, seconds: float) -> bool:
    done = threading.Event()
    call.add_done_callback(lambda _c: done.set())
    return done.wait(seconds)


def test_tiny_chunks_are_refused(stub):
    data = make_video(seed=7)
    parts = [data[i : i + 10] for i in range(0, 100, 10)]
    with pytest.raises(grpc.RpcError) as err:
        stub.IngestVideo(
            iter([_header(source_name="tiny.avi")] + [pb.IngestVideoRequest(chunk=p) for p in parts]), metadata=AUTH
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at least 1024 bytes" in err.value.details()


def test_sha256_is_normalised_once(stub):
    data = make_video(seed=8)
    digest = " " + hashlib.sha256(data).hexdigest().upper() + " \n"
    reply = stub.IngestVideo(
        iter([_header(source_name="spaced.avi", sha256=digest), pb.IngestVideoRequest(chunk=data)]), metadata=AUTH
    )
    assert reply.video.sha256 == hashlib.sha256(data).hexdigest()
    again = stub.IngestVideo(iter([_header(source_name="spaced.avi", sha256=digest)]), metadata=AUTH)
    assert again.already_stored


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_bearer_scheme_is_case_insensitive(stub, scheme):
    stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=(("authorization", f"{scheme} s3cret"),), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=(("authorization", f"{scheme} S3CRET"),), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_large_upload_is_spooled_to_a_file_and_removed(stub, server, monkeypatch):
    monkeypatch.setattr(uploads, "MEMORY_SPOOL_BYTES", 4096)
    seen = []
    real = ingest.ingest_video

    def spy(services, source, **kw):
        seen.append(source)
        return real(services, source, **kw)

    monkeypatch.setattr(ingest, "ingest_video", spy)
    data = make_video(seed=9)
    chunks = [pb.IngestVideoRequest(chunk=data[i : i + 8192]) for i in range(0, len(data), 8192)]
    reply = stub.IngestVideo(iter([_header(source_name="spooled.avi"), *chunks]), metadata=AUTH)
    assert reply.video.size_bytes == len(data)
    assert reply.video.sha256 == hashlib.sha256(data).hexdigest()
    assert not isinstance(seen[0], bytes)  # decoded from the spool file, never held whole in memory
    assert list(server.services.spool.folder.iterdir()) == []


def test_an_ingest_finished_after_the_caller_left_is_stored_and_logged_so(stub, server, monkeypatch, caplog):
    import time as _time

    real = ingest.ingest_video

    def slow_after(services, source, **kw):
        outcome = real(services, source, **kw)
        _time.sleep(IDLE_S + 2)  # the caller's deadline passes after the video is stored; not idling either
        return outcome

    monkeypatch.setattr(ingest, "ingest_video", slow_after)
    data = make_video(seed=31)
    with caplog.at_level("INFO"):
        with pytest.raises(grpc.RpcError) as err:
            stub.IngestVideo(
                iter([_header(source_name="late.avi"), pb.IngestVideoRequest(chunk=data)]), metadata=AUTH, timeout=4.0
            )
        assert wait_until(lambda: "caller had already gone" in caplog.text, timeout=20)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert server.services.reader.find_by_sha256(hashlib.sha256(data).hexdigest()) is not None
    monkeypatch.undo()

    real_prepare = server.services.decode_pool.prepare

    def slow_decode(*a, **kw):
        _time.sleep(2.0)  # the caller's deadline passes before encoding
        return real_prepare(*a, **kw)

    monkeypatch.setattr(server.services.decode_pool, "prepare", slow_decode)
    data = make_video(seed=32)
    caplog.clear()
    with caplog.at_level("INFO"):
        with pytest.raises(grpc.RpcError):
            stub.IngestVideo(
                iter([_header(source_name="gone.avi"), pb.IngestVideoRequest(chunk=data)]), metadata=AUTH, timeout=1.0
            )
        assert wait_until(lambda: "stopped" in caplog.text, timeout=15)
    assert server.services.reader.find_by_sha256(hashlib.sha256(data).hexdigest()) is None  # not encoded, not stored


def test_the_client_retries_an_upload_refused_as_busy(stub, server):
    from echosearch.client import Client

    release = threading.Event()
    calls = [stub.IngestVideo.future(_stalled(release), metadata=AUTH, timeout=60) for _ in range(SLOTS)]
    try:
        result: list = []
        with Client(server.address, token="s3cret", retries=6) as client:
            worker = threading.Thread(
                target=lambda: result.append(client.ingest(make_video(seed=41), source_name="busy.avi"))
            )
            worker.start()
            time.sleep(1.0)  # the client is refused (busy) and backing off
            release.set()  # the stalled uploads end (as invalid videos): their slots free up
            worker.join(60)
        assert [r.video.source_name for r in result] == ["busy.avi"]
        for call in calls:
            assert call.exception(30).code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        release.set()


def test_a_cancelled_upload_ends_without_a_traceback(stub, caplog):
    """Issue 21 R16: the servicer aborts for a caller that left, instead of returning None for gRPC to serialise."""
    release = threading.Event()
    caplog.set_level(logging.INFO)
    try:
        call = stub.IngestVideo.future(_stalled(release), metadata=AUTH, timeout=60)
        time.sleep(0.5)  # the server is reading the upload
        call.cancel()
        deadline = time.monotonic() + 10
        while not any("caller cancelled" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        release.set()
    time.sleep(0.3)  # gRPC logs a failed serialisation just after the method returns
    messages = [r.getMessage() for r in caplog.records]
    assert any("IngestVideo: caller cancelled" in m for m in messages), messages
    assert not [r for r in caplog.records if "serializ" in r.getMessage() or r.exc_info], messages
