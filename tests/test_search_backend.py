"""The store's resident-matrix search backend, run on CPU torch: same answers as the FAISS CPU index."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from echosearch.server.records import VideoFilter
from echosearch.server.storage import search_backend
from echosearch.server.storage.store import Store
from echosearch.server.tasks import ValueRange, custom_task
from echosearch.server.tasks.scoring_service import TaskScorer
from tests.fixtures.storehelp import DIM, new_video, unit

N_VIDEOS = 60


def fill(store: Store, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    videos = [new_video(i, rng) for i in range(N_VIDEOS)]
    store.add_videos(videos[:20])  # two transactions: the matrix is appended to, not just built
    store.add_videos(videos[20:])


def hits(store: Store, q: np.ndarray, k: int, flt=None) -> list[list[int]]:
    """Frame ids per query; checks the scores descend."""
    rows = store.search_frames(q, k, flt)
    for row in rows:
        assert all(a.score >= b.score - 1e-6 for a, b in zip(row, row[1:]))
    return [[h.frame_id for h in row] for row in rows]


def same_scores(got, want) -> None:
    np.testing.assert_allclose([h.score for r in got for h in r], [h.score for r in want for h in r], atol=1e-6)


@pytest.fixture()
def pair(tmp_path: Path):
    faiss_store = Store(tmp_path / "faiss", search_device="cpu", save_every=0)
    torch_store = Store(tmp_path / "torch", search_device="torch-cpu", save_every=0)
    fill(faiss_store)
    fill(torch_store)
    yield faiss_store, torch_store
    faiss_store.close()
    torch_store.close()


def test_backend_resolution_and_stats(pair):
    faiss_store, torch_store = pair
    assert faiss_store.stats()["search_backend"] == "faiss-cpu"
    st = torch_store.stats()
    assert st["search_backend"] == "torch-cpu" and st["search_device"] == "cpu"
    assert st["search_precision"] == "float32" and st["search_memory_bytes"] > 0
    assert torch_store.search_router.mirror.frames.ntotal == faiss_store.frame_index.ntotal


def test_search_equals_faiss_with_filters_and_deletes(pair):
    faiss_store, torch_store = pair
    q = unit(np.random.default_rng(9), 4)
    flt = VideoFilter(views=("A4C",), tags={"site": "north"})
    for store in pair:
        for vid in (3, 10, 11):
            store.delete_video(vid)
    for k, f in ((5, None), (12, flt), (400, None)):
        assert hits(torch_store, q, k, f) == hits(faiss_store, q, k, f)
        same_scores(torch_store.search_frames(q, k, f), faiss_store.search_frames(q, k, f))
    for agg in ("max", "mean"):
        want = faiss_store.search_videos(q[0], 7, aggregation=agg, flt=flt, frames_per_video=2)
        got = torch_store.search_videos(q[0], 7, aggregation=agg, flt=flt, frames_per_video=2)
        assert [v.video_id for v in got] == [v.video_id for v in want]
        np.testing.assert_allclose([v.score for v in got], [v.score for v in want], atol=1e-6)


def test_mirror_rebuilt_at_restart_from_snapshot_or_catalog(tmp_path: Path):
    store = Store(tmp_path, search_device="torch-cpu", save_every=0)
    fill(store)
    store.delete_video(5)
    q = unit(np.random.default_rng(1), 2)
    before = hits(store, q, 10)
    store.close()  # saves a snapshot: the mirror is loaded from the FAISS master
    again = Store(tmp_path, search_device="torch-cpu", save_every=0)
    assert hits(again, q, 10) == before and again.stats()["search_backend"] == "torch-cpu"
    again.close()
    ivf = Store(tmp_path, search_device="torch-cpu", save_every=0, index_factory="IVF4,Flat")  # from the catalog
    assert hits(ivf, q, 10) == before  # exact, although the FAISS index is IVF
    ivf.close()


def test_memory_cap_falls_back_to_faiss_with_one_warning(tmp_path: Path, caplog):
    caplog.set_level(logging.WARNING)
    store = Store(tmp_path, search_device="torch-cpu", gpu_memory_gb=20_000 / 2**30, save_every=0)
    fill(store)  # ~250 frames x 16 dims x 4 B outgrows 20 kB of cap
    assert store.stats()["search_backend"] == "faiss-cpu" and store.search_router.mirror is None
    warnings = [r for r in caplog.records if "faiss-cpu" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    q = unit(np.random.default_rng(2), 1)
    assert len(store.search_frames(q, 5)[0]) == 5
    store.close()


def test_cuda_requested_without_gpu_warns_once_and_uses_cpu(monkeypatch, caplog):
    monkeypatch.setattr(search_backend, "_torch_cuda", lambda: False)
    caplog.set_level(logging.WARNING)
    backend = search_backend.resolve("cuda", 0)
    assert backend.name == "faiss-cpu" and len(caplog.records) == 1
    assert search_backend.resolve("auto", 0).name == "faiss-cpu" and len(caplog.records) == 1
    assert search_backend.resolve("auto", 1).name == "faiss-gpu"
    with pytest.raises(ValueError, match="search device"):
        search_backend.resolve("tpu", 0)


class Prompts:
    """A prompt cache with fixed random text embeddings."""

    def embed(self, texts, persist=True):
        return np.stack([unit(np.random.default_rng(abs(hash(t)) % 2**32), 1, DIM)[0] for t in texts])


def test_task_scores_on_the_matrix_equal_the_catalog_path(pair):
    faiss_store, torch_store = pair
    tasks = [
        custom_task(name="b", kind="binary", prompts=["a", "b", "c"], threshold=0.0),
        custom_task(name="ef", kind="regression", prompts=["ef <#> %"], values=ValueRange(0, 50, 1)),
        custom_task(
            name="cat", kind="categorical", prompts=["a", "b", "c"], values=[0, 1, 2], labels={0: "x", 1: "y", 2: "z"}
        ),
    ]
    calls = []
    real = torch_store.score_resident
    torch_store.score_resident = lambda *a: calls.append(1) or real(*a)
    flt = VideoFilter(views=("PLAX", "PSAX"))
    for task in tasks:
        want = [s for b in TaskScorer(faiss_store, Prompts()).score_videos(task, flt=flt, batch_size=7) for s in b]
        got = [s for b in TaskScorer(torch_store, Prompts()).score_videos(task, flt=flt, batch_size=7) for s in b]
        assert [s.video_id for s in got] == [s.video_id for s in want]
        np.testing.assert_allclose([s.score for s in got], [s.score for s in want], rtol=1e-6, atol=1e-6)
        assert [(s.label, s.decision) for s in got] == [(s.label, s.decision) for s in want]
    assert calls, "the resident matrix was not used"


def test_grpc_info_and_search_on_the_resident_backend(tmp_path: Path):
    """A real server with the torch backend on CPU: GetServerInfo reports it; search and scoring go through it."""
    from echosearch.client import Client
    from tests.fixtures.servers import start_inprocess
    from tests.fixtures.synthetic import make_video

    running = start_inprocess(tmp_path / "data", search_device="torch-cpu")
    try:
        with Client(running.address, timeout=60) as client:
            stored = client.ingest(make_video(seed=1), source_name="v.avi")
            info = client.info()
            assert (info.search_backend, info.search_device) == ("torch-cpu", "cpu")
            assert info.search_precision == "float32" and info.search_memory_bytes > 0
            hits = client.search_by_text("a heart", k=3)
            assert hits and hits[0].video.video_id == stored.video.video_id
            scores = list(client.score("pacemaker", video_ids=[stored.video.video_id]))
            assert len(scores) == 1 and scores[0].video_id == stored.video.video_id
    finally:
        running.stop(2)
