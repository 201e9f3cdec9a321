"""The shard format of `bulk embed`: one row per embedded frame, as Parquet (the files `bulk embed` writes) or as
an Arrow IPC stream of the same columns (bulk/arrow_stream.py). Written here, read and checked here.

A shard holds whole videos (a video's frames are contiguous rows) made by one model; the model identity
is in every row and in the file's schema metadata. docs/bulk.md describes every column.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from echosearch.server.bulk import arrow_stream, parquet_shard
from echosearch.server.bulk import shard_checks as checks
from echosearch.server.errors import InvalidRequestError, ModelMismatchError
from echosearch.server.records import VideoMetadata
from echosearch.server.storage.catalog.video_batch import VideoBatch

log = logging.getLogger(__name__)

SHARD_VERSION = "1"
SHARD_GLOBS = ("shard-*.parquet", "shard-*.arrows")  # `bulk embed` writes Parquet; streams are read too
FAILURES_FILE = "failures.parquet"
META_VERSION = b"echosearch.shard_version"
META_MODEL = b"echosearch.model_identity"
META_DIM = b"echosearch.embed_dim"
_TIME = pa.timestamp("us", tz="UTC")
# Per-video columns repeat on each of the video's frame rows (Parquet's dictionary/RLE encoding stores them once).
VIDEO_COLUMNS = (
    "sha256", "source_uri", "size_bytes", "study_id", "patient_id", "view", "acquisition_time", "tags",
    "total_frames", "fps", "width", "height", "model_identity",
)  # fmt: skip
FAILURE_SCHEMA = pa.schema([("source_uri", pa.string()), ("sha256", pa.string()), ("error", pa.string())])
METADATA_COLUMNS = ("study_id", "patient_id", "view", "acquisition_time", "tags")
REQUIRED_COLUMNS = ("sha256", "source_uri", "size_bytes", "total_frames", "fps", "width", "height")


def shard_schema(dim: int, model_identity: str) -> pa.Schema:
    """The schema of a shard of `dim`-wide embeddings made by `model_identity`."""
    fields = [
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("study_id", pa.string()),
        pa.field("patient_id", pa.string()),
        pa.field("view", pa.string()),
        pa.field("acquisition_time", _TIME),
        pa.field("tags", pa.map_(pa.string(), pa.string())),
        pa.field("total_frames", pa.int64(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("timestamp", pa.float64(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), int(dim)), nullable=False),
        pa.field("model_identity", pa.string(), nullable=False),
        # JPEG of the model's input crop (<= 112 px, media/thumbnail_jpeg.py); null when embedded with --thumbnails off.
        pa.field("thumbnail", pa.binary()),
    ]
    meta = {META_VERSION: SHARD_VERSION.encode(), META_MODEL: model_identity.encode(), META_DIM: str(dim).encode()}
    return pa.schema(fields, metadata=meta)


@dataclass(frozen=True)
class EmbeddedVideo:
    """One video's embedded frames and what is known about the file, as `bulk embed` produces it."""

    sha256: str
    source_uri: str
    size_bytes: int
    total_frames: int
    fps: float
    width: int
    height: int
    frame_indices: np.ndarray  # int64 (n,)
    timestamps: np.ndarray  # float64 (n,)
    embeddings: np.ndarray  # float32 (n, dim)
    thumbnails: tuple[bytes, ...] | None = None  # one JPEG per frame, or None (not made)
    metadata: VideoMetadata = VideoMetadata()


