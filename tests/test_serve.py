"""The server process: bearer-token auth, TLS, SIGTERM drain without losing acknowledged videos, start-up failures."""

from __future__ import annotations

import signal
import socket
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echosearch.client import ApiError, Client, CustomTask, VideoFilter
from echosearch.server.services.info import server_info
from tests.fixtures.servers import ServerProcess, self_signed_cert, start_inprocess, wait_until
from tests.fixtures.synthetic import make_video

TOKEN = "s3cret-token"
UNAUTH = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    running = start_inprocess(tmp_path_factory.mktemp("auth-data"), token=TOKEN)
    yield running
    running.stop(2)


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_calls_without_the_right_token_are_refused_and_touch_nothing(auth_server, token):
    with Client(auth_server.address, token=token, retries=0) as c:
        calls = {
            "ingest": lambda: c.ingest(make_video(seed=5), source_name="x.avi"),  # client streaming
            "score": lambda: list(c.score("pacemaker")),  # server streaming
            "custom score": lambda: list(c.score(CustomTask(kind="binary", prompts=("X",)))),
            "search": lambda: c.search_by_text("heart"),
            "info": c.info,
            "delete": lambda: c.delete_video(1),
            "export": lambda: c.export(auth_server.services.data_dir / "never.parquet"),
        }
        for name, call in calls.items():
            with pytest.raises(ApiError) as err:
                call()
            assert err.value.code == UNAUTH, name
            assert ("missing" if token is None else "wrong") in err.value.message
    assert server_info(auth_server.services).videos == 0  # nothing stored


def test_right_token_works_and_health_stays_open(auth_server):
    with Client(auth_server.address, token=TOKEN) as c:
        r = c.ingest(make_video(seed=6), source_name="ok.avi")
        assert not r.already_stored and c.info().videos == 1
        c.delete_video(r.video.video_id)
    with grpc.insecure_channel(auth_server.address) as channel:  # no token at all
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_tls_with_self_signed_certificate(tmp_path):
    pair = self_signed_cert(tmp_path)
    if pair is None:
        pytest.skip("neither the cryptography package nor the openssl CLI is available")
    running = start_inprocess(tmp_path / "data", tls=pair)
    try:
        with Client(f"localhost:{running.port}", tls=pair[0]) as c:
            assert c.info().model_spec == "random:tiny"
            assert c.search_by_text("heart") == []
        with Client(f"localhost:{running.port}", retries=0, timeout=5) as plain:
            with pytest.raises(ApiError) as err:
                plain.info()
            assert err.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(1)


@pytest.mark.slow  # a child process, Ray or many uploads: seconds of the quick loop
def test_sigterm_during_ingest_loses_no_acknowledged_video(tmp_path):
    data = tmp_path / "data"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    proc = ServerProcess(data, extra=["--token-file", str(token_file), "--grace", "20"])
    address = proc.wait_ready()
    # a newcomer's start log: no library chatter that reads as a failure (issue 12 item 13)
    assert "faiss.loader" not in proc.log and "No potential checkpoint path" not in proc.log, proc.log
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def uploader(worker: int) -> None:
        with Client(address, token=TOKEN, retries=0, timeout=30) as c:
            for i in range(200):
                if stop.is_set():
                    return
                try:
                    r = c.ingest(make_video(seed=5000 + 100 * worker + i, frames=24), source_name=f"w{worker}-{i}.avi")
                except ApiError:
                    return  # the server is going away: this one was not acknowledged
                with lock:
                    acked.append(r.video.video_id)

    threads = [threading.Thread(target=uploader, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: len(acked) >= 4, timeout=120), proc.log
        rc = proc.terminate(signal.SIGTERM)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert rc == 0, proc.log
    assert "index saved" in proc.log and "Traceback" not in proc.log

    again = ServerProcess(data, extra=["--token-file", str(token_file)])
    try:
        with Client(again.wait_ready(), token=TOKEN) as c:
            stored = {v.video_id for v in c.iter_videos()}
            assert set(acked) <= stored
            found = {
                r.video.video_id for r in c.search_by_text("heart", k=1000, filter=VideoFilter(video_ids=tuple(acked)))
            }
            assert found == set(acked)  # every acknowledged video is searchable after the restart
    finally:
        assert again.terminate(signal.SIGINT) == 0, again.log


def test_model_load_failure_is_one_line_exit_2(tmp_path):
    proc = ServerProcess(tmp_path / "data", extra=["--model", "nosuchscheme:thing"])
    rc = proc.run_to_exit()
    lines = [ln for ln in proc.lines if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in proc.log, proc.log


def test_busy_port_is_one_line_exit_2(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = ServerProcess(tmp_path / "data", port=port)
        rc = proc.run_to_exit()
    assert rc == 2 and any(ln.startswith(f"error: cannot listen on 127.0.0.1:{port}") for ln in proc.lines), proc.log
    assert "Traceback" not in proc.log
    # checked before the model loads, and nothing is left behind
    assert "loaded model" not in proc.log and not (tmp_path / "data").exists()


def test_health_is_not_serving_until_the_prompt_warm_up_is_over(tmp_path):
    """Issue 20 item 5: a load balancer probing grpc.health.v1 sends no traffic while prompts are encoded."""
    import threading

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from echosearch.server.serve import start_server
    from echosearch.server.services.warmup import WarmUp
    from tests.fixtures.servers import open_tiny

    services = open_tiny(tmp_path / "data", host="127.0.0.1", port=0, warm_up=True)
    services.warm_up.when_over(60)
    release = threading.Event()
    services.warm_up = WarmUp(services.registry.list(), lambda texts: release.wait(60)).start()
    running = start_server(services)
    try:
        with grpc.insecure_channel(running.address) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check
            assert (
                check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.NOT_SERVING
            )
            release.set()
            deadline = time.monotonic() + 30
            while check(health_pb2.HealthCheckRequest(), timeout=10).status != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, "health stayed NOT_SERVING after the warm-up"
                time.sleep(0.05)
    finally:
        release.set()
        running.stop(2)
