"""A shard row meets the checks an upload meets (issue 21): one module for every way a bulk video enters.

Before any row is read: the file's schema (typed columns, a known shard_version) and its size (rows, and the
bytes its row groups decompress to, from the Parquet footer), so a compression bomb is refused at the cost
of its footer. After reading: content hashes in one canonical form, finite unit-norm embeddings, plausible
per-video numbers, strictly increasing frame indices, and thumbnails that are JPEGs of a bounded size.
Each refusal is an InvalidRequestError (or TooLargeError for a cap) naming the shard, the row and the column.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from echosearch.server.errors import InvalidRequestError, TooLargeError

SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
NORM_TOLERANCE = 1e-3  # EchoCLIP embeddings are L2-normalised; a shard's must be too (|norm - 1| <= this)
MAX_THUMBNAIL_BYTES = 256 << 10  # a 112-px JPEG is a few KB; anything near this is not one of ours
JPEG_MAGIC = b"\xff\xd8\xff"
EMBEDDING_EXPANSION = 2  # how much more float32 vector data than file bytes a shard may claim


def _same_type(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether a column's type is the shard schema's, up to Arrow's large/fixed-size variants of one kind."""
    if actual.equals(expected):
        return True
    kinds = (
        (pa.types.is_string, pa.types.is_large_string),
        (pa.types.is_binary, pa.types.is_large_binary),
    )
    for kind in kinds:
        if any(k(expected) for k in kind) and any(k(actual) for k in kind):
            return True
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual) and actual.tz is not None
    if pa.types.is_fixed_size_list(expected):  # the embedding: any list kind of float32
        listed = pa.types.is_list(actual) or pa.types.is_large_list(actual) or pa.types.is_fixed_size_list(actual)
        return listed and actual.value_type.equals(pa.float32())
    return False


def check_schema(schema: pa.Schema, name: str, expected: pa.Schema, version: bytes) -> None:
    """A shard's schema, Parquet or Arrow stream: a known shard_version and every known column of its type."""
    found = (schema.metadata or {}).get(b"echosearch.shard_version")
    if found != version:
        shown = found.decode(errors="replace") if found else "none"
        raise InvalidRequestError(
            f"shard {name}: shard_version {shown!r} is not one this server reads ({version.decode()!r}); "
            "re-run `echosearch bulk embed` with this release"
        )
    for field in expected:
        if field.name in schema.names:
            actual = schema.field(field.name).type
            if not _same_type(actual, field.type):
                raise InvalidRequestError(
                    f"shard {name}: column {field.name!r} is {actual}, but shards hold {field.type} (docs/bulk.md)"
                )


def check_file(
    path: str | os.PathLike, name: str, expected: pa.Schema, version: bytes, *, dim: int, max_rows: int, max_bytes: int
) -> None:
    """The footer's schema and sizes: typed columns, a known shard_version, rows and decompressed bytes within
    the server's --max-shard-rows / --max-shard-mb (checked before a row is decompressed)."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidRequestError(f"{name}: not a Parquet shard ({exc})") from None
    check_schema(meta.schema.to_arrow_schema(), name, expected, version)
    if meta.num_rows > max_rows:
        raise TooLargeError(
            f"shard {name}: {meta.num_rows} rows, over the server's limit of {max_rows} (--max-shard-rows); "
            "write smaller shards (bulk embed --shard-videos)"
        )
    inflated = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if inflated > max_bytes:
        raise TooLargeError(
            f"shard {name}: its rows decompress to {inflated >> 20} MiB, over the server's limit of "
            f"{max_bytes >> 20} MiB (--max-shard-mb)"
        )
    # Embeddings are noise to a compressor: a real shard's file is at least as large as its float32 vectors.
    # Far more vectors than bytes means repeated rows, the shape of a decompression bomb; refused unread.
    vectors = meta.num_rows * dim * 4
    if vectors > EMBEDDING_EXPANSION * os.path.getsize(path):
        raise InvalidRequestError(
            f"shard {name}: {meta.num_rows} rows of {dim}-wide embeddings ({vectors >> 20} MiB) in a "
            f"{os.path.getsize(path) >> 10} KiB file: real embeddings do not compress like that; refusing to "
            "expand it (re-run `echosearch bulk embed`)"
        )


def canonical_sha256(values: list[str], name: str, starts: np.ndarray) -> list[str]:
    """Each video's content hash as lower-case hex; InvalidRequestError for anything that is not 64 hex digits."""
    out = []
    for i, value in enumerate(values):
        if not SHA256.match(value):
            shown = value if len(value) <= 70 else value[:70] + "..."
            raise InvalidRequestError(f"shard {name} row {int(starts[i])}: sha256 {shown!r} is not 64 hex digits")
        out.append(value.lower())
    return out


