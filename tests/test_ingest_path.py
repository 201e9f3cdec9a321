"""The service's one ingest path over gRPC: concurrent uploads batched together store what each alone would; a
decoder that crashes or hangs fails only its upload, the server stays up; info reports encoder and pool."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest

from echosearch.client import ApiError, Client
from echosearch.server.media.decode_pool import DecodePool
from echosearch.server.model import load_model
from echosearch.server.services.info import server_info
from tests.fixtures.decode_hooks import CRASH, HANG, prepare_or_misbehave
from tests.fixtures.servers import start_inprocess
from tests.fixtures.synthetic import make_video


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pool = DecodePool(1, time_limit_s=3.0, prepare_fn=prepare_or_misbehave)
    running = start_inprocess(tmp_path_factory.mktemp("ingest-path"), decode_pool=pool, batch_wait_ms=50)
    yield running
    running.stop(2)


def _frames(client: Client, video_id: int) -> np.ndarray:
    return np.array([f.embedding for f in client.get_frames(video_id)], dtype=np.float32)


def test_concurrent_ingests_store_what_each_alone_would(server, client) -> None:
    videos = [make_video(96 + 16 * i, 96, 12 + 8 * i, seed=40 + i) for i in range(4)]
    results: list = [None] * len(videos)
    start = threading.Barrier(len(videos))

    def upload(i: int) -> None:
        with Client(server.address, timeout=60) as own:
            start.wait()
            results[i] = own.ingest(videos[i], source_name=f"together-{i}.avi")

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(videos))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    alone = load_model("random:tiny", device="cpu")  # a second copy of the model, encoding each video by itself
    from echosearch.server.media.video import prepare_video

    for video, result in zip(videos, results, strict=True):
        pixels = prepare_video(video, mean=alone.mean, std=alone.std, image_size=alone.image_size).pixels
        assert np.array_equal(_frames(client, result.video.video_id), alone.encode_frames(pixels))
    encoder = server_info(server.services).encoder
    assert encoder.frames >= sum(r.video.sampled_frames for r in results)
    assert encoder.mean_frames_per_batch > 10  # frames of different uploads shared batches


def test_a_crashing_decoder_fails_that_upload_and_the_next_succeeds(server, client) -> None:
    before = server_info(server.services).decode.restarts
    with pytest.raises(ApiError) as info:
        client.ingest(CRASH + b"\0" * 64, source_name="crashes.avi")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "crashes.avi" in info.value.message and "crashed" in info.value.message
    ok = client.ingest(make_video(112, 112, 10, seed=50), source_name="after-crash.avi")
    assert ok.video.sampled_frames == 5
    assert server_info(server.services).decode.restarts == before + 1


def test_a_hanging_decoder_is_a_deadline_and_the_next_succeeds(server, client) -> None:
    with pytest.raises(ApiError) as info:
        client.ingest(HANG + b"\0" * 64, source_name="hangs.mp4")
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "hangs.mp4" in info.value.message and "3 s" in info.value.message
    assert client.ingest(make_video(112, 112, 8, seed=51), source_name="after-hang.avi").video.sampled_frames == 4
    assert client.info().videos >= 2  # the server stayed up throughout


def test_info_reports_the_encoder_and_the_decode_pool(server, client, capsys) -> None:
    client.ingest(make_video(112, 112, 6, seed=52), source_name="for-info.avi")
    enc = client.info().encoder
    assert enc is not None
    assert (enc.device, enc.precision, enc.compiled, enc.batch_frames, enc.batch_wait_ms) == (
        "cpu",
        "fp32",
        False,
        32,
        50,
    )
    assert enc.batches >= 1 and enc.frames >= 3 and enc.mean_frames_per_batch == pytest.approx(enc.frames / enc.batches)
    assert enc.queue_wait_p99_ms >= enc.queue_wait_p50_ms >= 0
    assert (enc.decode_workers, enc.decode_timeout_s) == (1, 3.0)
    assert enc.decode_worker_restarts == enc.decode_crashes + enc.decode_timeouts
    from echosearch.client.cli import main

    assert main(["--server", server.address, "info"]) == 0
    out = capsys.readouterr().out
    assert "encoder.mean_frames_per_batch" in out and "encoder.decode_worker_restarts" in out
