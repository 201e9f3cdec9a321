"""`echosearch ui`: the web UI's flags and the command that serves it (Starlette is imported only when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from echosearch.client.cli_args import missing_extra
from echosearch.client.cli_examples import EXAMPLES
from echosearch.client.client import Client


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


def cmd_ui(client: Client, args: argparse.Namespace) -> int:
    try:
        from echosearch.ui.app import run
    except ImportError as exc:
        raise missing_extra("ui", exc) from None
    return run(client, args)
