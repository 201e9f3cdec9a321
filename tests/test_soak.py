"""Issue 13: a bounded soak. Eight clients mix good, malformed and oversized ingests with search, score,
export, delete, stored tasks (create, score, delete, and tasks over the caps) and bulk shards (good and
wrongly typed) against one server for 60 s; then nothing was INTERNAL, memory stayed bounded,
every acknowledged video is there, the index matches the catalog, and searches stayed responsive.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import statistics
import threading
import time

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from echosearch.server.bulk.shards import EmbeddedVideo, shard_table
from echosearch.server.limits import Limits
from echosearch.server.records import VideoMetadata
from echosearch.v1 import echosearch_pb2 as pb
from echosearch.v1 import echosearch_pb2_grpc as pb_grpc
from tests.fixtures.servers import start_inprocess
from tests.fixtures.synthetic import make_video

pytestmark = pytest.mark.slow

log = logging.getLogger(__name__)

CLIENTS = 8
SOAK_SECONDS = float(
    os.environ.get("ECHOSEARCH_SOAK_SECONDS", "60")
)  # as the issue asks; shorten locally with the variable
VIDEOS_PER_CLIENT = 6
# Stated bounds (docs/api.md, "Soak test"): measured +210-320 MiB RSS after the load (a plateau that
# swings 230-380 MiB under load: concurrent decodes, encodes and exports; no upward trend) and a search
# p99 of 13-21x the unloaded p50 on two shared CPU cores; the bounds leave room for a noisy machine,
# not for a leak or a stall.
RSS_GROWTH_BOUND_MIB = 512
SEARCH_P99_OVER_P50_BOUND = 100
MAX_UPLOAD = 1 << 20
OK_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # oversized input, or every upload slot busy
    grpc.StatusCode.NOT_FOUND,
}


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Client:
    """One soak client: its own videos (so its view of what is stored is exact), its own channel."""

    def __init__(self, address: str, index: int, stop: threading.Event) -> None:
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)])
        self.stub = pb_grpc.EchoSearchServiceStub(self.channel)
        self.rng = random.Random(index)
        self.videos = [make_video(64, 64, frames=10, seed=1000 * (index + 1) + i) for i in range(VIDEOS_PER_CLIENT)]
        self.stored: dict[str, int] = {}  # sha256 -> video id, as acknowledged
        self.deleted: set[int] = set()
        self.unexpected: list[str] = []
        self.search_seconds: list[float] = []
        self.calls = 0
        self.stop = stop

    def run(self) -> None:
        actions = [
            (self.ingest, 5),
            (self.ingest_malformed, 1),
            (self.ingest_oversized, 1),
            (self.search, 6),
            (self.score, 2),
            (self.export, 1),
            (self.delete, 2),
            (self.tasks, 1),
            (self.imports, 1),
        ]
        weights = [w for _, w in actions]
        while not self.stop.is_set():
            action = self.rng.choices([a for a, _ in actions], weights)[0]
            try:
                action()
            except grpc.RpcError as exc:
                if exc.code() not in OK_CODES:
                    self.unexpected.append(f"{action.__name__}: {exc.code().name}: {exc.details()}")
            self.calls += 1
        self.channel.close()

    def _upload(self, data: bytes, name: str, **header) -> pb.IngestVideoResponse:
        head = pb.IngestVideoRequest(header=pb.IngestVideoHeader(source_name=name, **header))
        chunks = [pb.IngestVideoRequest(chunk=data[i : i + (256 << 10)]) for i in range(0, len(data), 256 << 10)]
        return self.stub.IngestVideo(iter([head, *chunks]), timeout=60)

    def ingest(self) -> None:
        data = self.rng.choice(self.videos)
        reply = self._upload(data, "soak.avi", metadata=pb.VideoMetadata(view="A4C", tags={"soak": "yes"}))
        self.stored[hashlib.sha256(data).hexdigest()] = reply.video.video_id
        self.deleted.discard(reply.video.video_id)

    def ingest_malformed(self) -> None:
        kind = self.rng.randrange(3)
        if kind == 0:
            data = self.rng.randbytes(5000)
        elif kind == 1:
            data = self.rng.choice(self.videos)[: self.rng.randrange(100, 3000)]  # truncated
        else:
            data = b"RIFF" + self.rng.randbytes(3000)
        try:
            self._upload(data, "malformed.avi")
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT and exc.code() not in OK_CODES:
                raise
            return
        # A truncated MJPG AVI can still hold whole frames: then it is a (short) video, stored as such.

    def ingest_oversized(self) -> None:
        kind = self.rng.randrange(4)
        if kind == 0:
            self._upload(b"\0" * (MAX_UPLOAD + 1), "too-big.avi")
        elif kind == 1:
            self._upload(make_video(256, 256, frames=2, seed=self.rng.randrange(10**6)), "too-wide.avi")
        elif kind == 2:
            self._upload(self.videos[0], "md.avi", metadata=pb.VideoMetadata(study_id="x" * 5000))
        else:
            sampling = pb.Sampling(mode=pb.SAMPLING_MODE_COUNT, count=20000, max_frames=20000)
            self._upload(self.videos[0], "count.avi", sampling=sampling)
        self.unexpected.append(f"oversized ingest kind {kind} was accepted")

    def search(self) -> None:
        started = time.perf_counter()
        self.stub.SearchByText(pb.SearchByTextRequest(text="a heart with a pacemaker", k=5), timeout=60)
        self.search_seconds.append(time.perf_counter() - started)

    def score(self) -> None:
        flt = pb.VideoFilter(tags={"soak": "yes"}, views=["A4C"])
        for _ in self.stub.ScoreVideos(pb.ScoreVideosRequest(task_name="pacemaker", filter=flt), timeout=60):
            pass

    def export(self) -> None:
        flt = pb.VideoFilter(video_ids=list(self.stored.values())[:3] or [1])
        for _ in self.stub.ExportEmbeddings(pb.ExportEmbeddingsRequest(filter=flt), timeout=60):
            pass

    def imports(self) -> None:
        """ImportEmbeddings of a small shard of new videos, or of a shard with a wrongly typed column."""
        info = self.stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=60)
        n = self.rng.randrange(10**9)
        rng = np.random.default_rng(n)
        videos = []
        for i in range(3):
            emb = rng.standard_normal((2, info.embed_dim)).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            videos.append(EmbeddedVideo(
                sha256=hashlib.sha256(f"soak-shard-{n}-{i}".encode()).hexdigest(), source_uri=f"/soak/{n}-{i}.avi",
                size_bytes=100, total_frames=4, fps=30.0, width=64, height=64, frame_indices=np.array([0, 2]),
                timestamps=np.array([0.0, 2 / 30]), embeddings=emb, metadata=VideoMetadata(tags={"soak": "bulk"}),
            ))  # fmt: skip
        table = shard_table(videos, info.model_identity, info.embed_dim)
        broken = self.rng.random() < 0.3
        if broken:  # fps as text: INVALID_ARGUMENT naming the column, never INTERNAL
            i = table.column_names.index("fps")
            table = table.set_column(i, "fps", pa.array(["30"] * table.num_rows)).replace_schema_metadata(
                table.schema.metadata
            )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        head = pb.ImportEmbeddingsHeader(
            shard_name=f"soak-{n}.parquet", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
        )
        requests = [pb.ImportEmbeddingsRequest(header=head), pb.ImportEmbeddingsRequest(chunk=data)]
        try:
            reply = self.stub.ImportEmbeddings(iter(requests), timeout=60)
        except grpc.RpcError as exc:
            if broken and exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "fps" in exc.details():
                return
            raise
        if broken:
            self.unexpected.append("a shard with a text fps column was imported")
        elif reply.videos_added != 3:
            self.unexpected.append(f"a new shard added {reply.videos_added} videos, not 3")

    def tasks(self) -> None:
        """CreateTask / score / DeleteTask of a stored task of its own, and a task the caps must refuse."""
        name = f"soak_task_{id(self) % 10_000}_{self.rng.randrange(10**6)}"
        task = pb.CustomTask(name=name, kind=pb.TASK_KIND_BINARY, prompts=[f"A HEART, VIEW {self.rng.randrange(99)}."])
        self.stub.CreateTask(pb.CreateTaskRequest(task=task, description="soak"), timeout=60)
        for _ in self.stub.ScoreVideos(pb.ScoreVideosRequest(task_name=name), timeout=60):
            pass
        self.stub.ListTasks(pb.ListTasksRequest(), timeout=60)
        self.stub.DeleteTask(pb.DeleteTaskRequest(name=name), timeout=60)
        bad = self.rng.choice(
            [
                pb.CreateTaskRequest(task=pb.CustomTask(name="Pacemaker", kind=pb.TASK_KIND_BINARY, prompts=["A"])),
                pb.CreateTaskRequest(task=pb.CustomTask(name="x", kind=pb.TASK_KIND_BINARY, prompts=["A"]),
                                     description="d" * 10_000),
                pb.CreateTaskRequest(task=pb.CustomTask(name="y", kind=pb.TASK_KIND_BINARY, prompts=["A " * 900])),
            ]
        )  # fmt: skip
        try:
            self.stub.CreateTask(bad, timeout=60)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS):
                raise
            return
        self.unexpected.append(f"an over-the-caps task was accepted: {bad.task.name}")

    def delete(self) -> None:
        if not self.stored:
            return
        sha = self.rng.choice(sorted(self.stored))
        video_id = self.stored.pop(sha)
        self.stub.DeleteVideo(pb.DeleteVideoRequest(video_id=video_id), timeout=60)
        self.deleted.add(video_id)


def test_soak(tmp_path):
    limits = Limits(max_upload_bytes=MAX_UPLOAD, max_frame_pixels=200 * 200, upload_idle_timeout_s=10)
    server = start_inprocess(tmp_path / "data", workers=16, limits=limits, max_upload_bytes=MAX_UPLOAD)
    try:
        warm = Client(server.address, 99, threading.Event())
        for _ in range(2):
            warm.ingest()
        warm.score()
        warm.export()
        for _ in range(25):
            warm.search()
        unloaded_p50 = statistics.median(warm.search_seconds[5:])
        rss_before = _rss_mib()

        stop = threading.Event()
        clients = [Client(server.address, i, stop) for i in range(CLIENTS)]
        threads = [threading.Thread(target=c.run, name=f"soak-{i}") for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        rss_curve = []
        for _ in range(6):
            time.sleep(SOAK_SECONDS / 6)
            rss_curve.append(round(_rss_mib() - rss_before))
        stop.set()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a soak client is stuck"
        rss_growth = _rss_mib() - rss_before

        unexpected = [u for c in clients for u in c.unexpected]
        assert not unexpected, unexpected[:10]
        calls = sum(c.calls for c in clients)
        searches = sorted(s for c in clients for s in c.search_seconds)
        p99 = float(np.percentile(searches, 99))
        log.warning(
            "soak: %d calls in %.0fs, %d searches: unloaded p50 %.1f ms, loaded p99 %.1f ms (%.0fx); RSS +%.0f MiB "
            "(every %.0fs: %s)",
            calls,
            SOAK_SECONDS,
            len(searches),
            unloaded_p50 * 1e3,
            p99 * 1e3,
            p99 / unloaded_p50,
            rss_growth,
            SOAK_SECONDS / 6,
            rss_curve,
        )
        assert calls > 100 and len(searches) > 20

        # Every acknowledged video is there, every deleted one gone.
        stub = pb_grpc.EchoSearchServiceStub(grpc.insecure_channel(server.address))
        for c in clients:
            for sha, video_id in c.stored.items():
                got = stub.GetVideo(pb.GetVideoRequest(video_id=video_id), timeout=30).video
                assert got.sha256 == sha
            for video_id in c.deleted:
                with pytest.raises(grpc.RpcError) as err:
                    stub.GetVideo(pb.GetVideoRequest(video_id=video_id), timeout=30)
                assert err.value.code() == grpc.StatusCode.NOT_FOUND

        store = server.services.store
        assert store.frame_index.ntotal == store.catalog.count_frames()
        assert store.mean_index.ntotal == store.catalog.count_videos()
        assert rss_growth < RSS_GROWTH_BOUND_MIB, rss_growth
        assert p99 < SEARCH_P99_OVER_P50_BOUND * unloaded_p50, (p99, unloaded_p50)
    finally:
        server.stop(5)