def shard_table(videos: Sequence[EmbeddedVideo], model_identity: str, dim: int) -> pa.Table:
    """The frame rows of `videos` in shard schema."""
    counts = np.array([len(v.embeddings) for v in videos], dtype=np.int64)

    def per_frame(values: list, typ: pa.DataType) -> pa.Array:
        return pc.take(pa.array(values, typ), pa.array(np.repeat(np.arange(len(videos)), counts)))

    md = [v.metadata for v in videos]
    emb = np.concatenate([np.asarray(v.embeddings, np.float32).reshape(-1, dim) for v in videos])
    columns = {
        "sha256": per_frame([v.sha256 for v in videos], pa.string()),
        "source_uri": per_frame([v.source_uri for v in videos], pa.string()),
        "size_bytes": per_frame([v.size_bytes for v in videos], pa.int64()),
        "study_id": per_frame([m.study_id for m in md], pa.string()),
        "patient_id": per_frame([m.patient_id for m in md], pa.string()),
        "view": per_frame([m.view for m in md], pa.string()),
        "acquisition_time": per_frame([m.acquisition_time for m in md], _TIME),
        "tags": per_frame([list(m.tags.items()) or None for m in md], pa.map_(pa.string(), pa.string())),
        "total_frames": per_frame([v.total_frames for v in videos], pa.int64()),
        "fps": per_frame([v.fps for v in videos], pa.float64()),
        "width": per_frame([v.width for v in videos], pa.int32()),
        "height": per_frame([v.height for v in videos], pa.int32()),
        "frame_index": pa.array(np.concatenate([v.frame_indices for v in videos]).astype(np.int64)),
        "timestamp": pa.array(np.concatenate([v.timestamps for v in videos]).astype(np.float64)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        "model_identity": pa.array([model_identity] * int(counts.sum()), pa.string()),
        "thumbnail": _thumbnail_column(videos),
    }
    return pa.table(columns, schema=shard_schema(dim, model_identity))


def _thumbnail_column(videos: Sequence[EmbeddedVideo]) -> pa.Array:
    """Every frame's JPEG, null for the frames of videos embedded without thumbnails."""
    jpegs: list[bytes | None] = []
    for v in videos:
        n = len(v.embeddings)
        if v.thumbnails is not None and len(v.thumbnails) != n:
            raise ValueError(f"{v.source_uri}: {n} embeddings but {len(v.thumbnails)} thumbnails")
        jpegs.extend(v.thumbnails if v.thumbnails is not None else [None] * n)
    return pa.array(jpegs, pa.binary())


def write_shard(out_dir: Path, table: pa.Table) -> Path:
    """Write a shard atomically (temp file, then rename): a killed run never leaves half a shard."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"shard-{uuid.uuid4().hex[:16]}.parquet"
    tmp = out_dir / f".{name}.tmp"
    # Uncompressed: embeddings are incompressible floats; the repeated per-video columns are dictionary-encoded.
    pq.write_table(table, tmp, compression="none", row_group_size=1 << 16)
    os.replace(tmp, out_dir / name)
    return out_dir / name


def write_failures(out_dir: Path, failures: Iterable[tuple[str, str | None, str]]) -> Path | None:
    """Replace DIR/failures.parquet with this run's failures (source_uri, sha256, error); remove it when none."""
    rows = list(failures)
    path = out_dir / FAILURES_FILE
    if not rows:
        path.unlink(missing_ok=True)
        return None
    uris, shas, errs = zip(*rows)
    table = pa.table({"source_uri": list(uris), "sha256": list(shas), "error": list(errs)}, schema=FAILURE_SCHEMA)
    tmp = out_dir / f".{FAILURES_FILE}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def shard_paths(out_dir: Path) -> list[Path]:
    """The finished shards in a folder, by name."""
    return sorted(path for pattern in SHARD_GLOBS for path in Path(out_dir).glob(pattern))


def _read_columns(path: Path, columns: list[str]) -> pa.Table:
    """Some columns of a finished shard, Parquet or Arrow stream."""
    if arrow_stream.is_arrow_stream(path):
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).read_all().select(columns)
    return pq.read_table(path, columns=columns)


def stored_sha256(out_dir: Path) -> set[str]:
    """Content hashes of every video already in the folder's shards (what a rerun skips)."""
    found: set[str] = set()
    for path in shard_paths(out_dir):
        found.update(pc.unique(_read_columns(path, ["sha256"]).column("sha256")).to_pylist())
    return found


def shard_models(out_dir: Path) -> set[str]:
    """The model identities of the folder's shards, from their schema metadata (no rows read)."""
    return {shard_identity(path)[0] for path in shard_paths(out_dir)}


