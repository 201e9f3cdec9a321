"""The gRPC API end to end: a real server on a free port, a real channel, the tiny seeded model."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from echosearch.client import ApiError, Client, CustomTask, VideoFilter, VideoMetadata
from echosearch.server.records import TaskRequest
from echosearch.server.services import info as info_service
from echosearch.server.services import tasks as task_service
from echosearch.v1 import echosearch_pb2 as pb
from tests.fixtures.reference_scoring import reference_binary, reference_regression
from tests.fixtures.servers import wait_until
from tests.fixtures.synthetic import make_video

MAX_UPLOAD = 8 << 20
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def server(serve_inprocess):
    return serve_inprocess("api-data", max_upload_bytes=MAX_UPLOAD)


@pytest.fixture(scope="module")
def stored(client):
    """Three synthetic videos with distinct metadata: {seed: IngestResult}."""
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    out = {}
    for seed, view in ((1, "A4C"), (2, "PLAX"), (3, "A4C")):
        md = VideoMetadata(
            study_id=f"study-{seed}",
            patient_id="p1",
            view=view,
            acquisition_time=when,
            tags={"site": "north", "seed": str(seed)},
        )
        out[seed] = client.ingest(
            make_video(seed=seed, grey=seed == 3), source_name=f"synthetic-{seed}.avi", metadata=md
        )
    return out


def stored_frames(client, video_id: int) -> np.ndarray:
    """A video's stored frame embeddings, read back over the API."""
    return np.array([f.embedding for f in client.get_frames(video_id)], dtype=np.float32)


def expect(code: grpc.StatusCode, call, *words: str) -> ApiError:
    """Assert `call()` fails with `code` and a message containing each of `words`."""
    with pytest.raises(ApiError) as info:
        call()
    assert info.value.code == code, info.value
    for word in words:
        assert word.lower() in info.value.message.lower(), info.value.message
    return info.value


# ---- happy paths ---------------------------------------------------------------------


def test_ingest_stores_video_with_metadata_and_is_idempotent(client, stored):
    r = stored[1]
    assert not r.already_stored and r.video.video_id == client.get_video(r.video.video_id).video_id
    assert (r.video.total_frames, r.video.sampled_frames, r.video.width, r.video.height) == (48, 20, 112, 112)
    assert r.video.sha256 == hashlib.sha256(make_video(seed=1)).hexdigest()
    md = r.video.metadata
    assert (md.study_id, md.patient_id, md.view) == ("study-1", "p1", "A4C")
    assert md.acquisition_time == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert md.tags == {"site": "north", "seed": "1"}
    assert r.encode_seconds > 0
    again = client.ingest(make_video(seed=1), source_name="copy.avi")
    assert again.already_stored and again.video.video_id == r.video.video_id


def test_reupload_of_stored_bytes_is_answered_from_the_header(stub, stored):
    stored_video = stored[2].video
    # The header's sha256 names stored content: no chunk is needed, nothing is decoded again.
    header = pb.IngestVideoHeader(
        source_name="again.avi", sha256=stored_video.sha256.upper(), size_bytes=stored_video.size_bytes
    )
    reply = stub.IngestVideo(iter([pb.IngestVideoRequest(header=header)]), timeout=30)
    assert reply.already_stored and reply.video.video_id == stored_video.video_id
    assert reply.encode_seconds == 0 and reply.video.source_name == "synthetic-2.avi"


def test_ingest_real_example_video(client, example_video):
    r = client.ingest(example_video, metadata=VideoMetadata(view="A4C", tags={"example": "yes"}))
    assert r.video.sampled_frames == 20 and r.video.source_name == example_video.name
    assert client.get_video(r.video.video_id).size_bytes == example_video.stat().st_size


def test_upload_over_4_mib_passes_transport(client, stub):
    # 5 MiB of junk crosses the wire in 1 MiB chunks and reaches the decoder (not a transport limit).
    expect(INVALID, lambda: client.ingest(b"\x00junk" * (1 << 20), source_name="junk.avi"), "junk.avi")


