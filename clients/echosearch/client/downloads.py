"""Downloading a streamed file (ExportEmbeddings) to disk: atomically, and from the start again on a retry."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol


class FileChunk(Protocol):
    """A streamed reply carrying the next bytes, and in its first message the row and byte totals."""

    chunk: bytes
    rows: int
    total_bytes: int


def download_file(
    path: str | Path,
    open_stream: Callable[[], Iterable[FileChunk]],
    *,
    retrying: Callable[[Callable[[], int]], int],
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the stream's chunks to `path` through a temporary file renamed into place; returns the rows.

    A missing folder is a FileNotFoundError that says so, raised before the stream is opened.
    `retrying` runs each attempt (the client's retry rule); a retry starts the file again.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} {what}; create it first")
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")

    def attempt() -> int:
        rows = total = received = 0
        with tmp.open("wb") as f:
            for n, msg in enumerate(open_stream()):
                if n == 0:
                    rows, total = msg.rows, msg.total_bytes
                f.write(msg.chunk)
                received += len(msg.chunk)
                if on_progress is not None:
                    on_progress(received, total)
        return rows

    try:
        rows = retrying(attempt)
        tmp.replace(path)
        return rows
    finally:
        tmp.unlink(missing_ok=True)
