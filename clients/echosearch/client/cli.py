"""The `echosearch` command: `serve` runs the server; every other subcommand is a client call.

Errors print one line, `error: <STATUS>: <message>`, and exit non-zero (1 for a
failed call, 2 for bad usage); no tracebacks. The server stack is imported only
by `serve`, so the client commands stay light.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc

from echosearch.client import (
    backup_commands,
    bulk_cli,
    check_command,
    info_command,
    ingest_command,
    search_commands,
    serve_command,
    task_commands,
    ui_command,
    video_commands,
)
from echosearch.client.cli_args import common_options
from echosearch.client.cli_args import connect as _connect
from echosearch.client.cli_args import subcommand as _sub  # the name serve_command.add_parser is called with
from echosearch.client.client import ApiError
from echosearch.client.evaluation import commands as evaluation_commands
from echosearch.client.ingest_command import DICOM_EXTENSIONS, VIDEO_EXTENSIONS, collect_media, collect_videos
from echosearch.client.params import UsageError

__all__ = ["DICOM_EXTENSIONS", "VIDEO_EXTENSIONS", "build_parser", "collect_media", "collect_videos", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each subcommand's parser lives with its command."""
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="echosearch",
        description="EchoCLIP embeddings of echo videos: ingest, search, score.",
        parents=[common],
        epilog="`echosearch COMMAND --help` shows a command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_command.add_parser(sub, _sub)
    check_command.add_parser(sub, _sub)
    ingest_command.add_parser(sub, common)

    # ---- dicom-listen (issue 14; hardened in issue 21). Defaults are ListenOptions' (docs/dicom.md) ----
    p = _sub(sub, "dicom-listen", "receive DICOM objects (C-STORE) from a modality or PACS and ingest them", [common])
    p.add_argument("--ae-title", help="this receiver's AE title (default ECHOSEARCH)")
    p.add_argument(
        "--host", "--bind", dest="host", help="address to listen on (default 127.0.0.1; 0.0.0.0: all interfaces)"
    )
    p.add_argument("--port", type=int, help="DICOM port (default 11112; 0: any free port)")
    p.add_argument(
        "--allow", action="append", default=[], metavar="AE[,AE]",
        help="calling AE titles allowed (default: any); a filter, not authentication: use --dicom-tls-peer-ca",
    )  # fmt: skip
    p.add_argument("--token-file", type=Path, help="file holding the service's bearer token (else --token)")
    p.add_argument("--max-associations", type=int, help="associations served at once (default 8)")
    p.add_argument("--max-associations-per-peer", type=int, help="associations one IP address may hold (default 4)")
    p.add_argument(
        "--idle-timeout", dest="idle_timeout_s", type=float, metavar="SECONDS",
        help="close an association after this long without a C-STORE; C-ECHO does not count (default 30)",
    )  # fmt: skip
    p.add_argument("--dicom-tls-cert", type=Path, metavar="PEM", help="serve DICOM over TLS with this certificate")
    p.add_argument("--dicom-tls-key", type=Path, metavar="PEM", help="the private key of --dicom-tls-cert")
    p.add_argument(
        "--dicom-tls-peer-ca", type=Path, metavar="PEM", help="accept only peers with a client certificate signed by it"
    )
    p.add_argument("--log-level", default="INFO", help="receiver log detail on stderr (default INFO)")

    search_commands.add_parsers(sub, common)  # search, similar
    task_commands.add_parsers(sub, common)  # score, tasks
    video_commands.add_parsers(sub, common)  # videos, video, tag, delete, export
    info_command.add_parser(sub, common)
    bulk_cli.add_parser(sub, common)
    evaluation_commands.add_parser(sub, common)
    task_commands.add_delete_task_parser(sub, common)
    ui_command.add_parser(sub, common)
    backup_commands.add_parsers(sub, _sub, common)  # backup, restore
    return parser


def cmd_dicom_listen(args: argparse.Namespace) -> int:
    import signal
    import threading

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        from echosearch.client.dicom_listen import SLOT_WAIT_S, DicomReceiver, listen_options, quiet_pynetdicom
    except ImportError as exc:
        raise UsageError(
            f"DICOM support is not installed ({exc.name} is missing): pip install 'echosearch[dicom]'"
        ) from None
    quiet_pynetdicom()
    if args.token_file is not None:
        try:
            args.token = args.token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"--token-file: {exc}") from None
    try:
        options = listen_options(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with _connect(args) as client:
        client.slot_wait = SLOT_WAIT_S
        receiver = DicomReceiver(client, options)
        receiver.start()
        stop.wait()
        receiver.stop()
    print(f"{receiver.stored} objects stored, {receiver.failed} refused", file=sys.stderr)
    return 0


COMMANDS = {
    "ingest": ingest_command.cmd_ingest,
    "search": search_commands.cmd_search,
    "similar": search_commands.cmd_similar,
    "score": task_commands.cmd_score,
    "tasks": task_commands.cmd_tasks,
    "delete-task": task_commands.cmd_delete_task,
    "videos": video_commands.cmd_videos,
    "video": video_commands.cmd_video,
    "tag": video_commands.cmd_tag,
    "delete": video_commands.cmd_delete,
    "export": video_commands.cmd_export,
    "info": info_command.cmd_info,
    "backup": backup_commands.cmd_backup,
    "evaluate": evaluation_commands.cmd_evaluate,
    "ui": ui_command.cmd_ui,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `echosearch` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    try:
        if args.command == "serve":
            return serve_command.cmd_serve(args)
        if args.command == "check":
            return check_command.cmd_check(args)
        if args.command == "restore":
            return backup_commands.cmd_restore(args)
        if args.command == "bulk":
            return bulk_cli.run(args, _connect)
        if args.command == "dicom-listen":
            return cmd_dicom_listen(args)
        with _connect(args) as client:
            return COMMANDS[args.command](client, args)
    except ValueError as exc:  # UsageError, or a value the client refused before calling
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`echosearch videos | head`): stop quietly, as Unix tools do.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:
        hint = ""
        if exc.code == grpc.StatusCode.UNAVAILABLE:
            hint = " (is the server running there? set --server or ECHOSEARCH_SERVER)"
        elif exc.request_id:  # what to quote to whoever reads the server's log
            hint = f" (request id {exc.request_id})"
        print(f"error: {exc.code.name}: {exc.message}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
