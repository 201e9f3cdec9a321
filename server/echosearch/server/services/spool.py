"""Where upload bodies too big for memory wait: `.uploads/` in the data directory (sized for videos, unlike /tmp)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from echosearch.server.storage.disk_errors import disk_errors

log = logging.getLogger(__name__)

SPOOL_DIR = ".uploads"


class UploadSpool:
    """The spool folder of one data directory; a full disk there is DiskFullError, like any write of the store."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.folder = self.data_dir / SPOOL_DIR

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Disk errors inside the block become DiskFullError naming the data directory."""
        with disk_errors(self.data_dir):
            yield

    def new_file(self, prefix: str) -> IO[bytes]:
        """A new spool file, open for writing; the caller deletes it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile(dir=self.folder, prefix=prefix, suffix=".part", delete=False)

    def clean(self) -> None:
        """Remove spool files a crashed server left behind (called at start)."""
        if not self.folder.is_dir():
            return
        for leftover in self.folder.iterdir():
            try:
                leftover.unlink()
                log.info("removed a leftover upload spool file %s", leftover.name)
            except OSError:
                log.warning("cannot remove leftover upload spool file %s", leftover, exc_info=True)
