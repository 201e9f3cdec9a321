"""Issue 18 item 1: vectors are stored once (in the catalog). A store written by the previous release, whose
Flat snapshot kept a second copy of every vector, upgrades at open: every video comes back with equal embeddings,
searches answer as they did, and the copy is gone. Snapshots that are not a copy (a graph) are still read as
they are. The fixture was made by that release (tests/fixtures/stores/make_previous_layout.py says how)."""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from echosearch.client.cli import main
from echosearch.server.storage.store import Store

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "stores" / "previous_layout.tar.gz"


@pytest.fixture
def previous(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    with np.load(tmp_path / "expected.npz") as npz:
        return tmp_path, dict(npz)


def _videos_equal(store: Store, expected: dict[str, np.ndarray], name: str) -> None:
    wanted = {int(k.rsplit("video", 1)[1]): v for k, v in expected.items() if k.startswith(f"{name}/video")}
    assert sorted(int(v) for v in store.catalog.select_video_ids(None)) == sorted(wanted)
    for vid, emb in wanted.items():
        assert np.array_equal(store.catalog.get_frames(vid).embeddings, emb), vid


def _answers_equal(store: Store, expected: dict[str, np.ndarray], name: str) -> None:
    hits = store.search_frames(expected[f"{name}/queries"], 5)
    assert np.array_equal([[h.frame_id for h in row] for row in hits], expected[f"{name}/top5"])


def test_a_flat_store_of_the_previous_layout_upgrades_and_drops_its_copy(previous, caplog, capsys) -> None:
    root, expected = previous
    data = root / "flat"
    old = json.loads((data / "index" / "manifest.json").read_text())
    assert old["format"] == 1 and (data / "index" / old["frames"]["file"]).is_file()
    with caplog.at_level(logging.INFO):
        store = Store(data, use_gpu=False)
    try:
        assert "snapshot of the previous layout" in caplog.text
        _videos_equal(store, expected, "flat")
        _answers_equal(store, expected, "flat")
        assert store.frame_index.ntotal == store.catalog.count_frames()
        assert store.mean_index.ntotal == store.catalog.count_videos() == 11
    finally:
        store.close()
    assert [p.name for p in (data / "index").iterdir()] == ["manifest.json"]  # the copy is gone
    new = json.loads((data / "index" / "manifest.json").read_text())
    assert new["format"] == 2 and new["rebuilt_from_catalog"] and new["seq"] == old["seq"]
    assert main(["check", "--data", str(data)]) == 0 and "no problems found" in capsys.readouterr().err
    again = Store(data, use_gpu=False)  # and it opens again the same way
    try:
        _answers_equal(again, expected, "flat")
        rows = again.catalog.export_parquet(root / "export.parquet")  # still readable by export
    finally:
        again.close()
    table = pq.read_table(root / "export.parquet")
    assert rows == table.num_rows == sum(len(v) for k, v in expected.items() if k.startswith("flat/video"))


def test_a_graph_snapshot_of_the_previous_layout_is_read_as_it_is(previous, caplog) -> None:
    root, expected = previous
    data = root / "hnsw"
    with caplog.at_level(logging.INFO):
        store = Store(data, index_factory="HNSW8", use_gpu=False)
    try:
        assert "rebuild" not in caplog.text  # format 1 of a non-Flat index is this format less one key
        _videos_equal(store, expected, "hnsw")
        _answers_equal(store, expected, "hnsw")
    finally:
        store.close()
