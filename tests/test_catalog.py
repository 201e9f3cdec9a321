"""Catalog: one-transaction ingest, idempotency, model binding, migrations, filters, export, cache."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from echosearch.server.errors import ModelMismatchError, NotFoundError, StoreVersionError
from echosearch.server.records import NewVideo, VideoFilter, VideoMetadata
from echosearch.server.storage.catalog import Catalog
from echosearch.server.storage.catalog.migrate import migrations
from tests.fixtures.storehelp import DIM, MODEL, add


@pytest.fixture
def cat(tmp_path: Path):
    c = Catalog(tmp_path / "catalog.duckdb")
    yield c
    c.close()


def test_add_get_roundtrip_and_idempotent(cat: Catalog) -> None:
    rng = np.random.default_rng(0)
    rec, created = add(cat, 1, rng, n=5)
    assert created and rec.video_id == 1 and rec.sampled_frames == 5 and rec.seq == 1
    assert cat.model_identity == MODEL and cat.embed_dim == DIM
    again, created2 = add(cat, 1, rng, n=3)  # same bytes (sha) → the stored video, nothing new
    assert not created2 and again == rec
    assert cat.count_videos() == 1 and cat.count_frames() == 5 and cat.last_seq() == 1
    assert cat.find_by_sha256(rec.sha256) == rec == cat.get_video(1)
    got = cat.get_frames(1)
    assert got.embeddings.shape == (5, DIM) and got.frame_ids.tolist() == [(1 << 20) + k for k in range(5)]
    assert rec.metadata.tags == {"site": "south", "probe": "x1"}
    assert rec.metadata.acquisition_time.tzinfo is not None and rec.ingested_at.tzinfo is not None


def test_model_mismatch_refused_with_both_names(cat: Catalog) -> None:
    rng = np.random.default_rng(1)
    add(cat, 1, rng)
    with pytest.raises(ModelMismatchError) as err:
        add(cat, 2, rng, model="other-model")
    assert "other-model" in str(err.value) and MODEL in str(err.value)
    with pytest.raises(ModelMismatchError):
        add(cat, 3, rng, dim=DIM + 1)
    with pytest.raises(ModelMismatchError):
        cat.bind_model("other-model", DIM)
    cat.bind_model(MODEL, DIM)  # same binding is fine
    assert cat.count_videos() == 1


def test_failed_transaction_leaves_nothing(cat: Catalog, monkeypatch) -> None:
    rng = np.random.default_rng(2)
    add(cat, 1, rng)
    seen_in_txn = {}

    def boom(self, cur):
        # every row is written by now (visible inside the transaction); fail just before commit
        seen_in_txn["frames"] = cur.execute("SELECT count(*) FROM frames WHERE video_id = 2").fetchall()[0][0]
        seen_in_txn["videos"] = cur.execute("SELECT count(*) FROM videos").fetchall()[0][0]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Catalog, "_commit", boom)
    with pytest.raises(RuntimeError):
        add(cat, 2, rng, n=4)
    monkeypatch.undo()
    assert seen_in_txn == {"frames": 4, "videos": 2}
    assert cat.count_videos() == 1 and cat.count_frames() == cat.get_video(1).sampled_frames
    assert cat.last_seq() == 1 and cat.find_by_sha256(f"{2:064x}") is None
    assert cat.changes_since(0)[2].tolist() == [1]
    assert add(cat, 2, rng)[1]  # and the store still works


def test_delete_logs_change_and_not_found(cat: Catalog) -> None:
    rng = np.random.default_rng(3)
    for i in range(3):
        add(cat, i, rng, n=2)
    cat.delete_video(2)
    with pytest.raises(NotFoundError):
        cat.get_video(2)
    with pytest.raises(NotFoundError):
        cat.delete_video(2)
    with pytest.raises(NotFoundError):
        cat.get_frames(2)
    seqs, is_del, vids, n = cat.changes_since(2)
    assert seqs.tolist() == [3, 4] and is_del.tolist() == [False, True] and vids.tolist() == [3, 2]
    assert n.tolist() == [2, 2] and cat.count_frames() == 4
    assert add(cat, 10, rng)[0].video_id == 4  # ids are never reused


def test_reopen_keeps_data_and_newer_db_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    c = Catalog(path)
    add(c, 1, np.random.default_rng(4))
    assert c.schema_version() == migrations()[-1][0]
    c.close()
    c = Catalog(path)  # migrations are not re-applied
    assert c.count_videos() == 1
    c.close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_migrations VALUES (999, now()::TIMESTAMP)")
    con.close()
    with pytest.raises(StoreVersionError, match="999.*upgrade echosearch"):
        Catalog(path)


def test_list_paging_and_filters(cat: Catalog) -> None:
    rng = np.random.default_rng(5)
    recs = [add(cat, i, rng)[0] for i in range(12)]
    page1 = cat.list_videos(limit=5)
    page2 = cat.list_videos(limit=5, after_id=page1[-1].video_id)
    assert [r.video_id for r in page1 + page2] == list(range(1, 11))

    def ids(flt: VideoFilter) -> list[int]:
        got = cat.select_video_ids(flt).tolist()
        assert cat.count_videos(flt) == len(got)
        assert [r.video_id for r in cat.list_videos(flt, limit=100)] == got
        return got

    def expect(pred) -> list[int]:
        return [r.video_id for r in recs if pred(r.metadata)]

    assert ids(VideoFilter(views=("A4C",))) == expect(lambda m: m.view == "A4C")
    assert ids(VideoFilter(study_ids=("study1", "study2"), patient_ids=("p0",))) == expect(
        lambda m: m.study_id in ("study1", "study2") and m.patient_id == "p0"
    )
    lo, hi = datetime(2024, 1, 3, tzinfo=UTC), datetime(2024, 1, 7, tzinfo=UTC)
    assert ids(VideoFilter(acquired_after=lo, acquired_before=hi)) == expect(lambda m: lo <= m.acquisition_time <= hi)
    assert ids(VideoFilter(tags={"site": "north", "probe": "x2"})) == expect(
        lambda m: m.tags["site"] == "north" and m.tags["probe"] == "x2"
    )
    assert ids(VideoFilter(video_ids=(3, 5, 99))) == [3, 5]
    assert ids(VideoFilter(views=())) == []
    assert ids(VideoFilter(ingested_before=datetime(2000, 1, 1, tzinfo=UTC))) == []
    # user input is a parameter, never SQL
    evil = "x'); DROP TABLE videos; --"
    assert ids(VideoFilter(views=(evil,), tags={evil: evil})) == []
    assert cat.count_videos() == 12


def test_load_embeddings_order_offsets_and_batches(cat: Catalog) -> None:
    rng = np.random.default_rng(6)
    stored = {}
    for i in range(9):
        rec, _ = add(cat, i, rng)
        stored[rec.video_id] = cat.get_frames(rec.video_id).embeddings
    want = np.array([7, 2, 999, 5], dtype=np.int64)
    vids, offsets, emb = cat.load_embeddings(want)
    assert vids.tolist() == [7, 2, 5] and offsets[0] == 0 and offsets[-1] == len(emb)
    for k, v in enumerate(vids):
        np.testing.assert_array_equal(emb[offsets[k] : offsets[k + 1]], stored[int(v)])
    batches = list(cat.iter_embedding_batches(None, batch_videos=4))
    assert [len(b[0]) for b in batches] == [4, 4, 1]
    assert np.concatenate([b[0] for b in batches]).tolist() == list(range(1, 10))
    assert sum(len(b[2]) for b in batches) == cat.count_frames()


def test_prompt_cache(cat: Catalog) -> None:
    v = np.arange(DIM, dtype=np.float32)
    assert cat.get_prompt_embeddings(MODEL, ["a"]) == {}
    cat.put_prompt_embeddings(MODEL, {"a": v, "b": v * 2})
    cat.put_prompt_embeddings(MODEL, {"a": v * 3})
    got = cat.get_prompt_embeddings(MODEL, ["a", "b", "c"])
    assert set(got) == {"a", "b"}
    np.testing.assert_array_equal(got["a"], v * 3)
    assert got["a"].dtype == np.float32
    assert cat.get_prompt_embeddings("other", ["a"]) == {}


def test_export_parquet_roundtrip(cat: Catalog, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    for i in range(5):
        add(cat, i, rng, n=3)
    out = tmp_path / "x" / "export.parquet"
    assert cat.export_parquet(out) == 15
    table = pq.read_table(out)
    assert table.num_rows == 15
    row = table.slice(3, 1).to_pylist()[0]
    frames_back = cat.get_frames(row["video_id"])
    k = frames_back.frame_ids.tolist().index(row["frame_id"])
    np.testing.assert_array_equal(np.asarray(row["embedding"], np.float32), frames_back.embeddings[k])
    assert dict(row["tags"]) == cat.get_video(row["video_id"]).metadata.tags
    assert cat.export_parquet(tmp_path / "a4c.parquet", VideoFilter(views=("A4C",))) == 3 * 2


def test_bad_frames_rejected(cat: Catalog) -> None:
    from echosearch.server.errors import InvalidRequestError
    from echosearch.server.services.ingest import validate_video

    bad = NewVideo(
        sha256="x",
        source_name="x",
        size_bytes=1,
        fps=1,
        total_frames=1,
        width=1,
        height=1,
        model_identity=MODEL,
        metadata=VideoMetadata(),
        frame_indices=np.arange(2, dtype=np.int64),
        timestamps=np.arange(2.0),
        embeddings=np.full((2, DIM), np.nan, np.float32),
    )
    with pytest.raises(InvalidRequestError):  # the ingest service's one check says what is wrong
        validate_video(bad)
    with pytest.raises(AssertionError):  # the catalog only asserts it
        cat.add_video(bad)
    assert cat.count_videos() == 0 and cat.model_identity is None


def test_video_and_frames_are_read_in_one_snapshot(tmp_path, monkeypatch):
    """Issue 13 item 10: a delete committing between the row read and the frames read changes neither."""
    import threading

    catalog = Catalog(tmp_path / "c.duckdb")
    try:
        rec, _ = add(catalog, 1, np.random.default_rng(1), n=5)
        real_find = catalog._find

        def find_then_delete(cur, where, params, *rest):
            found = real_find(cur, where, params, *rest)
            deleter = threading.Thread(target=catalog.delete_video, args=(rec.video_id,))
            deleter.start()
            deleter.join()
            return found

        monkeypatch.setattr(catalog, "_find", find_then_delete)
        video, frames = catalog.get_video_and_frames(rec.video_id)
        monkeypatch.undo()
        assert video.sampled_frames == len(frames.embeddings) == 5
        with pytest.raises(NotFoundError):
            catalog.get_video_and_frames(rec.video_id)
        with pytest.raises(NotFoundError):
            catalog.get_frames(rec.video_id)
    finally:
        catalog.close()


def test_transaction_rolls_back_only_an_active_transaction(cat: Catalog, monkeypatch) -> None:
    # A commit that ends the transaction and then fails: the caller sees that error, not
    # DuckDB's "no transaction is active" from a second rollback.
    rng = np.random.default_rng(5)

    def commit_then_fail(self, cur):
        cur.commit()
        raise RuntimeError("after the commit")

    monkeypatch.setattr(Catalog, "_commit", commit_then_fail)
    with pytest.raises(RuntimeError, match="after the commit"):
        add(cat, 1, rng)
    monkeypatch.undo()
    assert cat.count_videos() == 1  # it did commit
    with pytest.raises(ValueError, match="inside"):
        with cat.transaction() as cur:
            cur.execute("INSERT INTO store_meta VALUES ('probe', 'x')")
            raise ValueError("inside")
    assert cat.cursor().execute("SELECT count(*) FROM store_meta WHERE key = 'probe'").fetchall()[0][0] == 0
