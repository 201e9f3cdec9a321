"""Store: exact filtered search, video aggregation, persistence, catch-up, rebuild, ANN factories."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echosearch.server.errors import InvalidRequestError, ModelMismatchError, NotFoundError
from echosearch.server.records import VideoFilter
from echosearch.server.storage.frame_ids import frame_ids_for
from echosearch.server.storage.store import Store
from tests.fixtures.storehelp import DIM, add, metadata, unit

N_VIDEOS = 40


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Store:
    store = Store(tmp_path_factory.mktemp("store"), use_gpu=False)
    rng = np.random.default_rng(0)
    for i in range(N_VIDEOS):
        add(store, i, rng)
    yield store
    store.close()


def all_frames(store: Store, vids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame ids, owning video ids, embeddings) straight from the catalog — the brute-force truth."""
    found, offsets, emb = store.catalog.load_embeddings(vids)
    counts = np.diff(offsets)
    fids = (
        np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(found, counts)])
        if len(found)
        else np.empty(0, np.int64)
    )
    return fids, np.repeat(found, counts), emb


filters = st.builds(
    VideoFilter,
    views=st.none() | st.tuples(st.sampled_from(["A4C", "PLAX", "PSAX", "none"])),
    patient_ids=st.none() | st.lists(st.sampled_from(["p0", "p1", "p2"]), max_size=2).map(tuple),
    acquired_after=st.none()
    | st.integers(0, 45).map(lambda d: datetime(2024, 1, 1, tzinfo=UTC).replace(day=1 + d % 28)),
    tags=st.dictionaries(
        st.sampled_from(["site", "probe"]), st.sampled_from(["north", "south", "x1", "x2"]), max_size=1
    ),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=filters, seed=st.integers(0, 1000), k=st.integers(1, 30))
def test_filtered_search_equals_brute_force(filled: Store, flt: VideoFilter, seed: int, k: int) -> None:
    q = unit(np.random.default_rng(seed), 2, DIM)
    vids = filled.catalog.select_video_ids(flt)
    fids, owners, emb = all_frames(filled, vids)
    hits = filled.search_frames(q, k, flt)
    for qi in range(2):
        scores = emb @ q[qi]
        order = np.argsort(-scores, kind="stable")[:k]
        assert [h.frame_id for h in hits[qi]] == fids[order].tolist()
        np.testing.assert_allclose([h.score for h in hits[qi]], scores[order], atol=1e-5)
        assert all(h.video_id == h.frame_id >> 20 for h in hits[qi])
    # video search, both aggregations, equals brute force on the filtered set
    if len(vids):
        s = emb @ q[0]
        best = {int(v): float(s[owners == v].max()) for v in vids}
        mean = {int(v): float(s[owners == v].mean()) for v in vids}
        for agg, truth in (("max", best), ("mean", mean)):
            got = filled.search_videos(q[0], k, aggregation=agg, flt=flt)
            want = sorted(truth.items(), key=lambda kv: -kv[1])[:k]
            assert [h.video_id for h in got] == [v for v, _ in want]
            np.testing.assert_allclose([h.score for h in got], [x for _, x in want], atol=1e-5)


def test_search_videos_best_frames_and_exclude(filled: Store) -> None:
    q = filled.catalog.get_frames(7).embeddings[0]
    hits = filled.search_videos(q, 5, frames_per_video=3)
    assert hits[0].video_id == 7 and hits[0].score == pytest.approx(1.0)
    for h in hits:
        frames = filled.catalog.get_frames(h.video_id)
        s = frames.embeddings @ q
        assert [f.frame_id for f in h.best_frames] == frames.frame_ids[np.argsort(-s, kind="stable")[:3]].tolist()
        assert h.best_frames[0].score == pytest.approx(h.score, abs=1e-5)
    excluded = filled.search_videos(q, 5, exclude=[7, hits[1].video_id])
    assert [h.video_id for h in excluded] == [
        h.video_id for h in filled.search_videos(q, 7) if h.video_id not in (7, hits[1].video_id)
    ][:5]
    with pytest.raises(AssertionError):  # the search service validates aggregation; the store only asserts
        filled.search_videos(q, 5, aggregation="median")
    with pytest.raises(InvalidRequestError):
        filled.search_frames(np.zeros(DIM + 1, np.float32), 5)


