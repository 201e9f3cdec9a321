"""The online backup use case: a consistent copy of the store while the server runs (docs/operations.md).

Consistency comes from the Store (`frozen`: writes held, catalog checkpointed, index snapshot saved at the same
change); the bytes are copied by storage/backup.py in a worker thread, so the call can stream progress at its own
pace and a slow or vanished client never holds the write lock longer than the copy needs. Searches never wait:
they read through their own catalog cursors and the index's read lock. Ingests and deletes wait while the files
are copied (`writes_paused_seconds` says how long); none is refused.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from echosearch.server.cpu_priority import lower_this_thread
from echosearch.server.errors import BusyError, InvalidRequestError, RequestCancelledError
from echosearch.server.services.container import Services
from echosearch.server.services.info import package_version
from echosearch.server.status_records import BackupProgress
from echosearch.server.storage import backup as files

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5  # a progress message at most this often


@dataclass
class _Run:
    """The worker's state, read by the streaming call."""

    progress: BackupProgress = field(default_factory=lambda: BackupProgress("catalog", 0, 0))
    error: BaseException | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


def backup(services: Services, out_dir: str, max_bytes_per_second: int = 0) -> Iterator[BackupProgress]:
    """Write a backup into `out_dir` (absolute, on this machine), yielding progress, then the summary (done=True).

    Closing the iterator (the caller went away) stops the copy and removes what it wrote.
    """
    if not out_dir:
        raise InvalidRequestError("a backup needs out_dir: an absolute path on the server's machine")
    if max_bytes_per_second < 0:
        raise InvalidRequestError(f"max_bytes_per_second must be >= 0, not {max_bytes_per_second}")
    if not services.backup_running.acquire(blocking=False):
        raise BusyError("a backup is already running on this server; wait for it to finish")
    try:
        out = files.check_out_dir(Path(out_dir), services.data_dir)
    except BaseException:
        services.backup_running.release()
        raise
    run = _Run()
    worker = threading.Thread(
        target=_run_backup, args=(services, out, max_bytes_per_second, run), name="echosearch-backup", daemon=True
    )
    worker.start()
    try:
        while not run.finished.wait(PROGRESS_EVERY_S):
            yield run.progress
        if run.error is not None:
            raise run.error
        yield run.progress
    finally:
        run.cancelled.set()  # a no-op once finished; stops the copy when the caller is gone
        worker.join()
        services.backup_running.release()


def _run_backup(services: Services, out: Path, rate: int, run: _Run) -> None:
    lower_this_thread()  # searches win the cores; the copy (and its hashing thread) takes what is left
    started = time.monotonic()
    created = not out.exists()
    try:
        files.begin(out)
        with services.store.frozen() as seq:
            frozen_at = time.monotonic()
            names = files.store_files(services.data_dir)
            total = sum((services.data_dir / n).stat().st_size for n in names)
            run.progress = BackupProgress("catalog", 0, total)

            def on_progress(phase: str, done: int) -> None:
                if run.cancelled.is_set():
                    raise RequestCancelledError()
                run.progress = BackupProgress(phase, done, total)

            entries = files.copy_files(services.data_dir, out, names, on_progress, files.Throttle(rate))
            videos, frames = services.reader.count_videos(), services.reader.count_frames()
            paused = time.monotonic() - frozen_at
        about = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "echosearch_version": package_version(),
            "model_identity": services.model.identity,
            "catalog_sequence": seq,
            "videos": videos,
            "frames": frames,
        }
        run.progress = BackupProgress("manifest", total, total)
        files.commit(out, entries, about)
        seconds = time.monotonic() - started
        log.info("backup of %d videos (%d frames, %.1f MiB) written in %.1fs; writes waited %.1fs",
                 videos, frames, total / 2**20, seconds, paused)  # fmt: skip
        run.progress = replace(
            run.progress, done=True, videos=videos, frames=frames, files=len(entries), catalog_sequence=seq,
            seconds=seconds, writes_paused_seconds=paused, out_dir=str(out),
        )  # fmt: skip
    except BaseException as exc:
        run.error = exc
        if not isinstance(exc, RequestCancelledError):
            log.warning("backup into %s failed: %s", out, exc)
        _remove_partial(out, created)
    finally:
        run.finished.set()


def _remove_partial(out: Path, created: bool) -> None:
    """A backup that failed here leaves nothing behind (a killed one keeps its INCOMPLETE marker instead)."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
    elif out.exists():
        for entry in out.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)
