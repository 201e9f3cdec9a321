"""`echosearch info`: what the server says about itself, one `key value` line each (or one JSON object)."""

from __future__ import annotations

import argparse
from typing import Any

from echosearch.client.cli_args import subcommand
from echosearch.client.client import Client
from echosearch.client.output import print_json


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`info`."""
    subcommand(sub, "info", "server version, model, index, counts", [common])


def cmd_info(client: Client, args: argparse.Namespace) -> int:
    info = client.info()
    if args.json:
        print_json(info)
    else:
        rows = [(key, value) for key, value in info.__dict__.items() if key not in ("skipped_plugins", "encoder")]
        for p in info.skipped_plugins:
            what = f"task {p.task!r} of plugin {p.plugin!r}" if p.task else f"plugin {p.plugin!r}"
            rows.append(("skipped", f"{what}: {p.reason}"))
        if info.encoder is not None:  # the ingest path, one "encoder.<field>" line each
            for key, value in info.encoder.__dict__.items():
                rows.append((f"encoder.{key}", f"{value:.2f}" if isinstance(value, float) else value))
        width = max(len(key) for key, _ in rows)  # one column for every line, whatever blocks the server sends
        for key, value in rows:
            print(f"{key:{width}} {value}")
    return 0
