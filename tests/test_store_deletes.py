"""Store deletes: batched, tombstoned, compacted off the search lock, and never blocking searches."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from storehelp import add, new_video, unit

from echosearch.server.errors import NotFoundError
from echosearch.server.records import VideoFilter
from echosearch.server.storage.store import Store


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
    real = store.catalog.delete_video
    entered = threading.Event()

    def slow_delete(video_id: int) -> None:
        entered.set()
        time.sleep(1.5)
        real(video_id)

    store.catalog.delete_video = slow_delete
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
