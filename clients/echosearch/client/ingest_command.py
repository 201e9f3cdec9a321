"""`echosearch ingest`: which files, with which metadata and names, uploaded in parallel with honest progress."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echosearch.client.cli_args import subcommand
from echosearch.client.client import ApiError, Client
from echosearch.client.manifest import ManifestError, merge, read_manifest
from echosearch.client.output import Progress, print_json, print_table
from echosearch.client.params import UsageError, parse_metadata
from echosearch.client.types import Sampling, VideoMetadata
from echosearch.sniff import is_dicom

VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".ogv"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom", ".dic"})  # DICOM files without these are found by their header


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`ingest`."""
    p = subcommand(sub, "ingest", "upload video files and folders (recursive)", [common])
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files and folders (or none with --manifest)")
    p.add_argument(
        "--manifest", type=Path, metavar="CSV", help="per-file metadata: path, study_id, patient_id, view, ... columns"
    )
    p.add_argument("--jobs", "-j", type=int, default=4, help="parallel uploads (default 4)")
    p.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="for every file (wins over --manifest): study_id, patient_id, view, acquisition_time; "
        "other keys become tags. An already stored file gets what it lacks of it (see --update-metadata)",
    )
    p.add_argument(
        "--update-metadata",
        action="store_true",
        help="for files already stored: replace the fields and tags whose stored value differs (default: keep "
        "the stored value, e.g. a `tag` edit, and say so)",
    )
    p.add_argument(
        "--sampling", choices=("reference", "all", "every", "count"), help="frames to embed (default: reference 0:40:2)"
    )
    p.add_argument("--step", type=int, default=0, help="with --sampling every: every STEP-th frame")
    p.add_argument("--count", type=int, default=0, help="with --sampling count: this many frames, evenly spaced")
    p.add_argument("--max-frames", type=int, default=0, help="at most this many frames per video (default 0: no cap)")
    p.add_argument(
        "--channel-order", choices=("rgb", "bgr"), default="rgb", help="colour order of the decoded video (default rgb)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


@dataclass(frozen=True)
class Upload:
    """One file to ingest: where it is, the name it is stored under (its "source"), its metadata."""

    path: Path
    source: str
    metadata: VideoMetadata
    size: int


def collect_media_sources(paths: Sequence[Path]) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """([(file, source name)], [(skipped file, why)]).

    A folder is searched recursively — video extensions, DICOM extensions and any file whose header is DICOM
    (DICOM files often have no extension) — and its files are named relative to it (`a/clip.avi` and
    `b/clip.avi` stay apart); a file given by itself is taken as it is and named as it was given.
    """
    found: dict[Path, str] = {}
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            for p in sorted(p for p in path.rglob("*") if p.is_file()):
                suffix = p.suffix.lower()
                if suffix in VIDEO_EXTENSIONS or suffix in DICOM_EXTENSIONS or is_dicom(p):
                    found.setdefault(p.resolve(), p.relative_to(path).as_posix())
                elif p.stat().st_size == 0:
                    skipped.append((p, "empty file (0 bytes)"))
                else:
                    skipped.append((p, f"not a video ({suffix or 'no extension'}) and no DICOM header"))
        elif path.is_file():
            found.setdefault(path.resolve(), Path(os.path.normpath(path)).as_posix())
        else:
            raise UsageError(f"{path}: no such file or folder")
    return list(found.items()), skipped


def collect_sources(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """(file, source name) pairs of collect_media_sources, without the skipped files."""
    return collect_media_sources(paths)[0]


def collect_media(paths: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(files to upload, [(skipped file, why)])."""
    pairs, skipped = collect_media_sources(paths)
    return [p for p, _ in pairs], skipped


def collect_videos(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders searched recursively for videos and DICOM files."""
    return [p for p, _ in collect_sources(paths)]


def plan_uploads(
    paths: Sequence[Path],
    manifest_path: Path | None,
    meta: VideoMetadata,
    skipped: list[tuple[Path, str]] | None = None,
) -> list[Upload]:
    """The files to upload with their metadata: --meta wins over a manifest row (UsageError names bad rows/files).

    Files a folder search passed over are appended to `skipped` as (file, why).
    """
    skipped = [] if skipped is None else skipped
    if manifest_path is None:
        if not paths:
            raise UsageError("say what to ingest: files or folders, or --manifest CSV")
        pairs, passed_over = collect_media_sources(paths)
        skipped.extend(passed_over)
        if not pairs:
            raise UsageError(
                "no video or DICOM files found (looked for "
                + ", ".join(sorted(VIDEO_EXTENSIONS | DICOM_EXTENSIONS))
                + " and files with a DICOM header)"
            )
        return [Upload(p, name, meta, p.stat().st_size) for p, name in pairs]

    manifest = read_manifest(manifest_path)
    base = manifest.source.parent.resolve()
    uris = [(row, key) for key, (row, _) in manifest.rows.items() if "://" in key]
    if uris:
        row, key = min(uris)
        raise ManifestError(
            f"{manifest.source} row {row}: {key} is a URI; ingest uploads local files (give a 'path' column)"
        )
    if paths:
        pairs, passed_over = collect_media_sources(paths)
        # the manifest itself may lie in the ingested folder: it is no skipped file
        skipped.extend((p, why) for p, why in passed_over if p.resolve() != manifest.source.resolve())
        manifest.check_matches(p for p, _ in pairs)
    else:
        missing = [(row, key) for key, (row, _) in manifest.rows.items() if not Path(key).is_file()]
        if missing:
            row, key = min(missing)
            more = f" (and {len(missing) - 1} more row(s))" if len(missing) > 1 else ""
            raise ManifestError(f"{manifest.source} row {row}: no such file {key}{more}")
        pairs = [(Path(key), _relative_name(Path(key), base)) for key in manifest.rows]
    uploads = []
    for p, name in pairs:
        row_meta = manifest.metadata_for(p) or VideoMetadata()
        uploads.append(Upload(p, name, merge(row_meta, meta), p.stat().st_size))
    return uploads


def _relative_name(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


class IngestProgress:
    """Parallel uploads on one bar: a file counts as done when the server has answered for it.

    `#` is the bytes of answered files, `-` the bytes sent that the server is still decoding and encoding;
    the detail says how many files are stored, uploading, processing and waiting for an upload slot.
    The first wait for a slot is said once, above the bar.
    """

    def __init__(self, uploads: Sequence[Upload], enabled: bool | None) -> None:
        self.files = len(uploads)
        self.bar = Progress(sum(u.size for u in uploads), "ingest", enabled=enabled, unit="B")
        self._sent: dict[Path, int] = {}  # uploads in flight: bytes sent
        self._sizes = {u.path: u.size for u in uploads}
        self._waiting: set[Path] = set()
        self._answered_bytes = 0
        self._finished = 0
        self._frames = 0
        self._said_waiting = False
        self._lock = threading.Lock()

    def sent(self, upload: Upload, nbytes: int) -> None:
        with self._lock:
            self._sent[upload.path] = min(max(nbytes, 0), upload.size)
            self._waiting.discard(upload.path)
        self._redraw()

    def waiting(self, upload: Upload, why: str) -> None:
        """The server had no free upload slot: the upload waits and asks again."""
        with self._lock:
            self._sent.pop(upload.path, None)
            self._waiting.add(upload.path)
            first, self._said_waiting = not self._said_waiting, True
        if first:
            self.bar.message(f"{why}; the other files wait their turn")
        self._redraw()

    def finished(self, upload: Upload, frames: int) -> None:
        with self._lock:
            self._sent.pop(upload.path, None)
            self._waiting.discard(upload.path)
            self._answered_bytes += upload.size
            self._finished += 1
            self._frames += frames
        self._redraw(upload.source)

    def _redraw(self, note: str = "") -> None:
        with self._lock:
            processing = sum(1 for path, n in self._sent.items() if n >= self._sizes.get(path, 0))
            uploading = len(self._sent) - processing
            detail = f"{self._finished}/{self.files} files done ({self._frames} frames stored)"
            for count, what in ((uploading, "uploading"), (processing, "processing"), (len(self._waiting), "waiting")):
                if count:
                    detail += f", {count} {what}"
            done, pending = self._answered_bytes, sum(self._sent.values())
        self.bar.update(done, f"{detail} {note[-40:]}".rstrip(), pending=pending)


def cmd_ingest(client: Client, args: argparse.Namespace) -> int:
    skipped_files: list[tuple[Path, str]] = []
    uploads = plan_uploads(args.paths, args.manifest, parse_metadata(args.meta), skipped_files)
    for path, why in skipped_files:
        print(f"skipped: {path}: {why}", file=sys.stderr)
        if args.json:
            print_json({"path": str(path), "status": "skipped", "error": why})
    sampling = Sampling(args.sampling, args.step, args.count, args.max_frames) if args.sampling else None
    progress = IngestProgress(uploads, enabled=False if args.no_progress else None)
    rows: list[dict[str, Any]] = []
    counts = {"stored": 0, "already stored": 0, "updated metadata": 0, "failed": 0}

    def upload(u: Upload) -> Any:
        return client.ingest(
            u.path,
            source_name=u.source,
            metadata=u.metadata,
            sampling=sampling,
            channel_order=args.channel_order,
            on_progress=lambda n: progress.sent(u, n),
            on_wait=lambda why: progress.waiting(u, why),
            update_metadata=args.update_metadata,
        )

    def record(u: Upload, fut: Future) -> None:
        try:
            r = fut.result()
        except ApiError as exc:
            row = {"path": str(u.path), "source": u.source, "status": "failed"}
            row["error"] = f"{exc.code.name}: {exc.message}"
            progress.bar.message(f"error: {u.path}: {exc.code.name}: {exc.message}")
            progress.finished(u, 0)
        else:
            status = "stored"
            if r.already_stored:
                status = "updated metadata" if r.metadata_updated else "already stored"
            row = {"path": str(u.path), "source": u.source, "status": status, "video_id": r.video.video_id}
            row["frames"] = r.video.sampled_frames
            if r.metadata_conflicts:  # what a re-ingest kept of the store's values, or replaced
                row["metadata"] = [c.describe() for c in r.metadata_conflicts]
                for c in r.metadata_conflicts:
                    progress.bar.message(f"{u.path}: video {r.video.video_id}: {c.describe()}")
            progress.finished(u, 0 if r.already_stored else r.video.sampled_frames)
        counts[row["status"]] += 1
        if args.json:
            print_json(row)
        rows.append(row)

    progress.bar.start()
    pool = ThreadPoolExecutor(max_workers=max(1, args.jobs))
    pending = {pool.submit(upload, u): u for u in uploads}
    try:
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
            for fut in done:
                record(pending.pop(fut), fut)
    except KeyboardInterrupt:
        _interrupted(pool, pending, record, progress)
        _summary(rows, counts, args, interrupted=len(pending))
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    progress.bar.close()
    _summary(rows, counts, args, not_media=len(skipped_files))
    return 1 if counts["failed"] else 0


def _interrupted(pool: ThreadPoolExecutor, pending: dict[Future, Upload], record: Any, progress: Any) -> None:
    """Ctrl-C: start nothing new; let the uploads in flight end and report them (a second Ctrl-C stops at once)."""
    for fut in list(pending):
        if fut.cancel():
            pending.pop(fut)
    if pending:
        progress.bar.message(f"interrupted: waiting for {len(pending)} upload(s) in flight (Ctrl-C again to stop now)")
        try:
            for fut in list(pending):
                if isinstance(fut.exception(), KeyboardInterrupt):
                    pending.pop(fut)
                    continue
                record(pending.pop(fut), fut)
        except KeyboardInterrupt:
            pass
    progress.bar.close()


def _summary(
    rows: list[dict[str, Any]],
    counts: dict[str, int],
    args: argparse.Namespace,
    interrupted: int = -1,
    not_media: int = 0,
) -> None:
    if not args.json:
        rows = sorted(rows, key=lambda r: r["source"])
        print_table(
            ["id", "status", "frames", "source"],
            [[r.get("video_id"), r["status"], r.get("frames"), r["source"]] for r in rows],
        )
    line = f"{counts['stored']} stored, {counts['already stored']} already stored (skipped), {counts['failed']} failed"
    if not_media:
        line += f", {not_media} not video or DICOM (skipped)"
    if counts["updated metadata"]:
        line += f", {counts['updated metadata']} already stored with their metadata updated"
    if interrupted >= 0:
        line = f"interrupted: {line} before the interrupt; the rest was not uploaded"
        if interrupted:
            line += f" ({interrupted} upload(s) were cut off)"
    print(line, file=sys.stderr)
