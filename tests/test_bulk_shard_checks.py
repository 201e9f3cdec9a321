"""Issue 21 R1, R6, R9, R10: a bulk shard row is checked like an upload, over a real gRPC channel.

Each planted shard is a real Parquet file sent through ImportEmbeddings; each must be refused with
INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for a cap) naming the column or row, never INTERNAL, and leave
nothing stored.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from echosearch.server.bulk.shards import EmbeddedVideo, shard_table
from echosearch.server.limits import Limits
from echosearch.server.records import VideoMetadata
from tests.fixtures.shards import embedded_video as _video
from tests.fixtures.shards import refused_shard as _refused

INVALID = grpc.StatusCode.INVALID_ARGUMENT
TOO_LARGE = grpc.StatusCode.RESOURCE_EXHAUSTED


def _table(served_model, *videos: EmbeddedVideo) -> pa.Table:
    identity, dim = served_model
    return shard_table(list(videos), identity, dim)


def _write(table: pa.Table, path: Path, **parquet) -> Path:
    pq.write_table(table, path, **parquet)
    return path


def _replace(table: pa.Table, column: str, values: pa.Array) -> pa.Table:
    """The table with one column swapped for `values` (its type as given), the shard metadata kept."""
    i = table.column_names.index(column)
    out = table.set_column(i, pa.field(column, values.type), values)
    return out.replace_schema_metadata(table.schema.metadata)


def test_a_valid_shard_imports(client, served_model, tmp_path):
    done = client.import_shard(
        _write(_table(served_model, _video(1, served_model[1]), _video(2, served_model[1])), tmp_path / "ok.parquet")
    )
    assert (done.videos_added, done.frames_added) == (2, 6)


WRONG_TYPES = {
    "embedding": lambda n: pa.array(["0.1,0.2"] * n),
    "sha256": lambda n: pa.array(range(n), pa.int64()),
    "fps": lambda n: pa.array(["30"] * n),
    "timestamp": lambda n: pa.array(["0.0"] * n),
    "frame_index": lambda n: pa.array([0.5] * n, pa.float64()),
    "size_bytes": lambda n: pa.array(["1000"] * n),
    "tags": lambda n: pa.array(["site=north"] * n),
    "width": lambda n: pa.array([None] * n, pa.int32()),
}


@pytest.mark.parametrize("column", sorted(WRONG_TYPES))
def test_a_wrongly_typed_column_is_invalid_argument_naming_it(client, served_model, tmp_path, column):
    table = _table(served_model, _video(10, served_model[1]))
    path = _write(_replace(table, column, WRONG_TYPES[column](table.num_rows)), tmp_path / "typed.parquet")
    _refused(client, path, INVALID, column)


@pytest.mark.parametrize(
    ("value", "why"),
    [("", "not 64 hex"), ("../../etc/passwd", "not 64 hex"), (" " + "a" * 64, "not 64 hex"), ("f" * 5_000_000, "...")],
)
def test_a_malformed_sha256_is_refused(client, served_model, tmp_path, value, why):
    path = _write(_table(served_model, _video(20, served_model[1], sha256=value)), tmp_path / "sha.parquet")
    _refused(client, path, INVALID, "sha256", why)


def test_an_upper_case_sha256_is_the_same_video(client, served_model, tmp_path):
    video = _video(21, served_model[1])
    client.import_shard(_write(_table(served_model, video), tmp_path / "lower.parquet"))
    upper = _video(21, served_model[1], sha256=video.sha256.upper())
    done = client.import_shard(_write(_table(served_model, upper), tmp_path / "upper.parquet"))
    assert (done.videos_added, done.videos_already_stored) == (0, 1)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"fps": float("nan")}, ("fps",)),
        ({"fps": 0.0}, ("fps",)),
        ({"width": -4}, ("width",)),
        ({"size_bytes": 0}, ("size_bytes",)),
        ({"timestamps": np.array([0.0, np.inf, 0.2])}, ("timestamp",)),
        ({"frame_indices": np.array([0, 4, 4], np.int64)}, ("frame_index", "does not increase")),
        ({"frame_indices": np.array([0, -1, 4], np.int64)}, ("frame_index",)),
        ({"metadata": VideoMetadata(tags={"": "x"})}, ("tag key is empty",)),
        ({"metadata": VideoMetadata(tags={"k" * 300: "x"})}, ("--max-metadata-key-bytes",)),
        ({"source_uri": "/a/" + "n" * 5000}, ("--max-metadata-value-bytes",)),
        ({"thumbnails": (b"<html>hello</html>",) * 3}, ("not a JPEG",)),
        ({"thumbnails": (b"\xff\xd8\xff" + b"\0" * (8 << 20),) * 3}, ("thumbnail is",)),
    ],
)
def test_values_an_upload_could_not_carry_are_refused(client, served_model, tmp_path, override, words):
    path = _write(_table(served_model, _video(30, served_model[1], **override)), tmp_path / "values.parquet")
    _refused(client, path, INVALID, *words)


def test_a_null_tag_value_is_refused(client, served_model, tmp_path):
    table = _table(served_model, _video(31, served_model[1]))
    tags = pa.array([[("site", None)]] * table.num_rows, pa.map_(pa.string(), pa.string()))
    _refused(client, _write(_replace(table, "tags", tags), tmp_path / "nulltag.parquet"), INVALID, "null value")


@pytest.mark.parametrize(("scale", "words"), [(1e18, ("norm is 1e+18",)), (0.0, ("norm is 0",))])
def test_embeddings_must_be_unit_norm(client, served_model, tmp_path, scale, words):
    video = _video(40, served_model[1])
    bad = _video(40, served_model[1], embeddings=(video.embeddings * scale).astype(np.float32))
    _refused(client, _write(_table(served_model, bad), tmp_path / "norm.parquet"), INVALID, "embedding", *words)


def test_an_unknown_shard_version_is_refused(client, served_model, tmp_path):
    table = _table(served_model, _video(50, served_model[1]))
    meta = dict(table.schema.metadata)
    meta[b"echosearch.shard_version"] = b"99"
    path = _write(table.replace_schema_metadata(meta), tmp_path / "v99.parquet")
    _refused(client, path, INVALID, "shard_version '99'")


def test_a_compression_bomb_of_repeated_rows_is_refused_unread(serve_inprocess, served_model, tmp_path):
    """R1: one frame row repeated compresses to almost nothing; the footer's row count gives it away."""
    from echosearch.client import Client

    running = serve_inprocess("bomb-rows")
    identity, dim = served_model
    rows = (100 << 20) // (4 * dim) + 1  # 100 MiB of float32 vectors
    bomb = _table(served_model, _video(60, dim, frames=1)).take(pa.array(np.zeros(rows, dtype=np.int64)))
    bomb = _replace(bomb, "frame_index", pa.array(np.arange(rows, dtype=np.int64)))
    path = _write(bomb, tmp_path / "bomb.parquet", compression="zstd")
    assert path.stat().st_size < (4 << 20)
    with Client(running.address) as client:
        _refused(client, path, INVALID, "do not compress like that")


