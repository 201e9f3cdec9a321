"""What every subcommand's parser shares: the connection options, the subcommand factory, -k and --filter.

Each subcommand's parser lives with its command (search_commands, video_commands, ...); they build it
from these pieces, so an option shared by several commands is written once.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from echosearch.client.cli_examples import EXAMPLES, FILTER_HELP
from echosearch.client.client import DEFAULT_ADDRESS, Client
from echosearch.client.params import UsageError


def common_options() -> argparse.ArgumentParser:
    """The connection and output options every client command takes (a parent parser)."""
    # SUPPRESS lets these options come before or after the subcommand without one overriding the other.
    p = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    p.add_argument("--server", default=s, help=f"host:port (env ECHOSEARCH_SERVER, default {DEFAULT_ADDRESS})")
    p.add_argument("--token", default=s, help="bearer token (env ECHOSEARCH_TOKEN)")
    p.add_argument("--tls", action="store_true", default=s, help="connect with TLS (system roots)")
    p.add_argument("--tls-ca", default=s, metavar="PEM", help="connect with TLS, trusting this root certificate")
    p.add_argument("--timeout", type=float, default=s, help="deadline of quick calls in seconds (default 30)")
    p.add_argument("--json", action="store_true", default=s, help="JSON lines instead of tables")
    return p


def subcommand(sub: Any, name: str, help: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """A subcommand whose --help shows its defaults and ends with examples."""
    return sub.add_parser(
        name,
        parents=parents,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=EXAMPLES.get(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def filter_arg(p: argparse.ArgumentParser) -> None:
    """--filter KEY=VALUE (repeatable), parsed by params.parse_filter."""
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help=FILTER_HELP)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (`-k 0` is refused, not silently taken as the default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give 1 or more")
    return value


def k_arg(p: argparse.ArgumentParser) -> None:
    """-k: how many videos a search returns."""
    p.add_argument("-k", type=positive_int, default=10, help="how many videos, 1..10000 (default 10)")


def connect(args: argparse.Namespace) -> Client:
    """The Client the parsed options ask for (flags, then ECHOSEARCH_SERVER / ECHOSEARCH_TOKEN)."""
    address = getattr(args, "server", None) or os.environ.get("ECHOSEARCH_SERVER") or DEFAULT_ADDRESS
    token = getattr(args, "token", None) or os.environ.get("ECHOSEARCH_TOKEN") or None
    if getattr(args, "token_file", None) is not None and token is None:  # `ui --token-file`
        token = Path(args.token_file).read_text().strip() or None
    tls: bool | str = getattr(args, "tls_ca", None) or bool(getattr(args, "tls", False))
    return Client(address, token=token, tls=tls, timeout=getattr(args, "timeout", 30.0))


def missing_extra(extra: str, exc: ImportError) -> UsageError:
    """The error for a command whose optional dependencies (`pip install 'echosearch[EXTRA]'`) are absent."""
    return UsageError(
        f"this command needs the `{extra}` extra ({exc.name} is missing): pip install 'echosearch[{extra}]'"
    )