def test_get_video_with_embeddings(client, stored):
    vid = stored[2].video.video_id
    frames = client.get_frames(vid)
    dim = client.info().embed_dim
    assert len(frames) == 20 and [f.frame_index for f in frames] == list(range(0, 40, 2))
    for f in frames:
        assert len(f.embedding) == dim
        assert abs(sum(x * x for x in f.embedding) - 1.0) < 1e-3


def test_list_videos_pages_and_filters(client, stored):
    ids = sorted(r.video.video_id for r in stored.values())
    page = client.list_videos(VideoFilter(tags={"site": "north"}), page_size=2)
    assert page.total == 3 and len(page.videos) == 2 and page.next_page_token
    rest = client.list_videos(VideoFilter(tags={"site": "north"}), page_size=2, page_token=page.next_page_token)
    assert [v.video_id for v in page.videos + rest.videos] == ids and rest.next_page_token == ""
    a4c = client.list_videos(VideoFilter(views=("A4C",), tags={"site": "north"}))
    assert sorted(v.video_id for v in a4c.videos) == [stored[1].video.video_id, stored[3].video.video_id]


def test_search_by_text_with_filter_and_aggregations(client, stored):
    results = client.search_by_text(
        "ECHO DENSITY IN RIGHT VENTRICLE SUGGESTIVE OF PACER LEAD.", k=2, frames_per_video=3
    )
    assert len(results) == 2 and results[0].score >= results[1].score
    assert all(len(r.best_frames) == 3 and r.best_frames[0].score == pytest.approx(r.score, abs=1e-5) for r in results)
    plax = client.search_by_text("heart", k=10, filter=VideoFilter(views=("PLAX",)))
    assert [r.video.video_id for r in plax] == [stored[2].video.video_id]
    mean = client.search_by_text("heart", k=10, aggregation="mean", filter=VideoFilter(tags={"site": "north"}))
    best = client.search_by_text("heart", k=10, aggregation="max", filter=VideoFilter(tags={"site": "north"}))
    assert {r.video.video_id for r in mean} == {r.video.video_id for r in best}
    by_id = {r.video.video_id: r.score for r in best}
    assert all(m.score <= by_id[m.video.video_id] + 1e-5 for m in mean)  # a mean never beats the best frame


def test_search_by_video_excludes_itself(client, stored):
    vid = stored[1].video.video_id
    results = client.search_by_video(vid, k=5)
    assert results and vid not in [r.video.video_id for r in results]


def test_list_tasks_describes_builtins(client):
    tasks = {t.name: t for t in client.list_tasks()}
    assert tasks["pacemaker"].kind == "binary" and tasks["pacemaker"].threshold == pytest.approx(0.298)
    ef = tasks["ejection_fraction"]
    assert ef.kind == "regression" and ef.value_range == (0.0, 100.0, 1.0) and all("<#>" in p for p in ef.prompts)
    assert any(t.kind == "categorical" and t.labels for t in tasks.values())


def test_score_builtin_binary_over_all_and_top_k(server, client, stored):
    stream = client.score("pacemaker", filter=VideoFilter(tags={"site": "north"}))
    scores = list(stream)
    assert stream.task is not None and stream.task.name == "pacemaker"
    assert sorted(s.video_id for s in scores) == sorted(r.video.video_id for r in stored.values())
    prompts = server.services.model.encode_texts(task_service.get_task(server.services, "pacemaker").candidate_texts())
    for s in scores:
        # the published per-video computation, from the embeddings the API hands back
        assert s.score == pytest.approx(reference_binary(stored_frames(client, s.video_id), prompts), abs=1e-5)
        assert s.value is None and s.decision == (s.score > 0.298)
    top = list(client.score("pacemaker", filter=VideoFilter(tags={"site": "north"}), top_k=2))
    ranked = sorted(scores, key=lambda s: -s.score)[:2]
    assert [s.video_id for s in top] == [s.video_id for s in ranked]
    assert [s.score for s in top] == pytest.approx([s.score for s in ranked], abs=1e-5)


