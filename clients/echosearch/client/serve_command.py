"""`echosearch serve`: its flags and the command that starts the server (the server stack is imported only here)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from echosearch.client.params import UsageError
from echosearch.server.config import add_serve_flags, config_from_args


def add_parser(sub: Any, make_sub: Callable[..., argparse.ArgumentParser]) -> None:
    """The `serve` subcommand's parser: one flag per ServerConfig option, its default and help read from the
    options class that owns it (server/echosearch/server/config.py; light: no torch, faiss or duckdb)."""
    add_serve_flags(make_sub(sub, "serve", "run the gRPC server", []))


def _server_log_handler(level: str) -> logging.Handler:
    """stderr, without open_clip's INFO chatter on the root logger ("No potential checkpoint path found" reads as
    a failure; model.py logs what was loaded) unless --log-level DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    if level != "DEBUG":
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or "open_clip" not in r.pathname)
    return handler


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # faiss logs which CPU build it picked at INFO, as "No module named 'faiss.swigfaiss_avx512'": not a failure.
    logging.getLogger("faiss.loader").setLevel(logging.DEBUG if config.log_level == "DEBUG" else logging.WARNING)
    handler = _server_log_handler(config.log_level)
    if config.log_format == "json":
        from echosearch.server.log_format import JsonFormatter  # light: the standard library

        handler.setFormatter(JsonFormatter())
    logging.basicConfig(
        handlers=[handler], level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Imported here: the server stack (torch, faiss, duckdb) is not part of a client install.
    try:
        from echosearch.server.serve import read_token, serve
    except ImportError as exc:
        raise UsageError(
            f"the server is not installed ({exc.name} is missing): pip install 'echosearch[server]'"
        ) from None
    try:
        token = read_token(config.network.token_file)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--token-file: {exc}") from None
    return serve(config, token=token)