def embedded_metadata(out_dir: Path) -> dict[str, VideoMetadata]:
    """sha256 -> the metadata each video of the folder's shards was embedded with (its first row's columns)."""
    found: dict[str, VideoMetadata] = {}
    for path in shard_paths(out_dir):
        table = _read_columns(path, ["sha256", *METADATA_COLUMNS])
        sha = table.column("sha256").combine_chunks().to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, sha[1:] != sha[:-1]])
        videos = table.take(pa.array(starts))
        for key, metadata in zip(sha[starts].tolist(), metadata_of(videos)):
            found.setdefault(key, metadata)
    return found


# ---- reading a shard for import -------------------------------------------------------------------------


def _schema(path: Path) -> tuple[pa.Schema, bool]:
    """A shard's schema, and whether the file is an Arrow IPC stream (its first message) rather than Parquet (its
    footer); no row is read."""
    if arrow_stream.is_arrow_stream(path):
        return arrow_stream.read_schema(path), True
    try:
        return pq.read_schema(path), False
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidRequestError(f"{path.name}: not a Parquet shard or an Arrow IPC stream ({exc})") from None


def _identity(schema: pa.Schema, path: Path) -> tuple[str, int]:
    meta = schema.metadata or {}
    if META_MODEL not in meta or META_DIM not in meta:
        raise InvalidRequestError(f"{path.name}: not an echosearch shard (no model identity in its metadata)")
    return meta[META_MODEL].decode(), int(meta[META_DIM])


def shard_identity(path: Path) -> tuple[str, int]:
    """(model identity, embedding width) from a shard's schema metadata, without reading its rows."""
    return _identity(_schema(path)[0], path)


def read_shard(
    path: Path,
    name: str,
    *,
    model_identity: str,
    dim: int,
    max_rows: int,
    max_bytes: int,
    thumbnails: bool = True,
) -> VideoBatch:
    """Read and check a shard for import (bulk/shard_checks.py: the checks an upload meets); ModelMismatchError /
    InvalidRequestError / TooLargeError name the shard, the row and the column.

    With `thumbnails`, the shard's non-null thumbnail JPEGs come along (a shard without the column has none).
    `max_rows` / `max_bytes`: the server's --max-shard-rows / --max-shard-mb (limits.py holds their defaults),
    checked from the footer first.
    """
    schema, streamed = _schema(path)
    identity, shard_dim = _identity(schema, path)
    if identity != model_identity:
        raise ModelMismatchError(
            f"shard {name} was embedded by model {identity!r}, but this server runs {model_identity!r}; "
            "re-run `echosearch bulk embed` with the server's --model, or load it into a server started with that model"
        )
    if shard_dim != dim:
        raise InvalidRequestError(
            f"shard {name} row 0: embeddings are {shard_dim} wide, but this server's model makes {dim}-wide ones"
        )
    table = _read_table(path, name, schema if streamed else None, identity, dim, max_rows=max_rows, max_bytes=max_bytes)
    _check_columns(table, name)
    n = table.num_rows
    if n == 0:
        raise InvalidRequestError(f"shard {name}: no rows")
    emb_col = table.column("embedding").combine_chunks()
    widths = pc.list_value_length(emb_col).fill_null(-1).to_numpy(zero_copy_only=False)
    if (widths != dim).any():
        row = _first(widths != dim)
        what = "null" if widths[row] < 0 else f"{widths[row]} wide"
        raise InvalidRequestError(
            f"shard {name} row {row}: embedding is {what}, but this server's model makes {dim}-wide ones"
        )
    # NaN/inf rows are the batch's own check (VideoBatch.validate names the row).
    emb = emb_col.flatten().to_numpy(zero_copy_only=False).reshape(n, dim)
    checks.check_embeddings(emb, name)
    models = table.column("model_identity")
    if models.null_count or pc.any(pc.not_equal(models, identity)).as_py():
        raise InvalidRequestError(f"shard {name}: rows disagree with the file's model identity {identity!r}")
    sha = table.column("sha256").combine_chunks()  # never null: _check_columns
    sha_np = sha.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, sha_np[1:] != sha_np[:-1]])
    videos = table.select(list(VIDEO_COLUMNS)).take(pa.array(starts))
    per_video = {c: videos.column(c).to_numpy() for c in ("size_bytes", "fps", "total_frames", "width", "height")}
    checks.check_videos(name, starts, per_video)
    offsets = np.r_[starts, n].astype(np.int64)
    frame_indices = table.column("frame_index").to_numpy().astype(np.int64, copy=False)
    timestamps = table.column("timestamp").to_numpy().astype(np.float64, copy=False)
    checks.check_frames(name, offsets, frame_indices, timestamps)
    jpegs = _thumbnails_of(table, name) if thumbnails else None
    if jpegs is not None:
        checks.check_thumbnails(name, jpegs)
    uris = videos.column("source_uri").to_pylist()
    return VideoBatch(
        label=f"shard {name}",
        model_identity=identity,
        sha256=checks.canonical_sha256(sha_np[starts].tolist(), name, starts),
        source_name=[source_name(u) for u in uris],
        size_bytes=per_video["size_bytes"],
        fps=per_video["fps"],
        total_frames=per_video["total_frames"],
        width=per_video["width"],
        height=per_video["height"],
        metadata=metadata_of(videos, name=name, starts=starts),
        offsets=offsets,
        frame_indices=frame_indices,
        timestamps=timestamps,
        embeddings=emb,
        thumbnails=jpegs,
    )


