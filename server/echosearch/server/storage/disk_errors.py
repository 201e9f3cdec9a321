"""A full (or failing) disk under the data directory is the operator's problem to fix, not a server bug:
such errors become DiskFullError (RESOURCE_EXHAUSTED, "disk full in the data directory")."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from echosearch.server.errors import DiskFullError

DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}
DISK_WORDS = ("no space left on device", "disk quota exceeded", "disk is full", "read-only file system")


def is_disk_error(exc: BaseException) -> bool:
    """True for an OS or DuckDB error that says the disk is full, over quota, read-only or failing."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        return True
    if isinstance(exc, duckdb.IOException):
        return True
    return any(word in str(exc).lower() for word in DISK_WORDS)


@contextmanager
def disk_errors(data_dir: Path) -> Iterator[None]:
    """Re-raise disk errors inside the block as DiskFullError naming the data directory."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if not is_disk_error(exc):
            raise
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DiskFullError(
            f"disk full (or failing) in the data directory {data_dir}: {detail}; free space there and retry "
            "(nothing of this request was stored)"
        ) from exc
