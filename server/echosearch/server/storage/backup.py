"""Backups of a data directory: the files a consistent copy holds, copied with their SHA-256, a manifest written
last, and the offline restore that checks every checksum before it writes anything.

Layout of a backup directory: `catalog.duckdb` (checkpointed: the whole catalog in one file), `index/` (the
snapshot covering the same catalog change), `phi-secret.key` when the store has one, and `backup.json`, the
manifest, written last by rename. `BACKUP-INCOMPLETE` exists from the first byte until the manifest is in: a
backup killed half-way keeps it, and `restore` refuses such a directory (and one whose files do not match).
The Store decides *when* the files are consistent (storage/store.py: `backup_to`); this module only copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from echosearch.server.cpu_priority import lower_this_thread
from echosearch.server.errors import InvalidRequestError
from echosearch.server.media.dicom.phi import SECRET_FILE as PHI_KEY
from echosearch.server.storage.layout import CATALOG_FILE, INDEX_DIR
from echosearch.server.storage.snapshots import fsync_dir, fsync_file

MANIFEST = "backup.json"
INCOMPLETE = "BACKUP-INCOMPLETE"
FORMAT = 1
CHUNK = 8 << 20
Progress = Callable[[str, int], None]  # (phase, bytes copied so far)


@dataclass(frozen=True)
class BackupSummary:
    out_dir: Path
    files: int
    bytes: int
    catalog_sequence: int
    videos: int
    frames: int


def check_out_dir(out_dir: Path, data_dir: Path) -> Path:
    """The directory a backup may be written to: absolute, absent or empty, not inside the data directory."""
    if not out_dir.is_absolute():
        raise InvalidRequestError(f"backup directory {out_dir} must be an absolute path on the server's machine")
    resolved = out_dir.resolve()
    data = data_dir.resolve()
    if resolved == data or data in resolved.parents:
        raise InvalidRequestError(f"backup directory {out_dir} is inside the data directory {data_dir}; choose another")
    if resolved.exists() and (not resolved.is_dir() or any(resolved.iterdir())):
        raise InvalidRequestError(f"backup directory {out_dir} exists and is not empty; give a new or empty directory")
    return resolved


def store_files(data_dir: Path) -> list[str]:
    """The files of a consistent store to copy, relative to it: catalog, index snapshot, the PHI key if any."""
    names = [CATALOG_FILE]
    index = data_dir / INDEX_DIR
    if index.is_dir():
        names += sorted(f"{INDEX_DIR}/{p.name}" for p in index.iterdir() if p.is_file() and not p.name.endswith(".tmp"))
    if (data_dir / PHI_KEY).exists():
        names.append(PHI_KEY)
    return names


class Throttle:
    """Sleeps so that copying stays under `bytes_per_s` (0: never sleeps)."""

    def __init__(self, bytes_per_s: int) -> None:
        self.rate = bytes_per_s
        # reads of about a quarter second's worth when throttled, so the pace (and progress) stays even
        self.chunk = CHUNK if bytes_per_s <= 0 else int(min(CHUNK, max(64 << 10, bytes_per_s // 4)))
        self.started = time.monotonic()
        self.sent = 0

    def __call__(self, n: int) -> None:
        self.sent += n
        if self.rate > 0:
            ahead = self.sent / self.rate - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)


def copy_with_sha256(src: Path, dst: Path, on_chunk: Callable[[int], None] = lambda n: None, chunk: int = CHUNK) -> str:
    """Copy `src` to `dst` (the kernel copies: sendfile) while a second thread hashes `src`; fsync `dst`.
    Returns the hex SHA-256. `src` must not change meanwhile (a backup copies a frozen store).

    Why two streams: a copy through Python buffers plus hashing took 2-3x a plain copy; in the kernel, with the
    hash beside it (hashlib releases the GIL), the copy costs what `cp` does and the hash hides behind it.
    """
    stop = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="backup-hash", initializer=lower_this_thread) as pool:
        hashed = pool.submit(_sha256, src, stop)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                while n := os.sendfile(fout.fileno(), fin.fileno(), None, chunk):
                    on_chunk(n)
                os.fsync(fout.fileno())
        except BaseException:
            stop.set()
            raise
        digest = hashed.result()
    shutil.copymode(src, dst)
    return digest


def copy_files(
    data_dir: Path, out: Path, names: list[str], progress: Progress, throttle: Throttle
) -> list[dict[str, object]]:
    """Copy `names` from the data directory into `out`, each with its size and SHA-256."""
    done = 0
    entries = []

    def on_chunk(n: int) -> None:
        nonlocal done
        done += n
        progress(phase, done)
        throttle(n)

    for name in names:
        phase = "key" if name == PHI_KEY else name.split("/")[0].split(".")[0]
        src = data_dir / name
        sha = copy_with_sha256(src, out / name, on_chunk, throttle.chunk)
        entries.append({"path": name, "bytes": src.stat().st_size, "sha256": sha})
    return entries


def begin(out: Path) -> None:
    """Create the backup directory (0700: it will hold the PHI key) with its INCOMPLETE marker."""
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)
    (out / INCOMPLETE).write_text("a backup is being written here, or was interrupted; restore refuses it\n")
    fsync_dir(out)


def commit(out: Path, entries: list[dict[str, object]], about: dict[str, object]) -> None:
    """Write the manifest (by rename: it appears whole or not at all), then remove the INCOMPLETE marker."""
    for folder in {(out / str(e["path"])).parent for e in entries}:
        fsync_dir(folder)
    manifest = {"format": FORMAT, **about, "files": entries}
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    fsync_file(tmp)
    os.replace(tmp, out / MANIFEST)
    (out / INCOMPLETE).unlink()
    fsync_dir(out)


# ---- restore (offline) --------------------------------------------------------------------------------


class BackupError(Exception):
    """A backup that cannot be restored: incomplete, altered, or not a backup; the message says which."""


def read_manifest(backup: Path) -> dict:
    """The manifest of a complete backup; BackupError for an incomplete or foreign directory."""
    if not backup.is_dir():
        raise BackupError(f"{backup} is not a directory")
    if (backup / INCOMPLETE).exists() or not (backup / MANIFEST).exists():
        raise BackupError(f"{backup} is an incomplete backup (it was interrupted, or is still being written)")
    try:
        manifest = json.loads((backup / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{backup / MANIFEST} cannot be read: {exc}") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
        raise BackupError(f"{backup / MANIFEST} is not an echosearch backup manifest of format {FORMAT}")
    return manifest


def verify(backup: Path) -> Iterator[str]:
    """Each problem of a backup, as a sentence: a missing, resized or altered file, or one the manifest lacks."""
    return _problems(backup, read_manifest(backup))


def _problems(backup: Path, manifest: dict) -> Iterator[str]:
    listed = set()
    for entry in manifest["files"]:
        path = backup / entry["path"]
        listed.add(entry["path"])
        if not path.is_file():
            yield f"{entry['path']} is missing"
        elif path.stat().st_size != entry["bytes"]:
            yield f"{entry['path']} has {path.stat().st_size} bytes, the manifest says {entry['bytes']}"
        elif _sha256(path) != entry["sha256"]:
            yield f"{entry['path']} does not match its SHA-256 checksum"
    if CATALOG_FILE not in listed:
        yield f"the manifest lists no {CATALOG_FILE}"
    extra = {str(p.relative_to(backup)) for p in backup.rglob("*") if p.is_file()} - listed - {MANIFEST}
    for name in sorted(extra):
        yield f"{name} is not in the manifest"


def restore(backup: Path, data_dir: Path, progress: Progress = lambda phase, n: None) -> dict:
    """Verify `backup`, then copy it into `data_dir` (absent or empty) through a temporary sibling renamed at the
    end, so a restore that fails leaves no half-made data directory. Returns the manifest."""
    manifest = read_manifest(backup)
    problems = list(_problems(backup, manifest))
    if problems:
        raise BackupError(f"{backup} does not verify: " + "; ".join(problems))
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(f"{data_dir} exists and is not empty; restore into a new directory")
    tmp = data_dir.parent / f".{data_dir.name}.restoring"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700)
    try:
        entries = copy_files(backup, tmp, [e["path"] for e in manifest["files"]], progress, Throttle(0))
        for copied, entry in zip(entries, manifest["files"]):
            if copied["sha256"] != entry["sha256"]:  # the backup changed while it was read
                raise BackupError(f"{entry['path']} changed while it was restored; restore again")
        if data_dir.exists():
            data_dir.rmdir()
        os.replace(tmp, data_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _sha256(path: Path, stop: threading.Event | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            if stop is not None and stop.is_set():
                return ""
            digest.update(chunk)
    return digest.hexdigest()