def _read_table(
    path: Path, name: str, stream_schema: pa.Schema | None, identity: str, dim: int, *, max_rows: int, max_bytes: int
) -> pa.Table:
    """The shard's rows as Arrow, its schema and sizes checked first: an Arrow IPC stream (`stream_schema`, read
    already; docs/bulk.md, "On the wire") or Parquet (its footer)."""
    expected, version = shard_schema(dim, identity), SHARD_VERSION.encode()
    if stream_schema is not None:
        checks.check_schema(stream_schema, name, expected, version)
        return arrow_stream.read_table(path, name, max_rows=max_rows, max_bytes=max_bytes)
    checks.check_file(path, name, expected, version, dim=dim, max_rows=max_rows, max_bytes=max_bytes)
    return parquet_shard.read_table(path, name, max_bytes)


def _check_columns(table: pa.Table, name: str) -> None:
    """Every column a shard must have, and no null where a value is required."""
    missing = [c for c in (*VIDEO_COLUMNS, "frame_index", "timestamp", "embedding") if c not in table.column_names]
    if missing:
        raise InvalidRequestError(f"shard {name}: missing column(s) {', '.join(missing)}")
    for column in (*REQUIRED_COLUMNS, "frame_index", "timestamp"):
        if table.column(column).null_count:
            row = _first(~np.asarray(table.column(column).is_valid()))
            raise InvalidRequestError(f"shard {name} row {row}: {column} is null")


def _thumbnails_of(table: pa.Table, name: str) -> pa.Array | None:
    """The shard's thumbnail column as one binary array, or None when it has no thumbnail at all."""
    if "thumbnail" not in table.column_names:
        return None
    col = table.column("thumbnail")
    if col.null_count == len(col):
        return None
    if not (pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
        raise InvalidRequestError(f"shard {name}: the thumbnail column is {col.type}, not binary JPEGs")
    return col.combine_chunks().cast(pa.binary())


def source_name(uri: str) -> str:
    """The name a video is shown under: the file name of its URI, as `ingest` records it."""
    return uri.rstrip("/").rsplit("/", 1)[-1] or uri


def metadata_of(videos: pa.Table, *, name: str = "", starts: np.ndarray | None = None) -> list[VideoMetadata]:
    """The VideoMetadata of each row of a per-video table (VIDEO_COLUMNS); with `starts` (the videos' first
    rows), a shard's tags are checked as an upload's are (no empty key, no null value)."""
    cols = {c: videos.column(c).to_pylist() for c in METADATA_COLUMNS}
    return [
        VideoMetadata(
            study_id=cols["study_id"][i],
            patient_id=cols["patient_id"][i],
            view=cols["view"][i],
            acquisition_time=cols["acquisition_time"][i],
            tags=dict(cols["tags"][i] or ())
            if starts is None
            else checks.check_tags(name, int(starts[i]), cols["tags"][i]),
        )
        for i in range(videos.num_rows)
    ]


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])
