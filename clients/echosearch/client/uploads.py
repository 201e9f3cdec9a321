"""Uploads: what one sends (size, hash, name, chunks), read a chunk at a time so a file is never held whole."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path


@dataclass(frozen=True)
class UploadSource:
    """What an upload sends: its size, SHA-256 (hex), the name it is stored under, and its chunks (re-openable)."""

    size: int
    sha256: str
    name: str
    chunks: Callable[[], Iterator[bytes]]

    @classmethod
    def of(cls, source: str | Path | bytes, name: str | None, chunk_bytes: int) -> UploadSource:
        """A file (named after itself unless `name`) or bytes in memory (named "upload" unless `name`)."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            return cls(
                len(data), hashlib.sha256(data).hexdigest(), name or "upload", partial(bytes_chunks, data, chunk_bytes)
            )
        path = Path(source)
        return cls(path.stat().st_size, file_sha256(path), name or path.name, partial(file_chunks, path, chunk_bytes))


def bytes_chunks(data: bytes, size: int) -> Iterator[bytes]:
    """`data` in pieces of `size` bytes."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def file_chunks(path: Path, size: int) -> Iterator[bytes]:
    """A file's bytes in pieces of `size`, read as they are consumed."""
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def file_sha256(path: Path) -> str:
    """A file's SHA-256 (hex), read 1 MiB at a time."""
    digest = hashlib.sha256()
    for chunk in file_chunks(path, 1 << 20):
        digest.update(chunk)
    return digest.hexdigest()