def test_score_bottom_k_of_a_regression_task(client, stored):
    """'The 100 lowest EF' over gRPC: bottom_k ranks a regression task by value, lowest first."""
    every = list(client.score("ejection_fraction"))
    lowest = list(client.score("ejection_fraction", bottom_k=2))
    assert [s.value for s in lowest] == sorted(s.value for s in every)[:2]
    highest = list(client.score("ejection_fraction", top_k=2))
    assert [s.value for s in highest] == sorted((s.value for s in every), reverse=True)[:2]


def test_score_builtin_regression_for_chosen_ids(server, client, stored):
    ids = [stored[1].video.video_id, stored[3].video.video_id]
    scores = list(client.score("ejection_fraction", video_ids=ids, batch_size=1))
    assert sorted(s.video_id for s in scores) == sorted(ids)
    task = task_service.get_task(server.services, "ejection_fraction")
    candidates = server.services.model.encode_texts(task.candidate_texts())
    for s in scores:
        expected = reference_regression(stored_frames(client, s.video_id), candidates, task.candidate_values())
        assert s.value == pytest.approx(expected) and s.score == s.value and s.decision is None


def test_score_custom_tasks(server, client, stored):
    ids = [r.video.video_id for r in stored.values()]
    binary = list(client.score(CustomTask(kind="binary", prompts=("A NORMAL HEART.",), threshold=0.0), video_ids=ids))
    assert len(binary) == 3 and all(s.decision == (s.score > 0) for s in binary)
    prompt = server.services.model.encode_texts(["A NORMAL HEART."])
    for s in binary:
        assert s.score == pytest.approx(reference_binary(stored_frames(client, s.video_id), prompt), abs=1e-5)
    cat = CustomTask(kind="categorical", prompts=("NO EFFUSION.", "SMALL EFFUSION.", "LARGE EFFUSION."), values=(0, 1, 2),
                     labels={0: "none", 1: "small", 2: "large"})  # fmt: skip
    results = list(client.score(cat, video_ids=ids))
    assert len(results) == 3
    assert all(s.value in (0, 1, 2) and s.label == {0: "none", 1: "small", 2: "large"}[s.value] for s in results)
    reg = CustomTask(kind="regression", prompts=("EJECTION FRACTION <#>%.",), value_range=(10, 80, 5))
    reg_task = task_service.custom_task(
        server.services, TaskRequest(name="r", kind="regression", prompts=tuple(reg.prompts), values=(10, 80, 5))
    )
    candidates = server.services.model.encode_texts(reg_task.candidate_texts())
    for s in client.score(reg, video_ids=ids):
        expected = reference_regression(stored_frames(client, s.video_id), candidates, reg_task.candidate_values())
        assert s.value == pytest.approx(expected) and s.value in set(range(10, 81, 5))


def test_delete_removes_video_everywhere(client):
    vid = client.ingest(make_video(seed=42), source_name="to-delete.avi").video.video_id
    client.delete_video(vid)
    expect(NOT_FOUND, lambda: client.get_video(vid), str(vid))
    assert vid not in [r.video.video_id for r in client.search_by_text("heart", k=100)]
    expect(NOT_FOUND, lambda: client.delete_video(vid), str(vid))


