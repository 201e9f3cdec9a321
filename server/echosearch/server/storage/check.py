"""`echosearch check`: an offline look at a data directory, after an incident or before an upgrade.

It opens the catalog read-only and reports, one line each: a catalog that does not open, pending or too-new
migrations, catalog rows that disagree with each other (frames without their video, a video's frame count,
thumbnails without their frame), PHI pseudonyms without the key that made them, and an index snapshot that is
missing, damaged or disagrees with the catalog (its ids, and a sample of its vectors). The index is a cache of
the catalog, so `repair` rebuilds it, applies pending migrations and drops orphan rows; what only a backup can
restore (the catalog, the PHI key) it never touches. `purge_thumbnails` removes every stored thumbnail, for a
store that will be served with `--thumbnails off`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from echosearch.server.media.dicom.phi import PSEUDONYM_PREFIX, SECRET_FILE
from echosearch.server.storage import snapshots
from echosearch.server.storage.catalog import thumbnail_table
from echosearch.server.storage.catalog.migrate import migrations
from echosearch.server.storage.layout import CATALOG_FILE, INDEX_DIR
from echosearch.server.storage.snapshots import MANIFEST

VECTOR_SAMPLE = 200  # snapshot vectors compared with the catalog's


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store, and whether `repair` can fix it (a cache, or a migration)."""

    what: str
    repairable: bool = False


def check_store(data_dir: Path) -> list[Problem]:
    """Every problem found in `data_dir` (empty: the store is sound)."""
    path = Path(data_dir) / CATALOG_FILE
    if not path.is_file():
        return [Problem(f"{path} does not exist: {data_dir} is not an echosearch data directory")]
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        if "lock" in str(exc).lower():
            return [Problem(f"{path} is in use (is the server running on it? stop it first): {exc}")]
        return [Problem(f"the catalog {path} cannot be opened ({exc}); restore it from a backup")]
    try:
        problems = _migrations(con)
        if any(not p.repairable for p in problems):
            return problems  # a newer store: nothing else here is ours to judge
        problems += _rows(con) + _phi_key(con, Path(data_dir))
        problems += _index(con, Path(data_dir) / INDEX_DIR)
        return problems
    except duckdb.Error as exc:  # opened, but its pages do not read back: truncated or overwritten
        return [Problem(f"the catalog {path} cannot be read ({exc}); restore it from a backup")]
    finally:
        con.close()


def _migrations(con: duckdb.DuckDBPyConnection) -> list[Problem]:
    latest = migrations()[-1][0]
    (current,) = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    if current > latest:
        return [Problem(f"catalog schema version {current} is newer than this release's {latest}; upgrade echosearch")]
    if current < latest:
        return [Problem(f"catalog schema version {current}, this release's is {latest}: migrations pending "
                        "(the server applies them at its next start; --repair applies them now)", True)]  # fmt: skip
    return []


def _rows(con: duckdb.DuckDBPyConnection) -> list[Problem]:
    checks = (
        ("SELECT count(*) FROM frames f ANTI JOIN videos v USING (video_id)", "frame rows without their video"),
        (
            "SELECT count(*) FROM videos v JOIN (SELECT video_id, count(*) n FROM frames GROUP BY video_id) f "
            "USING (video_id) WHERE f.n <> v.sampled_frames",
            "videos whose stored frames differ from their frame count",
        ),
        ("SELECT count(*) FROM frame_thumbnails t ANTI JOIN frames f USING (frame_id)", "thumbnails without a frame"),
    )
    out = []
    for sql, what in checks:
        (n,) = con.execute(sql).fetchone()
        if n:
            out.append(Problem(f"{n} {what} (--repair removes orphan rows)", repairable="thumbnails" in what))
    return out


def _phi_key(con: duckdb.DuckDBPyConnection, data_dir: Path) -> list[Problem]:
    (n,) = con.execute("SELECT count(*) FROM videos WHERE starts_with(patient_id, ?)", [PSEUDONYM_PREFIX]).fetchone()
    if n and not (data_dir / SECRET_FILE).is_file():
        return [Problem(
            f"{n} videos carry PHI pseudonyms but {data_dir / SECRET_FILE} is missing: restore it from a backup, "
            "or the same patients' next DICOM uploads get other pseudonyms and patient linkage breaks"
        )]  # fmt: skip
    return []


