"""A Parquet shard read for import: streamed a batch at a time within --max-shard-mb (its footer was checked
first, by shard_checks.check_file)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from echosearch.server.errors import InvalidRequestError, TooLargeError

# Read dictionary-encoded (a repeated value held once) and decoded only within --max-shard-mb.
DICTIONARY_COLUMNS = ("sha256", "source_uri", "study_id", "patient_id", "view", "model_identity", "thumbnail")
READ_BATCH_ROWS = 4096


def read_table(path: Path, name: str, max_bytes: int) -> pa.Table:
    """The shard as Arrow, streamed a batch at a time and refused (TooLargeError) once its decoded size passes
    `max_bytes`: a file of constant rows that its footer makes look small never expands past the cap.

    String and binary columns are read dictionary-encoded, so a value repeated on every row is held once; their
    decoded size (what the import would hold) is counted from the dictionary, and they are decoded only within
    the cap.
    """
    try:
        names = pq.read_schema(path).names
        pf = pq.ParquetFile(path, read_dictionary=[c for c in DICTIONARY_COLUMNS if c in names])
        batches, used = [], 0
        for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS):
            used += sum(_decoded_bytes(column) for column in batch.columns)
            if used > max_bytes:
                raise TooLargeError(
                    f"shard {name}: its rows decompress to more than {max_bytes >> 20} MiB, the server's limit "
                    "(--max-shard-mb); write smaller shards"
                )
            batches.append(batch)
        table = pa.Table.from_batches(batches) if batches else pf.schema_arrow.empty_table()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise InvalidRequestError(f"{path.name}: not a readable Parquet shard ({exc})") from None
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, pc.dictionary_decode(table.column(i)))
    return table


def _decoded_bytes(column: pa.Array) -> int:
    """What a column will hold once decoded: a dictionary column counts each row's value, not the dictionary."""
    if not isinstance(column, pa.DictionaryArray):
        return column.nbytes
    if len(column.dictionary) == 0:  # every row null
        return 8 * len(column)
    lengths = pc.binary_length(column.dictionary).fill_null(0).to_numpy(zero_copy_only=False)
    indices = column.indices.fill_null(0).to_numpy(zero_copy_only=False)
    return int(lengths[indices].sum()) + 8 * len(column)