def test_export_parquet(client, stored, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "emb.parquet"
    rows = client.export(out, VideoFilter(tags={"site": "north"}))
    assert rows == 60 and pq.read_table(out).num_rows == 60


def test_server_info_counts(client, stored):
    info = client.info()
    assert info.model_spec == "random:tiny" and info.model_identity.startswith("random:tiny")
    assert info.videos >= 3 and info.frames >= 60 and info.tasks >= 2 and info.max_upload_bytes == MAX_UPLOAD
    assert info.search_backend in ("faiss-cpu", "faiss-gpu", "torch-cuda") and info.search_device


# ---- every error path of the table, with an actionable message; the server stays up -----


def _raw_ingest(stub, messages):
    try:
        stub.IngestVideo(iter(messages), timeout=60)
    except grpc.RpcError as err:
        return err.code(), err.details()
    raise AssertionError("expected an error")


ERROR_CASES = {
    "bad video bytes": (INVALID, lambda c: c.ingest(b"this is not a video" * 100, source_name="notes.txt"), ("notes.txt",)),
    "unknown video id": (NOT_FOUND, lambda c: c.get_video(987654), ("987654",)),
    "unknown similar id": (NOT_FOUND, lambda c: c.search_by_video(987654), ("987654",)),
    "unknown task": (NOT_FOUND, lambda c: list(c.score("pacemakr")), ("pacemakr",)),
    "unknown id to score": (NOT_FOUND, lambda c: list(c.score("pacemaker", video_ids=[987654])), ("987654",)),
    "too large upload": (grpc.StatusCode.RESOURCE_EXHAUSTED, lambda c: c.ingest(b"\0" * (MAX_UPLOAD + 1), source_name="big.avi"), ("big.avi", "limit")),
    "regression prompt without placeholder": (INVALID, lambda c: list(c.score(CustomTask(kind="regression", prompts=("EF IS HIGH.",), value_range=(0, 100, 1)))), ("<#>",)),
    "empty custom prompts": (INVALID, lambda c: list(c.score(CustomTask(kind="binary", prompts=()))), ("prompt",)),
    "custom range too large": (grpc.StatusCode.RESOURCE_EXHAUSTED, lambda c: list(c.score(CustomTask(kind="regression", prompts=("EF <#>%.",), value_range=(0, 100000, 1)))), ()),
    "top k and bottom k together": (INVALID, lambda c: list(c.score("ejection_fraction", top_k=3, bottom_k=3)), ("not both",)),
    "inverted time filter": (INVALID, lambda c: c.search_by_text("heart", filter=VideoFilter(acquired_after=datetime(2025, 1, 1), acquired_before=datetime(2024, 1, 1))), ("swap",)),
    "bad page token": (INVALID, lambda c: c.list_videos(page_token="garbage"), ("page token",)),
    "empty search text": (INVALID, lambda c: c.search_by_text("   "), ("empty",)),
    "k out of range": (INVALID, lambda c: c.search_by_text("heart", k=10**6), ("k must be",)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_table(client, stored, case):
    code, call, words = ERROR_CASES[case]
    expect(code, lambda: call(client), *words)
    assert client.info().videos >= 3  # still up


def test_ingest_protocol_errors(stub, client, stored):
    assert _raw_ingest(stub, [pb.IngestVideoRequest(chunk=b"abc")])[0] == INVALID  # no header first
    head = pb.IngestVideoRequest(header=pb.IngestVideoHeader(source_name="x.avi"))
    assert _raw_ingest(stub, [head])[0] == INVALID  # no bytes
    assert _raw_ingest(stub, [head, head])[0] == INVALID  # two headers
    data = make_video(seed=7)
    bad_sha = pb.IngestVideoRequest(header=pb.IngestVideoHeader(source_name="x.avi", sha256="0" * 64))
    code, msg = _raw_ingest(stub, [bad_sha, pb.IngestVideoRequest(chunk=data)])
    assert code == INVALID and "sha256" in msg
    short = pb.IngestVideoRequest(header=pb.IngestVideoHeader(source_name="x.avi", size_bytes=len(data) + 10))
    code, msg = _raw_ingest(stub, [short, pb.IngestVideoRequest(chunk=data)])
    assert code == INVALID and "truncated" in msg
    huge = pb.IngestVideoRequest(header=pb.IngestVideoHeader(source_name="x.avi", size_bytes=MAX_UPLOAD + 1))
    assert _raw_ingest(stub, [huge])[0] == grpc.StatusCode.RESOURCE_EXHAUSTED  # refused before any byte
    bad_sampling = pb.IngestVideoRequest(
        header=pb.IngestVideoHeader(source_name="x.avi", sampling=pb.Sampling(mode=pb.SAMPLING_MODE_COUNT, count=10**6))
    )
    code, msg = _raw_ingest(stub, [bad_sampling, pb.IngestVideoRequest(chunk=data)])
    assert code == INVALID and "count" in msg
    with pytest.raises(grpc.RpcError) as err:
        stub.ScoreVideos(pb.ScoreVideosRequest()).next()  # no task at all
    assert err.value.code() == INVALID and "task_name" in err.value.details()
    sha = hashlib.sha256(data).hexdigest()
    assert sha not in {v.sha256 for v in client.iter_videos()}  # none of the refused uploads was stored


def test_unexpected_error_is_internal_without_internals(server, client, monkeypatch):
    def boom():
        raise RuntimeError("secret path /var/lib/x and a stack")

    monkeypatch.setattr(info_service, "server_info", lambda services: boom())
    err = expect(grpc.StatusCode.INTERNAL, client.info, "incident")
    assert "secret" not in err.message and "/var/lib" not in err.message
    monkeypatch.undo()
    assert client.info().videos >= 0


# ---- health, reflection, concurrency -------------------------------------------------------


def test_health_and_reflection_answer(server):
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "echosearch.v1.EchoSearchService"):
            assert (
                health.Check(health_pb2.HealthCheckRequest(service=service)).status
                == health_pb2.HealthCheckResponse.SERVING
            )
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        reply = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in reply.list_services_response.service}
        assert {"echosearch.v1.EchoSearchService", "grpc.health.v1.Health"} <= names


def test_concurrent_ingest_and_search_lose_nothing(client, stored):
    errors: list[BaseException] = []
    ingested: list[int] = []
    stop = threading.Event()
    searches = [0]

    def ingest(worker: int) -> None:
        try:
            for i in range(3):
                r = client.ingest(make_video(seed=1000 + worker * 10 + i, frames=24), source_name=f"c{worker}-{i}.avi",
                                  metadata=VideoMetadata(tags={"batch": "concurrent"}))  # fmt: skip
                ingested.append(r.video.video_id)
        except BaseException as exc:
            errors.append(exc)

    def search() -> None:
        try:
            while not stop.is_set():
                client.search_by_text("heart", k=5)
                searches[0] += 1
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=ingest, args=(w,)) for w in range(4)]
    readers = [threading.Thread(target=search) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join(240)
    stop.set()
    for t in readers:
        t.join(60)
    assert not errors, errors
    assert len(set(ingested)) == 12 and searches[0] > 0
    listed = client.list_videos(VideoFilter(tags={"batch": "concurrent"}), page_size=100)
    assert sorted(v.video_id for v in listed.videos) == sorted(ingested)
    found = client.search_by_text("heart", k=100, filter=VideoFilter(tags={"batch": "concurrent"}))
    assert sorted(r.video.video_id for r in found) == sorted(ingested)  # every one is searchable


def test_cancelled_stream_and_passed_deadline_leave_the_server_up(server, client, stored):
    stream = client.score("pacemaker", batch_size=1)
    batches = stream.batches()
    assert len(next(batches)) == 1
    stream.cancel()
    with pytest.raises(ApiError) as err:
        list(batches)
    assert err.value.code == grpc.StatusCode.CANCELLED
    with Client(server.address, timeout=1e-4, retries=0) as hasty:
        expect(grpc.StatusCode.DEADLINE_EXCEEDED, lambda: hasty.search_by_text("heart"))
    assert wait_until(lambda: server.servicer.in_flight == 0, timeout=30)  # nothing left hanging
    assert client.info().videos >= 3