def test_top_videos_by_mean_is_exact_unnormalised(filled: Store) -> None:
    prompts = unit(np.random.default_rng(5), 4, DIM)
    mean_prompt = prompts.mean(axis=0)  # not re-normalised on purpose
    vids = filled.catalog.select_video_ids(None)
    _, offsets, emb = filled.catalog.load_embeddings(vids)
    truth = [float((emb[offsets[i] : offsets[i + 1]] @ prompts.T).mean()) for i in range(len(vids))]
    got = filled.top_videos_by_mean(mean_prompt, 10)
    order = np.argsort(-np.asarray(truth), kind="stable")[:10]
    assert [v for v, _ in got] == vids[order].tolist()
    np.testing.assert_allclose([s for _, s in got], np.asarray(truth)[order], atol=1e-5)
    only = filled.top_videos_by_mean(mean_prompt, 3, VideoFilter(views=("PLAX",)))
    assert all(filled.catalog.get_video(v).metadata.view == "PLAX" for v, _ in only)


def test_idempotent_delete_and_restart(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = Store(tmp_path, use_gpu=False)
    recs = [add(store, i, rng, n=3)[0] for i in range(6)]
    again, created = add(store, 2, rng, n=3)
    assert not created and again == recs[2] and store.frame_index.ntotal == 18
    q = store.catalog.get_frames(recs[3].video_id).embeddings[1]
    store.delete_video(recs[3].video_id)
    with pytest.raises(NotFoundError):
        store.delete_video(recs[3].video_id)
    assert all(h.video_id != recs[3].video_id for h in store.search_frames(q, 18)[0])
    store.close()
    store = Store(tmp_path, use_gpu=False)
    assert store.frame_index.ntotal == 15 and store.mean_index.ntotal == 5
    assert all(h.video_id != recs[3].video_id for h in store.search_frames(q, 18)[0])
    with pytest.raises(ModelMismatchError):
        add(store, 99, rng, model="another-model")
    assert store.stats()["videos"] == 5
    store.close()


SNAPSHOTTED = "IVF2,Flat"  # trained after 78 frames: a snapshot file of its own (a Flat index keeps none)


def test_catch_up_replays_only_new_changes(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(2)
    store = Store(tmp_path, use_gpu=False, save_every=0, index_factory=SNAPSHOTTED, nprobe=2)
    for i in range(20):
        add(store, i, rng, n=4)
    assert store.stats()["index_trained"]
    store.close()  # snapshot at seq 20
    store = Store(tmp_path, use_gpu=False, save_every=0, index_factory=SNAPSHOTTED, nprobe=2)
    for i in range(20, 23):
        add(store, i, rng, n=4)
    store.delete_video(1)
    store.catalog.close()  # "crash": catalog has 4 changes the snapshot lacks
    loaded = []
    with caplog.at_level(logging.INFO):
        from echosearch.server.storage.catalog import Catalog

        real = Catalog.load_embeddings

        def spy(self, ids):
            loaded.append(len(ids))
            return real(self, ids)

        Catalog.load_embeddings = spy
        try:
            store = Store(tmp_path, use_gpu=False, index_factory=SNAPSHOTTED, nprobe=2)
        finally:
            Catalog.load_embeddings = real
    assert loaded == [3]  # only the three new videos were read
    assert "4 changes" in caplog.text and "rebuilding" not in caplog.text
    assert store.frame_index.ntotal == 22 * 4 and store.mean_index.ntotal == 22
    assert store.stats()["index_seq"] == store.catalog.last_seq() == 24
    store.close()


def test_a_flat_index_keeps_no_copy_of_the_vectors(tmp_path: Path, caplog) -> None:
    """Vectors are stored once: a Flat store's index folder holds only a manifest; each open rebuilds the
    index (and the video means) from one scan of the catalog, equal to the index it had before."""
    rng = np.random.default_rng(5)
    store = Store(tmp_path, use_gpu=False)
    for i in range(30):
        add(store, i, rng, n=1 + i % 4)  # videos of different lengths, so the scan's batches split some
    store.delete_video(7)
    q = unit(rng, 3, DIM)
    before = store.search_frames(q, 10)
    mean_before = store.mean_index.reconstruct(np.array([12]))
    store.close()
    assert [p.name for p in (tmp_path / "index").iterdir()] == ["manifest.json"]
    with caplog.at_level(logging.INFO):
        from echosearch.server.storage.catalog import Catalog

        real = Catalog.scan_frame_embeddings
        Catalog.scan_frame_embeddings = lambda self, batch_rows=65536: real(self, 5)  # batches cut videos apart
        try:
            store = Store(tmp_path, use_gpu=False)
        finally:
            Catalog.scan_frame_embeddings = real
    assert "keeps its vectors only in the catalog" in caplog.text
    assert store.search_frames(q, 10) == before
    assert np.array_equal(store.mean_index.reconstruct(np.array([12])), mean_before)
    assert store.frame_index.ntotal == store.catalog.count_frames() == sum(1 + i % 4 for i in range(30)) - 3
    assert store.mean_index.ntotal == 29
    store.close()


@pytest.mark.parametrize("factory", ["IVF8,Flat", "HNSW32"])
def test_ann_store_trains_filters_exactly_and_survives_restart(tmp_path: Path, factory: str) -> None:
    rng = np.random.default_rng(4)
    store = Store(tmp_path, index_factory=factory, use_gpu=False, nprobe=8)
    for i in range(80):
        add(store, i, rng, n=5)  # 400 frames > 8 * 39 training points
    assert store.stats()["index_trained"]
    flt = VideoFilter(views=("A4C",))
    q = unit(rng, 1, DIM)
    fids, _, emb = all_frames(store, store.catalog.select_video_ids(flt))
    want = fids[np.argsort(-(emb @ q[0]), kind="stable")[:10]].tolist()
    assert [h.frame_id for h in store.search_frames(q, 10, flt)[0]] == want  # small filtered set: exact
    store.delete_video(3)
    store.close()
    store = Store(tmp_path, index_factory=factory, use_gpu=False, nprobe=8)
    assert store.frame_index.ntotal == 395 and store.stats()["index_trained"]
    assert all(h.video_id != 3 for h in store.search_frames(q, 50)[0])
    store.close()
    store = Store(tmp_path, index_factory="Flat", use_gpu=False)  # another factory: rebuilt
    assert store.frame_index.ntotal == 395 and store.stats()["index_factory"] == "Flat"
    store.close()


def test_empty_store(tmp_path: Path) -> None:
    store = Store(tmp_path, use_gpu=False)
    assert store.search_frames(np.ones(DIM, np.float32), 5) == [[]]
    assert store.search_videos(np.ones(DIM, np.float32), 5) == []
    assert store.top_videos_by_mean(np.ones(DIM, np.float32), 5) == []
    assert store.stats()["videos"] == 0
    store.close()
    assert not (tmp_path / "index").exists()
    assert metadata(0).view == "A4C"


def test_snapshot_labelled_older_than_its_contents_does_not_duplicate(tmp_path: Path) -> None:
    """Issue 13 item 12: catch-up is idempotent, and the index size is checked against the catalog after opening."""
    import json

    rng = np.random.default_rng(12)
    store = Store(tmp_path, save_every=0)
    for i in range(3):
        add(store, i, rng, n=4)
    store.save()
    manifest = tmp_path / "index" / "manifest.json"
    early = json.loads(manifest.read_text())["seq"]
    for i in range(3, 6):
        add(store, i, rng, n=4)
    store.close()
    saved = json.loads(manifest.read_text())
    saved["seq"] = early  # the snapshot holds six videos but claims to cover only the first three
    manifest.write_text(json.dumps(saved))

    store = Store(tmp_path, save_every=0)
    try:
        assert store.frame_index.ntotal == store.catalog.count_frames() == 24
        assert store.mean_index.ntotal == 6
        query = store.catalog.get_frames(4).embeddings[0]
        hits = store.search_frames(query[None, :], 24)[0]
        ids = [h.frame_id for h in hits]
        assert len(ids) == len(set(ids)) == 24
    finally:
        store.close()


def test_index_size_mismatch_after_opening_rebuilds(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(13)
    store = Store(tmp_path, save_every=0, index_factory="HNSW8")
    for i in range(3):
        add(store, i, rng, n=3)
    store.frame_index.add(np.array([10**12], dtype=np.int64), unit(rng, 1))  # a stray vector in the snapshot
    store._indexes.saved_seq = -1
    store.close()
    with caplog.at_level("WARNING"):
        store = Store(tmp_path, save_every=0, index_factory="HNSW8")
    try:
        assert store.frame_index.ntotal == store.catalog.count_frames() == 9
        assert "rebuilding" in caplog.text
    finally:
        store.close()


def test_full_disk_at_close_leaves_no_temp_file_and_loses_nothing(tmp_path: Path, monkeypatch, caplog) -> None:
    """Issue 13 item 11: a snapshot that cannot be written is cleaned up; the catalog still has everything."""
    import errno

    from echosearch.server.storage import snapshots

    rng = np.random.default_rng(14)
    store = Store(tmp_path, save_every=0, index_factory="HNSW8")  # a snapshot file to write (Flat has none)
    for i in range(3):
        add(store, i, rng, n=2)

    def full_disk(index, path) -> None:
        Path(path).write_bytes(b"")  # what a full disk leaves: a 0-byte file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snapshots, "write_index", full_disk)
    with caplog.at_level("ERROR"):
        store.close()  # no traceback out of close
    assert "could not save the index snapshot" in caplog.text
    assert list((tmp_path / "index").glob("*.tmp")) == []
    monkeypatch.undo()

    (tmp_path / "index" / "frames-99.faiss.tmp").write_bytes(b"")  # left by a crash mid-save
    store = Store(tmp_path, save_every=0, index_factory="HNSW8")
    try:
        assert store.frame_index.ntotal == store.catalog.count_frames() == 6
        assert list((tmp_path / "index").glob("*.tmp")) == []
    finally:
        store.close()


def test_a_video_deleted_between_ranking_and_frame_lookup_is_left_out(tmp_path: Path, monkeypatch) -> None:
    """Writers commit without the search lock: the catalog can lose a ranked video's frames mid-search."""
    store = Store(tmp_path, use_gpu=False)
    try:
        rng = np.random.default_rng(7)
        vids = [add(store, i, rng)[0].video_id for i in range(4)]
        q = unit(rng, 1)[0]
        ranked = [h.video_id for h in store.search_videos(q, 4, frames_per_video=1)]
        gone = ranked[0]
        real = store.catalog.frame_info

        def frame_info_after_delete(ids):  # the delete commits between the embeddings read and this one
            return {f: v for f, v in real(ids).items() if f >> 20 != gone}

        monkeypatch.setattr(store.catalog, "frame_info", frame_info_after_delete)
        hits = store.search_videos(q, 4, frames_per_video=1)
        assert [h.video_id for h in hits] == ranked[1:]
        assert all(h.best_frames for h in hits)
        assert sorted(vids) == sorted(ranked)
    finally:
        store.close()


def test_an_index_of_codes_ranks_videos_by_their_exact_best_frame(tmp_path: Path) -> None:
    """Issue 18: SQ/PQ codes round scores; the store re-ranks 3k candidate videos by their exact best frame
    (from the catalog), so a video's score is exact and the ranking is the exact one among what was probed."""
    rng = np.random.default_rng(21)
    store = Store(tmp_path, index_factory="IVF4,SQ4", use_gpu=False, nprobe=4)  # every list probed
    for i in range(300):
        add(store, i, rng, n=4)  # 1,200 frames > the 1,000 SQ4 trains on
    assert store.stats()["index_trained"] and not store.frame_index.exact_storage
    vids = store.catalog.select_video_ids(None)
    found, offsets, emb = store.catalog.load_embeddings(vids)
    recalls = []
    for q in unit(rng, 20, DIM):
        exact = np.maximum.reduceat(emb @ q, offsets[:-1])  # each video's exact best-frame score
        hits = store.search_videos(q, 10, frames_per_video=2)
        assert len(hits) == 10
        for hit in hits:
            assert hit.score == pytest.approx(float(exact[np.flatnonzero(found == hit.video_id)[0]]), abs=1e-5)
            assert hit.best_frames[0].score == pytest.approx(hit.score, abs=1e-6) and len(hit.best_frames) == 2
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        recalls.append(len({h.video_id for h in hits} & set(found[np.argsort(-exact)[:10]].tolist())) / 10)
    assert np.mean(recalls) >= 0.95, recalls
    store.close()
