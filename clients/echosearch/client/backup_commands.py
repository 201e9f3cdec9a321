"""`echosearch backup --out DIR` (the Backup RPC: the running server writes a consistent copy on its machine) and
`echosearch restore BACKUP --data NEWDIR` (offline: every checksum verified first, then copied into a new data
directory). docs/operations.md says when to use which."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from echosearch.client.client import Client
from echosearch.client.output import Progress, print_json
from echosearch.client.params import UsageError


def add_parsers(sub: Any, make_sub: Callable[..., argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = make_sub(sub, "backup", "have the running server write a consistent backup of its store", [common])
    p.add_argument(
        "--out", required=True, metavar="DIR", help="absolute path of a new or empty directory on the server's machine"
    )
    p.add_argument(
        "--max-mb-per-s", type=float, default=0, metavar="MB", help="copy at most this many MiB/s (default: no limit)"
    )
    p = make_sub(
        sub, "restore", "restore a backup into a new data directory (offline; verifies every checksum first)", []
    )
    p.add_argument("backup", type=Path, metavar="BACKUP", help="a directory `echosearch backup` wrote")
    p.add_argument(
        "--data", type=Path, required=True, metavar="NEWDIR", help="the data directory to create (absent or empty)"
    )
    p.add_argument("--json", action="store_true", help="the backup's manifest summary as one JSON line")


def cmd_backup(client: Client, args: argparse.Namespace) -> int:
    if args.max_mb_per_s < 0:
        raise UsageError("--max-mb-per-s must be >= 0")
    bar = Progress(0, "backup", unit="B")
    last = None
    for progress in client.backup(args.out, max_bytes_per_second=int(args.max_mb_per_s * 2**20)):
        last = progress
        bar.total = progress.bytes_total
        bar.update(progress.bytes_done, detail=progress.phase)
    bar.close()
    assert last is not None and last.done, "the server ended the backup without its summary"
    if args.json:
        print_json({k: getattr(last, k) for k in ("out_dir", "videos", "frames", "files", "catalog_sequence",
                                                  "seconds", "writes_paused_seconds")})  # fmt: skip
    else:
        print(f"backup of {last.videos} videos ({last.frames} frames, catalog change {last.catalog_sequence}) "
              f"written to {last.out_dir} in {last.seconds:.1f} s; ingests waited {last.writes_paused_seconds:.1f} s")  # fmt: skip
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        from echosearch.server.storage.backup import BackupError, restore
    except ImportError as exc:
        raise UsageError(
            f"restore needs the server install ({exc.name} is missing): pip install 'echosearch[server]'"
        ) from None
    try:
        manifest = restore(args.backup, args.data)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = {k: manifest.get(k) for k in ("videos", "frames", "catalog_sequence", "created_at", "model_identity")}
    if args.json:
        print_json({"data": str(args.data), **summary})
    else:
        print(f"restored {summary['videos']} videos ({summary['frames']} frames) backed up {summary['created_at']} "
              f"into {args.data}; every checksum matched. Serve it: echosearch serve --data {args.data}")  # fmt: skip
    return 0
