"""Store deletes: batched, tombstoned, compacted off the search lock, and never blocking searches."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from echosearch.server.errors import NotFoundError
from echosearch.server.records import NewVideo, VideoFilter
from echosearch.server.storage.store import Store
from tests.fixtures.storehelp import add, jpeg, new_video, unit


@pytest.fixture()
def store(tmp_path: Path):
    s = Store(tmp_path, search_device="cpu", save_every=0)
    rng = np.random.default_rng(0)
    s.add_videos([new_video(i, rng) for i in range(40)])
    yield s
    s.close()


def test_delete_videos_in_one_transaction_then_restart(store: Store, tmp_path: Path):
    ids = store.catalog.select_video_ids(None)
    gone = ids[:12].tolist()
    seq = store.catalog.last_seq()
    assert store.delete_videos(gone) == 12
    assert store.catalog.last_seq() == seq + 12  # one change-log entry per video
    left = set(ids.tolist()) - set(gone)
    assert set(store.mean_index.ids().tolist()) == left
    found = {h.video_id for row in store.search_frames(unit(np.random.default_rng(1), 3), 500) for h in row}
    assert found == left
    assert store.frame_index._rows.dead == 0  # 30 % dead: compacted
    with pytest.raises(NotFoundError):
        store.delete_videos([int(ids[20]), 10**9])  # all or nothing
    assert int(ids[20]) in set(store.mean_index.ids().tolist())
    store.close()
    again = Store(tmp_path, search_device="cpu", save_every=0)  # from the snapshot, tombstones included
    assert set(again.mean_index.ids().tolist()) == left
    again.close()


def test_tombstones_survive_a_snapshot(store: Store, tmp_path: Path):
    ids = store.catalog.select_video_ids(None)
    store.delete_video(int(ids[0]))  # 2.5 %: tombstoned, not compacted
    assert store.frame_index._rows.dead > 0 and store.mean_index._rows.dead == 1
    store.close()
    again = Store(tmp_path, search_device="cpu", save_every=0)
    assert int(ids[0]) not in set(again.mean_index.ids().tolist())
    hits = again.search_frames(unit(np.random.default_rng(2), 2), 500)
    assert all(h.video_id != int(ids[0]) for row in hits for h in row)
    again.close()


def test_searches_do_not_wait_for_the_delete_transaction(store: Store):
    """A slow catalog delete (here 1.5 s) holds no lock that searches need."""
    real = store.catalog.delete_videos
    entered = threading.Event()

    def slow_delete(video_ids):
        entered.set()
        time.sleep(1.5)
        return real(video_ids)

    store.catalog.delete_videos = slow_delete
    victim = int(store.catalog.select_video_ids(None)[5])
    th = threading.Thread(target=store.delete_video, args=(victim,))
    th.start()
    assert entered.wait(10)
    q = unit(np.random.default_rng(3), 1)
    t = time.perf_counter()
    store.search_frames(q, 5)
    store.search_frames(q, 5, VideoFilter(views=("A4C",)))
    waited = time.perf_counter() - t
    th.join()
    assert waited < 1.0, f"searches waited {waited:.2f} s behind a delete"
    assert victim not in set(store.mean_index.ids().tolist())


def test_filter_candidates_follow_writes(store: Store):
    """The per-filter candidate cache never serves a stale cohort after an ingest or a delete."""
    flt = VideoFilter(views=("PLAX",))
    q = unit(np.random.default_rng(4), 1)

    def found() -> set[int]:
        return {h.video_id for h in store.search_frames(q, 1000, flt)[0]}

    before = found()
    assert before == found()  # served from the cache the second time
    rec, _ = add(store, 1000, np.random.default_rng(5))  # 1000 % 3 == 1: a PLAX video
    assert found() == before | {rec.video_id}
    store.delete_video(rec.video_id)
    assert found() == before


def _stored_jpegs(store: Store, jpegs: list[bytes]) -> int:
    """How many frame_thumbnails rows hold any of these exact JPEG bytes, whatever their frame id."""
    cur = store.catalog.cursor()
    return sum(cur.execute("SELECT count(*) FROM frame_thumbnails WHERE jpeg = ?", [j]).fetchall()[0][0] for j in jpegs)


@pytest.mark.parametrize("how", ["delete_video", "delete_videos"])
def test_a_deleted_video_leaves_no_thumbnail(tmp_path: Path, how: str):
    """Issue 21 R15: deleting one video or many removes their frame thumbnails too (one delete path)."""
    store = Store(tmp_path / "s", search_device="cpu", save_every=0)
    try:
        rng = np.random.default_rng(6)
        videos = [_thumbnailed(i, rng) for i in range(5)]
        recs = [rec for rec, _ in store.add_videos(videos)]
        jpegs = {rec.video_id: list(video.thumbnails) for rec, video in zip(recs, videos)}
        doomed, kept = [recs[1].video_id, recs[3].video_id], [recs[0].video_id, recs[2].video_id, recs[4].video_id]
        assert all(_stored_jpegs(store, jpegs[v]) == 3 for v in doomed)  # the search can find them
        if how == "delete_video":
            for v in doomed:
                store.delete_video(v)
        else:
            assert store.delete_videos(doomed) == 2
        assert [_stored_jpegs(store, jpegs[v]) for v in doomed] == [0, 0]
        lo, hi = doomed[0] << 20, (doomed[-1] + 1) << 20
        rows = store.catalog.cursor().execute(
            "SELECT frame_id FROM frame_thumbnails WHERE frame_id >= ? AND frame_id < ?", [lo, hi]
        )
        assert sorted(r[0] >> 20 for r in rows.fetchall()) == [recs[2].video_id] * 3  # only the kept one between
        assert [_stored_jpegs(store, jpegs[v]) for v in kept] == [3, 3, 3]
        exported = tmp_path / "all.parquet"
        store.reader.export_parquet(exported)
        out = set(pq.read_table(exported, columns=["thumbnail"]).column("thumbnail").to_pylist())
        assert out == {j for v in kept for j in jpegs[v]}
    finally:
        store.close()


def _thumbnailed(i: int, rng: np.random.Generator) -> NewVideo:
    """Synthetic video i with 3 frames, each with its own JPEG thumbnail."""
    return dataclasses.replace(new_video(i, rng, n=3), thumbnails=tuple(jpeg(10 * i + k) for k in range(3)))
