"""Batched ingest (one transaction per batch, all or nothing, idempotent) and concurrent searches."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from echosearch.server.errors import InvalidRequestError
from echosearch.server.records import NewVideo
from echosearch.server.services.ingest import validate_video
from echosearch.server.storage.catalog import Catalog
from echosearch.server.storage.catalog.video_batch import VideoBatch
from echosearch.server.storage.store import Store
from tests.fixtures.storehelp import DIM, MODEL, add, metadata, new_video, unit


def video(i: int, rng: np.random.Generator, n: int = 3) -> NewVideo:
    return new_video(i, rng, n)


def snapshot(cat: Catalog) -> tuple:
    """Everything a failed batch must leave untouched."""
    cur = cat.cursor()
    return (
        cat.count_videos(),
        cat.count_frames(),
        cat.last_seq(),
        cur.execute("SELECT count(*) FROM video_tags").fetchall()[0][0],
        cur.execute("SELECT count(*) FROM changes").fetchall()[0][0],
        cur.execute("SELECT value FROM counters WHERE name = 'video_id'").fetchall()[0][0],
    )


def test_batch_is_one_transaction_and_matches_reads(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with_store = Store(tmp_path / "s", use_gpu=False)
    cat = with_store.catalog
    add(with_store, 0, rng, n=2)
    items = [video(i, rng, n=i) for i in range(1, 6)]
    out = with_store.add_videos(items)
    assert [c for _, c in out] == [True] * 5
    recs = [r for r, _ in out]
    assert [r.video_id for r in recs] == [2, 3, 4, 5, 6] and [r.seq for r in recs] == [2, 3, 4, 5, 6]
    assert recs == [cat.get_video(r.video_id) for r in recs]  # built, not read back, yet identical
    assert cat.count_frames() == 2 + sum(range(1, 6)) and cat.last_seq() == 6
    for r, item in zip(recs, items):
        np.testing.assert_array_equal(cat.get_frames(r.video_id).embeddings, item.embeddings)
    # the index got every new frame under its catalog id
    assert sorted(with_store.frame_index.ids().tolist()) == sorted(
        fid for v in range(1, 7) for fid in cat.get_frames(v).frame_ids.tolist()
    )
    q = items[3].embeddings[1]
    assert with_store.search_frames(q, 1)[0][0].video_id == recs[3].video_id
    with_store.close()


def test_batch_is_idempotent_within_and_against_the_store(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = Store(tmp_path / "s", use_gpu=False)
    first, _ = add(store, 7, rng, n=2)
    before_index = store.frame_index.ntotal
    a, b = video(8, rng), video(9, rng)
    again_8 = video(8, rng, n=5)  # same sha256, different frames: the first copy wins
    out = store.add_videos([a, video(7, rng), b, again_8])
    assert [c for _, c in out] == [True, False, True, False]
    assert out[1][0] == first and out[3][0] == out[0][0]
    assert store.catalog.count_videos() == 3 and store.catalog.count_frames() == 2 + 3 + 3
    assert store.frame_index.ntotal == before_index + 6
    again = store.add_videos([a, b])  # the whole batch repeated: nothing new, no seq used
    assert [c for _, c in again] == [False, False] and [r for r, _ in again] == [out[0][0], out[2][0]]
    assert store.catalog.last_seq() == 3 and store.add_videos([]) == []
    store.close()


def test_failure_mid_batch_leaves_nothing_of_it(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(2)
    store = Store(tmp_path / "s", use_gpu=False)
    add(store, 0, rng, n=2)
    cat = store.catalog
    before, index_before = snapshot(cat), store.frame_index.ntotal
    real = Catalog._insert_rows
    written = []

    def fail_on_frames(cur, table, rows):
        if table == "frames":  # videos and tags of the batch are already written in this transaction
            written.append(cur.execute("SELECT count(*) FROM videos").fetchall()[0][0])
            raise RuntimeError("disk on fire")
        real(cur, table, rows)

    monkeypatch.setattr(Catalog, "_insert_rows", staticmethod(fail_on_frames))
    with pytest.raises(RuntimeError):
        store.add_videos([video(i, rng) for i in range(1, 5)])
    monkeypatch.undo()
    assert written == [5]  # the failure really came mid-batch, after the video rows
    assert snapshot(cat) == before and store.frame_index.ntotal == index_before
    assert all(cat.find_by_sha256(f"{i:064x}") is None for i in range(1, 5))
    # a bad item anywhere refuses the batch before anything is written: the ingest service names what is wrong,
    # the store asserts (a bad video reaching it is a bug above it)
    bad = dataclasses.replace(video(3, rng), embeddings=np.full((2, DIM), np.nan, np.float32))
    bad = dataclasses.replace(bad, frame_indices=np.arange(2, dtype=np.int64), timestamps=np.zeros(2))
    with pytest.raises(InvalidRequestError, match="NaN"):
        validate_video(bad)
    with pytest.raises(AssertionError):
        store.add_videos([video(1, rng), video(2, rng), bad])
    assert snapshot(cat) == before
    out = store.add_videos([video(i, rng) for i in range(1, 5)])  # the store still works
    assert [r.video_id for r, _ in out] == [2, 3, 4, 5]
    store.close()
    reopened = Store(tmp_path / "s", use_gpu=False)  # and the index matches the catalog after a restart
    assert reopened.frame_index.ntotal == reopened.catalog.count_frames() == 2 + 4 * 3
    reopened.close()


def test_searches_run_together_and_writes_wait_for_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    store = Store(tmp_path / "s", use_gpu=False)
    items = [video(i, rng, n=4) for i in range(20)]
    store.add_videos(items)
    index = store.frame_index
    real_search = index.search
    both_inside = threading.Barrier(2, timeout=10)
    release = threading.Event()
    passed: list[int] = []

    def search_meeting_the_other(q, k, subset=None, *, ranges=None):
        out = real_search(q, k, subset, ranges=ranges)
        both_inside.wait()  # breaks (BrokenBarrierError) if searches were serialised
        passed.append(1)
        release.wait(10)
        return out

    index.search = search_meeting_the_other
    results: dict[int, object] = {}

    def run(i: int) -> None:
        try:
            hits = store.search_frames(items[i].embeddings[2], 1)
            results[i] = hits[0][0].frame_id
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in (5, 11)]
    for t in threads:
        t.start()
    writer_done = threading.Event()

    def write() -> None:
        add(store, 99, rng, n=2)
        writer_done.set()

    for _ in range(1000):  # until both searches are inside FAISS at the same moment
        if len(passed) == 2 or not all(t.is_alive() for t in threads):
            break
        release.wait(0.01)
    assert len(passed) == 2, results
    writer = threading.Thread(target=write)
    writer.start()  # a write must wait for the searches in progress
    assert not writer_done.wait(0.3), "a write ran while searches were in progress"
    release.set()
    for t in threads:
        t.join(10)
    writer.join(10)
    index.search = real_search
    assert writer_done.is_set()
    vids = store.catalog.select_video_ids(None)
    expect = {i: int(store.catalog.get_frames(int(vids[i])).frame_ids[2]) for i in (5, 11)}
    assert results == expect
    store.close()


def _video_batch(first: int, n_videos: int, rng: np.random.Generator, frames_each: int = 3) -> VideoBatch:
    counts = np.full(n_videos, frames_each, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n = int(offsets[-1])
    return VideoBatch(
        label=f"shard {first}",
        model_identity=MODEL,
        sha256=[f"{i:064x}" for i in range(first, first + n_videos)],
        source_name=[f"video{i}.avi" for i in range(first, first + n_videos)],
        size_bytes=np.full(n_videos, 1000, np.int64),
        fps=np.full(n_videos, 30.0),
        total_frames=np.full(n_videos, 40, np.int64),
        width=np.full(n_videos, 112, np.int32),
        height=np.full(n_videos, 112, np.int32),
        metadata=[metadata(i) for i in range(first, first + n_videos)],
        offsets=offsets,
        frame_indices=np.tile(np.arange(frames_each, dtype=np.int64) * 2, n_videos),
        timestamps=np.tile(np.arange(frames_each) / 15.0, n_videos),
        embeddings=unit(rng, n),
    )


def test_imported_shards_are_read_through_the_reader(tmp_path: Path) -> None:
    """Bulk imports record their shard; the layers above the store look it up through the read-only reader."""
    store = Store(tmp_path / "s", search_device="cpu", save_every=0)
    try:
        rng = np.random.default_rng(8)
        assert store.reader.imported_shard("a" * 64) is None
        done = store.import_batch(_video_batch(0, 4, rng), shard_sha256="a" * 64)
        assert done.frames_added == 12 and done.video_ids.tolist() == [1, 2, 3, 4]
        assert store.reader.imported_shard("a" * 64) == (4, 0, 12)
        store.import_batch(_video_batch(2, 4, rng), shard_sha256="b" * 64)  # videos 2 and 3 are stored already
        assert store.reader.imported_shard("b" * 64) == (2, 2, 6)
        assert store.frame_index.ntotal == store.reader.count_frames() == 18
        assert not any(hasattr(store.reader, w) for w in ("import_batch", "add_video", "delete_videos", "catalog"))
    finally:
        store.close()
