"""Issue 21 R5: a bulk shard is one transaction, but its index adds hold the search lock in bounded pieces."""

from __future__ import annotations

import numpy as np

from echosearch.server.bulk.shards import read_shard, shard_table, write_shard
from echosearch.server.limits import Limits
from echosearch.server.storage import store as store_module
from echosearch.server.storage.store import Store, index_pieces
from tests.fixtures.shards import one_frame_videos
from tests.fixtures.storehelp import DIM, MODEL, unit


def _shard(tmp_path, n: int):
    rng = np.random.default_rng(5)
    emb = unit(rng, n)
    videos = one_frame_videos(emb)
    path = write_shard(tmp_path / "shards", shard_table(videos, MODEL, DIM))
    limits = Limits()
    batch = read_shard(
        path, path.name, model_identity=MODEL, dim=DIM, max_rows=limits.max_shard_rows, max_bytes=limits.max_shard_bytes
    )
    return batch, emb


def test_index_pieces_cover_every_video_once_in_whole_videos():
    offsets = np.array([0, 5, 10, 15, 40, 41])
    pieces = index_pieces(offsets, 10)
    assert pieces[0][0] == 0 and pieces[-1][1] == 5
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))


def test_a_large_shard_holds_the_search_lock_in_pieces(tmp_path, monkeypatch):
    batch, emb = _shard(tmp_path, 1_000)
    store = Store(tmp_path / "data")
    holds = []
    real = store._lock.write

    def counted():
        holds.append(1)
        return real()

    monkeypatch.setattr(store_module, "INDEX_PIECE_FRAMES", 100)
    monkeypatch.setattr(store._lock, "write", counted)
    try:
        done = store.import_batch(batch, shard_sha256="f" * 64)
        assert len(done.video_ids) == 1_000
        assert len(holds) >= 10  # one short hold per piece of 100 frames, not one for the whole shard
        hits = store.search_frames(emb[:3], 1)
        assert [h[0].frame_id >> 20 for h in hits] == [int(v) for v in done.video_ids[:3]]  # every piece is in
        assert store.stats()["frames"] == 1_000
    finally:
        monkeypatch.undo()
        store.close()


def test_the_snapshot_is_saved_once_a_load_goes_quiet(tmp_path):
    """Issue 18 item 2: imports do not save the index per shard, but once they stop for the quiet period the
    store saves it once (else a crash hours after a load would replay the whole load at the next start)."""
    import json
    import time

    batch, _ = _shard(tmp_path, 200)
    store = Store(tmp_path / "data", index_factory="HNSW8")  # a snapshot file of its own, not only a manifest
    store.load_saver.quiet_s = 0.5
    try:
        saves = []
        real = store._indexes.save
        store._indexes.save = lambda: (real(), saves.append(time.monotonic()))[0]
        store.import_batch(batch, shard_sha256="a" * 64)
        time.sleep(0.2)
        assert saves == []  # the load may go on: nothing written yet
        deadline = time.monotonic() + 10
        while not saves and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(saves) == 1
        manifest = json.loads((tmp_path / "data" / "index" / "manifest.json").read_text())
        assert manifest["seq"] == store.catalog.last_seq() and "frames" in manifest
        time.sleep(1.0)
        assert len(saves) == 1  # once per load, not once per quiet period
    finally:
        store.close()
