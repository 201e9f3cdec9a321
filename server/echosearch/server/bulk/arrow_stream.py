"""A shard sent as an Arrow IPC stream (issue 18 item 2): the shard's columns as record batches, no Parquet.

The stream is read message by message. Before a record batch is decoded, its header (a FlatBuffer) says how
many rows it holds and, when its buffers are compressed (LZ4 or ZSTD), how large each one becomes: both are
counted against the server's --max-shard-rows / --max-shard-mb first, so a stream whose few bytes claim
gigabytes is refused unread, as a Parquet shard's footer is. Uncompressed, the batches are views of the
received bytes (memory-mapped): the embeddings reach the catalog and the index without a copy in Python.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pyarrow as pa

from echosearch.server.errors import InvalidRequestError, TooLargeError

STREAM_MAGIC = b"\xff\xff\xff\xff"  # an IPC stream's first message starts with the continuation marker
FILE_MAGIC = b"ARROW1"


def is_arrow_stream(path: Path) -> bool:
    """Whether the file is an Arrow IPC stream (else it is read as Parquet)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(FILE_MAGIC):
        raise InvalidRequestError(
            f"{path.name}: an Arrow IPC *file*; send the stream format (pyarrow.ipc.new_stream) or Parquet"
        )
    return head.startswith(STREAM_MAGIC)


def read_schema(path: Path) -> pa.Schema:
    """The stream's schema (its first message), without reading a batch."""
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidRequestError(f"{path.name}: not a readable Arrow IPC stream ({exc})") from None


def read_table(path: Path, name: str, *, max_rows: int, max_bytes: int) -> pa.Table:
    """Every record batch of the stream, each counted against the caps before it is decoded."""
    try:
        source = pa.memory_map(str(path))
        reader = pa.ipc.MessageReader.open_stream(source)
        schema = pa.ipc.read_schema(reader.read_next_message())
        batches, rows, decoded = [], 0, 0
        for message in reader:
            if message.type != "record batch":  # dictionary batches: shard columns are never dictionary-typed
                raise InvalidRequestError(f"shard {name}: an Arrow {message.type} message; shards hold plain batches")
            meta, body = message.metadata.to_pybytes(), message.body
            n, size = batch_size(meta, body)
            rows, decoded = rows + n, decoded + size
            if rows > max_rows:
                raise TooLargeError(
                    f"shard {name}: more than {max_rows} rows, over the server's limit (--max-shard-rows); "
                    "send smaller shards"
                )
            if decoded > max_bytes:
                raise TooLargeError(
                    f"shard {name}: its batches decode to more than {max_bytes >> 20} MiB, the server's limit "
                    "(--max-shard-mb); send smaller shards"
                )
            batches.append(pa.ipc.read_record_batch(message, schema))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, struct.error, IndexError) as exc:
        raise InvalidRequestError(f"shard {name}: not a readable Arrow IPC stream ({exc})") from None
    return pa.Table.from_batches(batches, schema=schema)


# ---- the record batch header (Arrow's Message.fbs), read without a FlatBuffers library -------------------


def _table_field(buf: bytes, table: int, slot: int) -> int | None:
    """Where field `slot` of the FlatBuffer table at `table` is stored, or None when absent (its default)."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    if 4 + 2 * slot + 2 > struct.unpack_from("<H", buf, vtable)[0]:
        return None
    offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * slot)[0]
    return table + offset if offset else None


def _deref(buf: bytes, at: int) -> int:
    return at + struct.unpack_from("<I", buf, at)[0]


def batch_size(meta: bytes, body: pa.Buffer | None) -> tuple[int, int]:
    """(rows, bytes once decoded) of a record batch message, from its header and the length prefixes of its
    compressed buffers; nothing is decompressed."""
    message = _deref(meta, 0)
    header_at = _table_field(meta, message, 2)  # Message.header: the RecordBatch table (slot 1 is its type)
    if header_at is None:
        raise InvalidRequestError("a record batch message without its header")
    batch = _deref(meta, header_at)
    length_at = _table_field(meta, batch, 0)  # RecordBatch.length: rows
    rows = struct.unpack_from("<q", meta, length_at)[0] if length_at is not None else 0
    if rows < 0:
        raise InvalidRequestError("a record batch of negative length")
    body_size = body.size if body is not None else 0
    if _table_field(meta, batch, 3) is None:  # RecordBatch.compression absent: the body is the batch
        return rows, body_size
    buffers_at = _table_field(meta, batch, 2)  # RecordBatch.buffers: [struct Buffer {offset: long; length: long}]
    if buffers_at is None:
        return rows, 0
    vector = _deref(meta, buffers_at)
    count = struct.unpack_from("<I", meta, vector)[0]
    view = memoryview(body) if body is not None else memoryview(b"")
    decoded = 0
    for i in range(count):
        offset, length = struct.unpack_from("<qq", meta, vector + 4 + 16 * i)
        if length == 0:
            continue
        if offset < 0 or length < 8 or offset + length > body_size:
            raise InvalidRequestError("a compressed buffer outside its message body")
        (full,) = struct.unpack_from("<q", view, offset)  # the uncompressed length; -1: stored as is
        if full < -1:
            raise InvalidRequestError("a compressed buffer of negative length")
        decoded += length - 8 if full == -1 else full
    return rows, decoded