def _index(con: duckdb.DuckDBPyConnection, folder: Path) -> list[Problem]:
    (frames,) = con.execute("SELECT count(*) FROM frames").fetchone()
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        if not frames:
            return []
        return [Problem(f"no index snapshot in {folder}: the server rebuilds it from the catalog at start "
                        "(--repair rebuilds it now)", True)]  # fmt: skip
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for key in ("frames", "means", "tombstones", "mean_tombstones"):
            if key in manifest:
                snapshots.verified(folder, manifest[key])
    except (OSError, ValueError, KeyError) as exc:
        return [Problem(f"the index snapshot in {folder} is damaged ({exc}); --repair rebuilds it", True)]
    if snapshots.rebuilt_from_catalog(manifest):
        return []  # no copy of the vectors to disagree with the catalog: the server rebuilds it at every start
    (last,) = con.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
    if int(manifest["seq"]) > last:
        return [Problem(f"the index snapshot covers change {manifest['seq']} but the catalog ends at {last}: "
                        "it belongs to another catalog; --repair rebuilds it", True)]  # fmt: skip
    if int(manifest["seq"]) < last:
        return []  # behind: the server replays the catalog's later changes at start
    return _index_matches_catalog(con, folder, manifest)


def _index_matches_catalog(con: duckdb.DuckDBPyConnection, folder: Path, manifest: dict) -> list[Problem]:
    # The files were verified above: read the frame index as it is (the means index has nothing to compare).
    try:
        tomb = np.load(folder / manifest["tombstones"]["file"]) if "tombstones" in manifest else None
        frames = snapshots.read_index(folder / manifest["frames"]["file"], manifest["factory"], use_gpu=False,
                                      tombstones=tomb)  # fmt: skip
    except (OSError, ValueError, RuntimeError) as exc:  # FAISS reports an unreadable file as RuntimeError
        return [Problem(f"the index snapshot in {folder} cannot be read ({exc}); --repair rebuilds it", True)]
    ids = np.sort(frames.ids())
    catalog_ids = np.sort(con.execute("SELECT frame_id FROM frames").fetchnumpy()["frame_id"])
    if len(ids) != len(catalog_ids) or not np.array_equal(ids, catalog_ids):
        missing, extra = np.setdiff1d(catalog_ids, ids).size, np.setdiff1d(ids, catalog_ids).size
        return [Problem(f"the index disagrees with the catalog: {missing} frames missing from it, {extra} it should "
                        "not have; --repair rebuilds it", True)]  # fmt: skip
    if not frames.exact_storage or not len(ids):
        return []
    sample = ids[np.random.default_rng(0).choice(len(ids), min(VECTOR_SAMPLE, len(ids)), replace=False)]
    rows = con.execute(
        "SELECT frame_id, embedding FROM frames WHERE frame_id IN (SELECT unnest(?::BIGINT[])) ORDER BY frame_id",
        [np.sort(sample).tolist()],
    ).fetchall()
    stored = np.asarray([r[1] for r in rows], dtype=np.float32)
    indexed = frames.reconstruct(np.asarray([r[0] for r in rows], dtype=np.int64))
    if not np.allclose(stored, indexed, atol=1e-6):
        return [Problem("the index's vectors differ from the catalog's embeddings; --repair rebuilds it", True)]
    return []


def repair_store(data_dir: Path, *, index_factory: str | None = None) -> list[str]:
    """Fix what is a cache or a migration: drop orphan thumbnails, rebuild the index (applying migrations on the
    way). What was done, one line each."""
    done = []
    path = Path(data_dir) / CATALOG_FILE
    con = duckdb.connect(str(path))
    try:
        (n,) = con.execute("SELECT count(*) FROM frame_thumbnails t ANTI JOIN frames f USING (frame_id)").fetchone()
        if n:
            con.execute("DELETE FROM frame_thumbnails WHERE frame_id NOT IN (SELECT frame_id FROM frames)")
            done.append(f"removed {n} thumbnails without a frame")
    finally:
        con.close()
    folder = Path(data_dir) / INDEX_DIR
    factory = index_factory or _snapshot_factory(folder) or "Flat"
    shutil.rmtree(folder, ignore_errors=True)
    from echosearch.server.storage.store import Store

    store = Store(Path(data_dir), index_factory=factory)  # applies migrations, rebuilds the index, saves it
    try:
        done.append(f"rebuilt the {factory} index from the catalog ({store.reader.count_frames()} frames)")
    finally:
        store.close()
    return done


def _snapshot_factory(folder: Path) -> str | None:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["factory"]
    except (OSError, ValueError, KeyError):
        return None


def purge_thumbnails(data_dir: Path) -> tuple[int, int]:
    """Remove every stored thumbnail (for a store served with --thumbnails off); (how many, their bytes)."""
    con = duckdb.connect(str(Path(data_dir) / CATALOG_FILE))
    try:
        n, size = thumbnail_table.count(con)
        con.execute("DELETE FROM frame_thumbnails")
        con.execute("CHECKPOINT")  # give the space back now, not at the next start
        return n, size
    finally:
        con.close()
