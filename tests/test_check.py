"""Issue 20 item 4 and issue 21 R7: `echosearch check` names each way a store is broken, and `--repair` fixes
the cache cases. Real DuckDB catalogs and FAISS snapshots, broken on disk; the CLI's exit code and lines."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from echosearch.client.cli import main
from echosearch.server.storage.store import Store
from tests.fixtures.storehelp import add, frames, jpeg, new_video

pytest.importorskip("duckdb")


def sound_store(data, factory: str = "Flat"):
    """A sound store: 12 videos, two with thumbnails, its index saved (a Flat one: only its manifest)."""
    rng = np.random.default_rng(0)
    store = Store(data, index_factory=factory)
    for i in range(10):
        add(store, i, rng)
    for i in (10, 11):
        f = frames(rng, 3, thumbnails=tuple(jpeg(100 * i + j) for j in range(3)))
        video = new_video(i, rng, 3)
        store.add_video(
            type(video)(**{**video.__dict__, "frame_indices": f.frame_indices, "embeddings": f.embeddings,
                           "timestamps": f.timestamps, "thumbnails": f.thumbnails})
        )  # fmt: skip
    store.save()
    store.close()
    return data


@pytest.fixture
def store_dir(tmp_path):
    return sound_store(tmp_path / "data")


@pytest.fixture
def snapshotted_dir(tmp_path):
    """A store whose index has a snapshot file of its own (HNSW: a graph, not a copy of the catalog)."""
    return sound_store(tmp_path / "data", "HNSW8")


def check(capsys, data, *flags: str) -> tuple[int, list[str], str]:
    rc = main(["check", "--data", str(data), *flags])
    out, err = capsys.readouterr()
    return rc, [line for line in out.splitlines() if line.startswith("problem:")], err


def test_a_sound_store_has_no_problems(capsys, store_dir):
    rc, problems, err = check(capsys, store_dir)
    assert (rc, problems) == (0, []) and "no problems found" in err


def test_a_deleted_snapshot_is_reported_and_repaired(capsys, store_dir):
    for f in (store_dir / "index").iterdir():
        f.unlink()
    rc, problems, err = check(capsys, store_dir)
    assert rc == 1 and len(problems) == 1 and "no index snapshot" in problems[0]
    rc, problems, err = check(capsys, store_dir, "--repair")
    assert (rc, problems) == (0, []) and "repaired: rebuilt the Flat index" in err


def test_a_flat_store_keeps_only_a_manifest_and_checks_clean(capsys, store_dir):
    assert [p.name for p in (store_dir / "index").iterdir()] == ["manifest.json"]
    assert check(capsys, store_dir)[:2] == (0, [])


def test_a_damaged_snapshot_is_reported_and_repaired(capsys, snapshotted_dir):
    store_dir = snapshotted_dir
    snapshot = next(p for p in (store_dir / "index").iterdir() if p.name.startswith("frames-"))
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    rc, problems, _ = check(capsys, store_dir)
    assert rc == 1 and len(problems) == 1 and "damaged" in problems[0] and "checksum" in problems[0]
    rc, problems, _ = check(capsys, store_dir, "--repair")
    assert (rc, problems) == (0, [])


def test_a_truncated_catalog_is_reported_and_not_repaired(capsys, store_dir):
    catalog = store_dir / "catalog.duckdb"
    catalog.write_bytes(catalog.read_bytes()[: catalog.stat().st_size // 3])
    rc, problems, _ = check(capsys, store_dir, "--repair")
    assert rc == 1 and len(problems) == 1 and "cannot be" in problems[0] and "backup" in problems[0]


def test_a_missing_phi_key_is_reported(capsys, store_dir):
    con = duckdb.connect(str(store_dir / "catalog.duckdb"))
    con.execute("UPDATE videos SET patient_id = 'phi-0123456789abcdef' WHERE video_id <= 3")
    con.close()
    rc, problems, _ = check(capsys, store_dir, "--repair")
    assert rc == 1 and len(problems) == 1 and "3 videos carry PHI pseudonyms" in problems[0]
    (store_dir / "phi-secret.key").write_bytes(b"k" * 32)
    assert check(capsys, store_dir)[:2] == (0, [])


def test_orphan_thumbnails_are_reported_and_removed(capsys, store_dir):
    con = duckdb.connect(str(store_dir / "catalog.duckdb"))
    con.execute("INSERT INTO frame_thumbnails VALUES (999999999, ?)", [jpeg(7)])
    con.close()
    rc, problems, _ = check(capsys, store_dir)
    assert rc == 1 and problems == ["problem: 1 thumbnails without a frame (--repair removes orphan rows)"]
    rc, problems, err = check(capsys, store_dir, "--repair")
    assert (rc, problems) == (0, []) and "removed 1 thumbnails without a frame" in err


def test_an_index_that_disagrees_with_the_catalog_is_reported(capsys, snapshotted_dir):
    store_dir = snapshotted_dir
    con = duckdb.connect(str(store_dir / "catalog.duckdb"))
    con.execute("DELETE FROM frame_thumbnails WHERE frame_id IN (SELECT frame_id FROM frames WHERE video_id = 2)")
    con.execute("DELETE FROM frames WHERE video_id = 2")  # behind the log's back: the snapshot still has them
    con.execute("DELETE FROM video_tags WHERE video_id = 2")
    con.execute("DELETE FROM videos WHERE video_id = 2")
    con.close()
    rc, problems, _ = check(capsys, store_dir)
    assert rc == 1 and any("the index disagrees with the catalog" in p for p in problems), problems
    assert check(capsys, store_dir, "--repair")[:2] == (0, [])


def test_purge_thumbnails_removes_every_thumbnail(capsys, store_dir):
    rc = main(["check", "--data", str(store_dir), "--purge-thumbnails"])
    err = capsys.readouterr().err
    assert rc == 0 and "removed 6 thumbnails" in err
    con = duckdb.connect(str(store_dir / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM frame_thumbnails").fetchone() == (0,)
    con.close()


def test_a_store_in_use_is_refused_with_the_reason(store_dir):
    import subprocess
    import sys

    store = Store(store_dir)  # as a running server holds it: the check runs in another process
    try:
        cmd = [sys.executable, "-m", "echosearch.client.cli", "check", "--data", str(store_dir)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "in use" in done.stdout and "stop it first" in done.stdout, done
    finally:
        store.close()