def check_embeddings(emb: np.ndarray, name: str) -> None:
    """Finite rows of unit norm: an all-zero or a norm-1e18 row would top or bottom every query."""
    norms = np.sqrt(np.einsum("ij,ij->i", emb, emb, dtype=np.float64))
    bad = ~(np.abs(norms - 1.0) <= NORM_TOLERANCE)  # NaN and inf fail too
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidRequestError(
            f"shard {name} row {row}: embedding norm is {norms[row]:.6g}, not 1 (shards hold L2-normalised "
            f"embeddings, |norm - 1| <= {NORM_TOLERANCE})"
        )


def check_videos(name: str, starts: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    """Per-video numbers an upload could not have: non-finite or non-positive fps, sizes below 1."""
    rules = (
        ("fps", lambda v: np.isfinite(v) & (v > 0), "a finite number above 0"),
        ("width", lambda v: v > 0, "at least 1"),
        ("height", lambda v: v > 0, "at least 1"),
        ("total_frames", lambda v: v > 0, "at least 1"),
        ("size_bytes", lambda v: v > 0, "at least 1"),
    )
    for column, ok, wanted in rules:
        values = columns[column]
        bad = ~ok(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidRequestError(f"shard {name} row {int(starts[i])}: {column} is {values[i]}, must be {wanted}")


def check_frames(name: str, offsets: np.ndarray, frame_index: np.ndarray, timestamps: np.ndarray) -> None:
    """Finite timestamps, and frame indices from 0 up that increase strictly within each video."""
    bad = ~np.isfinite(timestamps)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidRequestError(f"shard {name} row {row}: timestamp is {timestamps[row]}, must be finite")
    if (frame_index < 0).any():
        row = int(np.flatnonzero(frame_index < 0)[0])
        raise InvalidRequestError(f"shard {name} row {row}: frame_index is {frame_index[row]}, must be >= 0")
    step = np.diff(frame_index)
    first_of_video = np.zeros(len(frame_index), dtype=bool)
    first_of_video[offsets[:-1]] = True
    bad = (step <= 0) & ~first_of_video[1:]
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise InvalidRequestError(
            f"shard {name} row {row}: frame_index {frame_index[row]} does not increase within its video"
        )


def check_thumbnails(name: str, thumbnails: pa.Array) -> None:
    """Every non-null thumbnail is a JPEG (by its magic bytes) of at most MAX_THUMBNAIL_BYTES."""
    sizes = np.asarray(pc.binary_length(thumbnails).fill_null(0).to_numpy(zero_copy_only=False))
    if (sizes > MAX_THUMBNAIL_BYTES).any():
        row = int(np.flatnonzero(sizes > MAX_THUMBNAIL_BYTES)[0])
        raise InvalidRequestError(
            f"shard {name} row {row}: thumbnail is {int(sizes[row])} bytes, over {MAX_THUMBNAIL_BYTES} "
            "(bulk embed writes JPEGs of at most 112 px)"
        )
    heads = pc.binary_slice(thumbnails, 0, len(JPEG_MAGIC))
    bad = pc.and_(pc.is_valid(thumbnails), pc.not_equal(heads, pa.scalar(JPEG_MAGIC)))
    if pc.any(bad).as_py():
        row = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
        raise InvalidRequestError(f"shard {name} row {row}: thumbnail is not a JPEG")


def check_tags(name: str, row: int, tags: list[tuple[str, str | None]] | None) -> dict[str, str]:
    """A video's tags as a dict; InvalidRequestError for an empty key or a null value (UpdateVideoMetadata's
    rule)."""
    out: dict[str, str] = {}
    for key, value in tags or ():
        if not key:
            raise InvalidRequestError(f"shard {name} row {row}: a tag key is empty; tag keys must be non-empty")
        if value is None:
            raise InvalidRequestError(f"shard {name} row {row}: tag {key!r} has a null value; give a string")
        out[key] = value
    return out
