"""Issue 18 item 2: ImportEmbeddings takes the shard's columns as an Arrow IPC stream as well as Parquet.

Over a real gRPC channel into in-process servers with real DuckDB files: rows sent as a stream (from memory by
`Client.import_table`, or as a `.arrows` file by `bulk load`) are stored exactly as the same rows sent as a
Parquet shard; a stream's batches are counted against the shard caps from their headers before they are
decoded (a compressed stream that claims more than --max-shard-mb is refused unread); broken streams are
INVALID_ARGUMENT naming the shard, and nothing of a refused shard is stored.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from echosearch.client import Client
from echosearch.client.cli import main
from echosearch.server.bulk import arrow_stream
from echosearch.server.bulk.shards import shard_table
from echosearch.server.limits import Limits
from tests.fixtures.shards import embedded_video
from tests.fixtures.shards import refused_shard as _refused

INVALID = grpc.StatusCode.INVALID_ARGUMENT
TOO_LARGE = grpc.StatusCode.RESOURCE_EXHAUSTED


def _table(served_model, seeds) -> pa.Table:
    identity, dim = served_model
    return shard_table([embedded_video(s, dim, frames=1 + s % 4, size_bytes=1000 + s) for s in seeds], identity, dim)


def _stream(table: pa.Table, path: Path, *, compression: str | None = None, chunk: int | None = None) -> Path:
    with (
        pa.OSFile(str(path), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as writer,
    ):
        writer.write_table(table, max_chunksize=chunk)
    return path


def _stored(client: Client, sha256s: list[str]) -> dict[str, tuple]:
    """sha256 -> (source name, size, view, frame indices, embeddings) of each stored video."""
    out = {}
    for video in client.iter_videos():
        if video.sha256 in sha256s:
            frames = client.get_frames(video.video_id)
            out[video.sha256] = (
                video.source_name,
                video.size_bytes,
                video.metadata.view,
                [f.frame_index for f in frames],
                np.array([f.embedding for f in frames], np.float32),
            )
    return out


def test_rows_sent_as_a_stream_are_stored_as_the_same_rows_sent_as_parquet(
    serve_inprocess, client, served_model, tmp_path
):
    table = _table(served_model, range(1, 9))
    shas = sorted(set(table.column("sha256").to_pylist()))
    pq.write_table(table, tmp_path / "rows.parquet")
    with Client(serve_inprocess("parquet").address) as reference:
        by_parquet = reference.import_shard(tmp_path / "rows.parquet")
        want = _stored(reference, shas)
    by_stream = client.import_table(table, name="rows-from-memory")
    assert (by_stream.videos_added, by_stream.frames_added) == (by_parquet.videos_added, by_parquet.frames_added)
    assert by_stream.shard_name == "rows-from-memory" and by_stream.videos_added == 8
    got = _stored(client, shas)
    assert sorted(got) == sorted(want) == shas
    for sha in shas:
        assert got[sha][:4] == want[sha][:4]
        assert np.array_equal(got[sha][4], want[sha][4])  # bit-equal embeddings
    again = client.import_table(table, name="rows-from-memory")
    assert again.already_imported and client.info().videos == 8


def test_a_compressed_stream_of_small_batches_imports(client, served_model, tmp_path):
    path = _stream(_table(served_model, range(20, 26)), tmp_path / "z.arrows", compression="zstd", chunk=4)
    done = client.import_shard(path)
    assert (done.videos_added, done.frames_added) == (6, sum(1 + s % 4 for s in range(20, 26)))


def test_bulk_load_takes_arrows_files_beside_parquet_shards(client, served_model, tmp_path, capsys):
    folder = tmp_path / "shards"
    folder.mkdir()
    _stream(_table(served_model, range(30, 33)), folder / "shard-0001.arrows")
    pq.write_table(_table(served_model, range(33, 35)), folder / "shard-0002.parquet")
    before = client.info().videos
    assert main(["--server", client.address, "bulk", "load", str(folder)]) == 0
    assert client.info().videos == before + 5, capsys.readouterr()


def test_a_stream_claiming_more_than_the_cap_is_refused_before_decoding(serve_inprocess, served_model, tmp_path):
    """Honest embeddings, but one 200 KB thumbnail on every row, LZ4-compressed to a few MiB: the batch headers'
    uncompressed lengths pass --max-shard-mb, so nothing is decompressed."""
    running = serve_inprocess("arrow-bomb", limits=Limits(max_shard_bytes=64 << 20))
    identity, dim = served_model
    big = b"\xff\xd8\xff" + bytes(200_000)
    videos = [embedded_video(100 + i, dim, frames=1, thumbnails=(big,)) for i in range(1_000)]
    path = _stream(shard_table(videos, identity, dim), tmp_path / "bomb.arrows", compression="lz4", chunk=100)
    assert path.stat().st_size < (8 << 20)
    assert arrow_stream.is_arrow_stream(path)
    with Client(running.address) as client:
        _refused(client, path, TOO_LARGE, "batches decode to more than 64 MiB", "--max-shard-mb")


def test_too_many_rows_are_refused_from_the_batch_headers(serve_inprocess, served_model, tmp_path):
    running = serve_inprocess("arrow-rows", limits=Limits(max_shard_rows=5))
    path = _stream(_table(served_model, (41, 42, 43)), tmp_path / "rows.arrows", chunk=2)
    with Client(running.address) as client:
        _refused(client, path, TOO_LARGE, "more than 5 rows", "--max-shard-rows")


def test_broken_streams_are_refused_with_the_reason(client, served_model, tmp_path):
    table = _table(served_model, (50, 51))
    whole = _stream(table, tmp_path / "whole.arrows").read_bytes()
    cut = tmp_path / "cut.arrows"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    _refused(client, cut, INVALID, "cut.arrows", "Arrow IPC stream")
    file_format = tmp_path / "file.arrow"
    with pa.OSFile(str(file_format), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    _refused(client, file_format, INVALID, "Arrow IPC *file*", "new_stream")
    foreign = table.replace_schema_metadata({**table.schema.metadata, b"echosearch.shard_version": b"99"})
    _refused(client, _stream(foreign, tmp_path / "v99.arrows"), INVALID, "shard_version '99'")
