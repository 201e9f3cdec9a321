"""The use cases of services/ end to end, in process: real tiny model, real DuckDB file, real FAISS, PyAV-decoded videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echosearch.server.errors import (
    InvalidRequestError,
    InvalidVideoError,
    ModelMismatchError,
    NotFoundError,
    TooLargeError,
)
from echosearch.server.records import Sampling, TaskRequest, VideoFilter, VideoMetadata
from echosearch.server.services import ingest, search, tasks, videos
from echosearch.server.services.info import server_info
from tests.fixtures.servers import open_tiny
from tests.fixtures.synthetic import make_video


@pytest.fixture(scope="module")
def services(tmp_path_factory, tiny_model):
    svc = open_tiny(tmp_path_factory.mktemp("services"), model=tiny_model)
    for i in range(4):
        ingest.ingest_video(
            svc,
            make_video(seed=i, frames=30 + 6 * i),
            source_name=f"v{i}.avi",
            metadata=VideoMetadata(study_id=f"s{i % 2}", view="A4C" if i < 3 else "PLAX", tags={"site": "a"}),
        )
    yield svc
    svc.close()


def test_ingest_is_idempotent_by_content(services):
    before = server_info(services).videos
    again = ingest.ingest_video(services, make_video(seed=0, frames=30), source_name="renamed.avi")
    assert again.already_stored
    assert again.video.source_name == "v0.avi"
    assert server_info(services).videos == before


def test_ingest_stores_reference_sampling(services):
    record, frames = videos.get_video(services, 1, with_embeddings=True)
    assert record.total_frames == 30 and record.sampled_frames == 15
    assert frames.frame_indices.tolist() == list(range(0, 30, 2))
    assert np.allclose(np.linalg.norm(frames.embeddings, axis=1), 1.0, atol=1e-5)


def test_ingest_rejects_bad_input(services):
    with pytest.raises(InvalidVideoError):
        ingest.ingest_video(services, b"definitely not a video", source_name="junk.avi")
    with pytest.raises(InvalidRequestError, match="channel order"):
        ingest.ingest_video(services, make_video(seed=9), source_name="x.avi", channel_order="gbr")
    with pytest.raises(InvalidRequestError):
        ingest.ingest_video(services, make_video(seed=9), source_name="x.avi", sampling=Sampling(mode="every", step=0))
    config = services.config
    services.config = config.with_options(max_upload_bytes=100)
    try:
        with pytest.raises(TooLargeError, match="upload limit"):
            ingest.ingest_video(services, make_video(seed=9), source_name="big.avi")
    finally:
        services.config = config
    assert server_info(services).videos == 4


def test_search_by_text_scores_match_stored_embeddings(services):
    query = services.model.encode_texts(["echo density in right ventricle"])[0]
    for aggregation in ("max", "mean"):
        hits = search.search_by_text(services, "echo density in right ventricle", k=4, aggregation=aggregation)
        expected = {}
        for vid in range(1, 5):
            sims = videos.get_video(services, vid, with_embeddings=True)[1].embeddings @ query
            expected[vid] = sims.max() if aggregation == "max" else sims.mean()
        order = sorted(expected, key=lambda v: -expected[v])
        assert [h.video.video_id for h in hits] == order
        for h in hits:
            assert h.score == pytest.approx(expected[h.video.video_id], abs=1e-5)


def test_search_filter_and_arguments(services):
    hits = search.search_by_text(services, "pacer lead", k=10, flt=VideoFilter(views=("PLAX",)))
    assert [h.video.video_id for h in hits] == [4]
    with pytest.raises(InvalidRequestError, match="aggregation"):
        search.search_by_text(services, "pacer lead", aggregation="median")
    with pytest.raises(InvalidRequestError, match="empty"):
        search.search_by_text(services, "   ")
    with pytest.raises(InvalidRequestError, match="k must be"):
        search.search_by_text(services, "pacer lead", k=0)


def test_search_by_video_excludes_itself(services):
    hits = search.search_by_video(services, 2, k=10)
    assert 2 not in [h.video.video_id for h in hits]
    assert len(hits) == 3
    with pytest.raises(NotFoundError):
        search.search_by_video(services, 999)


def test_score_top_k_equals_full_scan(services):
    task = tasks.get_task(services, "pacemaker")
    full = [s for batch in tasks.score_videos(services, task) for s in batch]
    top = [s for batch in tasks.score_videos(services, task, top_k=2) for s in batch]
    best = sorted(full, key=lambda s: -s.score)[:2]
    assert [s.video_id for s in top] == [s.video_id for s in best]
    for a, b in zip(top, best):
        assert a.score == pytest.approx(b.score, abs=1e-6)
        assert a.decision == (a.score > 0.298)


def test_binary_decision_is_strictly_above_the_threshold(services):
    # A threshold equal to a video's exact score: the published '>' says no; '>=' would say yes.
    prompts = ("PACER LEAD IN RIGHT VENTRICLE. ",)
    probe = tasks.custom_task(services, TaskRequest(name="probe", kind="binary", prompts=prompts))
    scores = {s.video_id: s.score for b in tasks.score_videos(services, probe) for s in b}
    vid, at = sorted(scores.items())[0]
    on_it = tasks.custom_task(services, TaskRequest(name="on", kind="binary", prompts=prompts, threshold=at))
    decided = {s.video_id: s for b in tasks.score_videos(services, on_it) for s in b}
    assert decided[vid].score == at and decided[vid].decision is False
    assert all(d.decision == (d.score > at) for d in decided.values())
    below_at = float(np.nextafter(np.float32(at), np.float32(-1)))
    below = tasks.custom_task(services, TaskRequest(name="below", kind="binary", prompts=prompts, threshold=below_at))
    assert next(s for b in tasks.score_videos(services, below, video_ids=[vid]) for s in b).decision is True


@pytest.mark.parametrize("task_name", ["ejection_fraction", "pacemaker"])
def test_score_top_and_bottom_k_equal_a_full_scan_sorted(services, task_name):
    """The 3 highest / lowest of a regression task by value (exact), of a binary task by score (mean index)."""
    task = tasks.get_task(services, task_name)
    full = [s for batch in tasks.score_videos(services, task) for s in batch]
    by = (lambda s: s.value) if task.kind.value == "regression" else (lambda s: s.score)
    for k in (1, 3, 10):
        top = [s for batch in tasks.score_videos(services, task, top_k=k, batch_size=2) for s in batch]
        bottom = [s for batch in tasks.score_videos(services, task, bottom_k=k) for s in batch]
        assert [by(s) for s in top] == pytest.approx([by(s) for s in sorted(full, key=by, reverse=True)[:k]], abs=1e-6)
        assert [by(s) for s in bottom] == pytest.approx([by(s) for s in sorted(full, key=by)[:k]], abs=1e-6)
        assert len(top) == len(bottom) == min(k, len(full))


@pytest.mark.parametrize(("task_name", "full_scans"), [("ejection_fraction", 3), ("pacemaker", 2)])
def test_scoring_from_one_catalog_scan_equals_scoring_by_batches_of_ids(services, monkeypatch, task_name, full_scans):
    """Issue 18: a selection of most of the store is scored from one sequential scan of the frames; the scores,
    their order and the reply sizes are those of reading the selection by batches of ids."""
    from echosearch.server.storage.reader import CatalogReader
    from echosearch.server.tasks import scoring_service

    task = tasks.get_task(services, task_name)
    scans = []
    real = CatalogReader.scan_video_embeddings

    def counted(self):
        scans.append(1)
        return real(self)

    def run(**kw):
        return [[(s.video_id, s.score, s.value) for s in b] for b in tasks.score_videos(services, task, **kw)]

    monkeypatch.setattr(CatalogReader, "scan_video_embeddings", counted)
    cases = [dict(batch_size=3), dict(batch_size=1, flt=VideoFilter(views=("A4C",))), dict(top_k=2, batch_size=1)]
    scanned = [run(**kw) for kw in cases]
    assert len(scans) == full_scans  # a binary task's top k comes from the mean index, not a full scan
    monkeypatch.setattr(scoring_service, "SCAN_SHARE", 2.0)  # never scan: batches of ids
    by_ids = [run(**kw) for kw in cases]
    assert len(scans) == full_scans
    for a, b in zip(scanned, by_ids):  # equal up to float32 rounding (BLAS sums in another block order)
        assert [[(v, val) for v, _, val in reply] for reply in a] == [[(v, val) for v, _, val in reply] for reply in b]
        assert [s for reply in a for _, s, _ in reply] == pytest.approx(
            [s for reply in b for _, s, _ in reply], abs=1e-6
        )
    assert [len(b) for b in scanned[0]] == [3, 1] and len(scanned[1]) == 3


def test_score_top_k_of_a_categorical_task_ranks_by_value(services):
    task = tasks.custom_task(
        services,
        TaskRequest(name="size", kind="categorical", prompts=("SMALL.", "MEDIUM.", "LARGE."), values=(0, 1, 2)),
    )
    full = [s for batch in tasks.score_videos(services, task) for s in batch]
    top = [s for batch in tasks.score_videos(services, task, top_k=2) for s in batch]
    assert [s.value for s in top] == sorted((s.value for s in full), reverse=True)[:2]


def test_score_selection_batches_and_errors(services):
    ef = tasks.get_task(services, "ejection_fraction")
    batches = list(tasks.score_videos(services, ef, batch_size=3))
    assert [len(b) for b in batches] == [3, 1]
    assert all(0 <= s.value <= 100 for b in batches for s in b)
    picked = [s.video_id for b in tasks.score_videos(services, ef, video_ids=[3, 1]) for s in b]
    assert sorted(picked) == [1, 3]
    with pytest.raises(NotFoundError, match="999"):
        list(tasks.score_videos(services, ef, video_ids=[1, 999]))
    with pytest.raises(InvalidRequestError, match="not both"):
        list(tasks.score_videos(services, ef, top_k=3, bottom_k=3))
    with pytest.raises(NotFoundError):
        tasks.get_task(services, "pacemakr")


def test_custom_task_scores_and_validates(services):
    task = tasks.custom_task(
        services, TaskRequest(name="lead", kind="binary", prompts=("PACER LEAD IN RIGHT VENTRICLE. ",), threshold=0.1)
    )
    scores = [s for b in tasks.score_videos(services, task) for s in b]
    assert len(scores) == 4 and all(s.decision == (s.score > 0.1) for s in scores)
    with pytest.raises(InvalidRequestError):
        tasks.custom_task(
            services, TaskRequest(name="ef", kind="regression", prompts=("EF IS HIGH",), values=(0, 100, 1))
        )


def test_list_videos_pages(services):
    page, token, total = videos.list_videos(services, page_size=3)
    assert total == 4 and [r.video_id for r in page] == [1, 2, 3] and token
    rest, token2, _ = videos.list_videos(services, page_size=3, page_token=token)
    assert [r.video_id for r in rest] == [4] and token2 == ""
    with pytest.raises(InvalidRequestError, match="page token"):
        videos.list_videos(services, page_token="garbage!")


def test_delete_then_reopen(tmp_path: Path, tiny_model):
    svc = open_tiny(tmp_path, model=tiny_model)
    a = ingest.ingest_video(svc, make_video(seed=11), source_name="a.avi").video.video_id
    b = ingest.ingest_video(svc, make_video(seed=12), source_name="b.avi").video.video_id
    videos.delete_video(svc, a)
    with pytest.raises(NotFoundError):
        videos.delete_video(svc, a)
    svc.close()
    svc = open_tiny(tmp_path, model=tiny_model)
    try:
        assert [h.video.video_id for h in search.search_by_text(svc, "heart", k=5)] == [b]
    finally:
        svc.close()


def test_store_bound_to_another_model_is_refused(tmp_path: Path, tiny_model, monkeypatch):
    svc = open_tiny(tmp_path, model=tiny_model)
    ingest.ingest_video(svc, make_video(seed=13), source_name="a.avi")
    svc.close()
    # Another model's identity (a different weights digest) must not write into, or search, this store.
    monkeypatch.setattr(tiny_model, "identity", "random:tiny@sha256:0000000000000000")
    with pytest.raises(ModelMismatchError, match="--model"):
        open_tiny(tmp_path, model=tiny_model)
