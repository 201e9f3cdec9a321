"""`echosearch ui`: the web UI's flags and the command that serves it (Starlette is imported only when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from echosearch.client.cli_args import missing_extra
from echosearch.client.cli_examples import EXAMPLES
from echosearch.client.client import Client
from echosearch.ui.settings import DEFAULT_MAX_UPLOAD_BYTES, LOCAL_NAMES


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `ui` to the command line."""
    p = sub.add_parser(
        "ui",
        parents=[common],
        help="the web UI (needs the `ui` extra)",
        epilog=EXAMPLES["ui"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address the UI binds (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port the UI listens on (default 8080)")
    p.add_argument("--token-file", type=Path, help="bearer token for the server, first line of this file")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="another name browsers reach the UI by, e.g. its DNS name (repeat). Requests whose Host header "
        f"names anything else get 400, so DNS rebinding cannot read the UI (default: --host, {', '.join(LOCAL_NAMES)})",
    )
    p.add_argument(
        "--max-upload-bytes",
        type=int,
        default=DEFAULT_MAX_UPLOAD_BYTES,
        metavar="N",
        help=f"largest labels upload of the evaluation form, spooled to disk (default {DEFAULT_MAX_UPLOAD_BYTES} "
        f"= {DEFAULT_MAX_UPLOAD_BYTES >> 20} MiB); a larger one gets 413, read no further than the cap",
    )


def cmd_ui(client: Client, args: argparse.Namespace) -> int:
    try:
        from echosearch.ui.app import run
    except ImportError as exc:
        raise missing_extra("ui", exc) from None
    return run(client, args)