def test_a_repeated_large_value_is_counted_before_it_is_decoded(serve_inprocess, served_model, tmp_path):
    """R1: honest embeddings, but one 200 KB thumbnail on every row: 200 MiB decoded, a few MiB on the wire;
    refused by --max-shard-mb while still dictionary-encoded."""
    from echosearch.client import Client

    running = serve_inprocess("bomb-thumbs", limits=Limits(max_shard_bytes=64 << 20))
    big = b"\xff\xd8\xff" + bytes(200_000)
    videos = [_video(100 + i, served_model[1], frames=1, thumbnails=(big,)) for i in range(1_000)]
    path = _write(_table(served_model, *videos), tmp_path / "thumbs.parquet", compression="zstd")
    assert path.stat().st_size < (8 << 20)
    with Client(running.address) as client:
        _refused(client, path, TOO_LARGE, "--max-shard-mb")


def test_too_many_rows_are_refused_from_the_footer(serve_inprocess, served_model, tmp_path):
    running = serve_inprocess("rows", limits=Limits(max_shard_rows=5))
    from echosearch.client import Client

    path = _write(
        _table(served_model, _video(70, served_model[1]), _video(71, served_model[1])), tmp_path / "rows.parquet"
    )
    with Client(running.address) as client:
        _refused(client, path, TOO_LARGE, "6 rows", "--max-shard-rows")


def test_the_thumbnail_column_must_be_binary(client, served_model, tmp_path):
    table = _table(served_model, _video(80, served_model[1]))
    strings = pc.cast(pa.array(["x"] * table.num_rows), pa.string())
    _refused(client, _write(_replace(table, "thumbnail", strings), tmp_path / "t.parquet"), INVALID, "thumbnail")
