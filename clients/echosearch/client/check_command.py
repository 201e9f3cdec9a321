"""`echosearch check --data DIR`: an offline check of a data directory (server/echosearch/server/storage/check.py).

Runs on the server's machine with the server stopped (the catalog is opened read-only; DuckDB refuses a
catalog the server holds). Exit 0 when the store is sound, 1 with one line per problem; `--repair` fixes what
is a cache or a migration and checks again; `--purge-thumbnails` removes every stored thumbnail.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from echosearch.client.output import print_json
from echosearch.client.params import UsageError


def add_parser(sub: Any, make_sub: Callable[..., argparse.ArgumentParser]) -> None:
    p = make_sub(sub, "check", "check a data directory offline (stop the server first)", [])
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="the server's data directory")
    p.add_argument(
        "--repair",
        action="store_true",
        help="fix what is a cache or a migration (rebuild the index, drop orphan thumbnails), then check again",
    )
    p.add_argument(
        "--purge-thumbnails",
        action="store_true",
        help="remove every stored thumbnail (for a store served with --thumbnails off from now on)",
    )
    p.add_argument("--json", action="store_true", help="one JSON line per problem")


def cmd_check(args: argparse.Namespace) -> int:
    try:
        from echosearch.server.storage.check import check_store, purge_thumbnails, repair_store
    except ImportError as exc:
        raise UsageError(
            f"check needs the server install ({exc.name} is missing): pip install 'echosearch[server]'"
        ) from None
    data = Path(args.data)
    if args.purge_thumbnails:
        n, size = purge_thumbnails(data)
        print(f"removed {n} thumbnails ({size / 2**20:.1f} MiB) from {data}", file=sys.stderr)
    problems = check_store(data)
    if args.repair and problems and all(p.repairable for p in problems):
        for line in repair_store(data):
            print(f"repaired: {line}", file=sys.stderr)
        problems = check_store(data)
    for p in problems:
        if args.json:
            print_json({"problem": p.what, "repairable": p.repairable})
        else:
            print(f"problem: {p.what}")
    if not problems:
        print(f"{data}: no problems found", file=sys.stderr)
    elif not args.repair and any(p.repairable for p in problems):
        print("(--repair fixes the problems it names)", file=sys.stderr)
    return 1 if problems else 0
