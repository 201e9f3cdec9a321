"""Issue 13 item 11: a full disk in the data directory is RESOURCE_EXHAUSTED naming it, never INTERNAL."""

from __future__ import annotations

import errno

import duckdb
import grpc
import pytest

from echosearch.server.rpc import uploads
from echosearch.server.services import spool
from echosearch.v1 import echosearch_pb2 as pb
from tests.fixtures.synthetic import make_video


def _ingest(stub, data: bytes, name: str):
    head = pb.IngestVideoRequest(header=pb.IngestVideoHeader(source_name=name))
    chunks = [pb.IngestVideoRequest(chunk=data[i : i + 65536]) for i in range(0, len(data), 65536)]
    return stub.IngestVideo(iter([head, *chunks]), timeout=60)


def _full_commit(ended: bool):
    def commit(cur):
        if ended:  # DuckDB may end the transaction itself when a write fails
            cur.rollback()
        raise duckdb.IOException('Could not write all bytes to file "catalog.duckdb.wal": No space left on device')

    return commit


@pytest.mark.parametrize("ended", [False, True])
def test_full_disk_at_commit_is_resource_exhausted(stub, server, monkeypatch, ended):
    catalog = server.services.store.catalog
    before = catalog.count_videos()
    monkeypatch.setattr(catalog, "_commit", _full_commit(ended))
    with pytest.raises(grpc.RpcError) as err:
        _ingest(stub, make_video(seed=21 + ended), "full.avi")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "disk full" in err.value.details() and str(server.services.data_dir) in err.value.details()
    monkeypatch.undo()
    assert catalog.count_videos() == before
    after = _ingest(stub, make_video(seed=21 + ended), "after.avi").video  # the server recovered
    assert (after.source_name, catalog.count_videos()) == ("after.avi", before + 1)


def test_full_disk_while_spooling_an_upload(stub, monkeypatch):
    monkeypatch.setattr(uploads, "MEMORY_SPOOL_BYTES", 1024)

    class FullFile:
        name = "/nonexistent/upload.part"

        def write(self, _data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(spool.tempfile, "NamedTemporaryFile", lambda **_kw: FullFile())
    monkeypatch.setattr(uploads.os, "unlink", lambda _path: None)
    with pytest.raises(grpc.RpcError) as err:
        _ingest(stub, make_video(seed=23), "spool.avi")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "disk full" in err.value.details()
