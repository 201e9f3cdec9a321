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
from typing import Any

import grpc

from echosearch.client import bulk_cli, serve_command
from echosearch.client.cli_examples import EXAMPLES, FILTER_HELP
from echosearch.client.client import DEFAULT_ADDRESS, ApiError, Client
from echosearch.client.evaluation import commands as evaluation_commands
from echosearch.client.ingest_command import (
    DICOM_EXTENSIONS,
    VIDEO_EXTENSIONS,
    cmd_ingest,
    collect_media,
    collect_videos,
)
from echosearch.client.output import Progress, fmt, print_json, print_table
from echosearch.client.params import UsageError, parse_filter
from echosearch.client.score_command import cmd_score
from echosearch.client.types import Video
from echosearch.client.video_commands import cmd_delete, cmd_tag, video_fields

__all__ = ["DICOM_EXTENSIONS", "VIDEO_EXTENSIONS", "build_parser", "collect_media", "collect_videos", "main"]
DESCRIPTION_WIDTH = 60


# ---- argument parsing ------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
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


def _filter_arg(p: argparse.ArgumentParser) -> None:
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


def _k_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", type=positive_int, default=10, help="how many videos, 1..10000 (default 10)")


def _sub(sub: Any, name: str, help: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """A subcommand whose --help shows its defaults and ends with examples."""
    return sub.add_parser(
        name,
        parents=parents,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=EXAMPLES.get(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="echosearch",
        description="EchoCLIP embeddings of echo videos: ingest, search, score.",
        parents=[common],
        epilog="`echosearch COMMAND --help` shows a command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_command.add_parser(sub, _sub)

    p = _sub(sub, "ingest", "upload video files and folders (recursive)", [common])
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
        "other keys become tags. An already stored file gets this metadata",
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

    p = _sub(sub, "search", "videos matching a text", [common])
    p.add_argument("text", help="what to look for, e.g. an EchoCLIP report phrase")
    _k_arg(p)
    p.add_argument(
        "--aggregation",
        choices=("max", "mean"),
        default="max",
        help="max: best frame; mean: EchoCLIP binary score (default max)",
    )
    p.add_argument("--frames", type=int, default=1, help="best frames shown per video (default 1)")
    _filter_arg(p)

    p = _sub(sub, "similar", "videos similar to a stored video", [common])
    p.add_argument("video_id", type=int, help="a stored video's id")
    _k_arg(p)
    p.add_argument("--aggregation", choices=("max", "mean"), default="mean", help="(default mean)")
    _filter_arg(p)

    p = _sub(sub, "score", "score a task (or custom prompts) over stored videos", [common])
    p.add_argument("task", nargs="?", help="registered task name (see `echosearch tasks`); omit with --prompt")
    p.add_argument("--ids", type=int, nargs="+", help="only these video ids (unknown ids are reported, exit 1)")
    p.add_argument(
        "--top",
        type=positive_int,
        metavar="K",
        help="only the K highest: binary by score, regression and categorical by value",
    )
    p.add_argument("--bottom", type=positive_int, metavar="K", help="only the K lowest (e.g. the lowest EF)")
    p.add_argument("--prompt", action="append", default=[], help="custom task prompt (repeat); needs --kind")
    p.add_argument(
        "--kind", choices=("binary", "regression", "categorical"), help="the custom task's kind (with --prompt)"
    )
    p.add_argument("--range", dest="value_range", metavar="FROM:TO[:STEP]", help="regression values for <#>")
    p.add_argument("--value", type=float, action="append", help="categorical: the value of each --prompt, in order")
    p.add_argument("--label", action="append", default=[], metavar="VALUE=NAME", help="categorical: name of a value")
    p.add_argument("--threshold", type=float, help="binary: decision threshold")
    p.add_argument("--name", default="custom", help="custom task name")
    _filter_arg(p)

    _sub(sub, "tasks", "list registered tasks (and plugins the server skipped)", [common])
    p = _sub(sub, "videos", "list stored videos", [common])
    p.add_argument("--limit", type=int, default=0, help="at most this many (default all)")
    _filter_arg(p)
    p = _sub(sub, "video", "one stored video", [common])
    p.add_argument("video_id", type=int, help="a stored video's id")
    p.add_argument("--embeddings", action="store_true", help="also its frames and embeddings")
    p = _sub(sub, "tag", "set or remove metadata of stored videos", [common])
    p.add_argument("video_ids", type=int, nargs="+", metavar="ID")
    p.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set study_id, patient_id, view, acquisition_time; other keys are tags",
    )
    p.add_argument(
        "--remove",
        action="append",
        default=[],
        metavar="KEY",
        help="clear a field, or remove a tag (tag.KEY, or a bare KEY that is not a field)",
    )
    p = _sub(sub, "delete", "delete stored videos", [common])
    p.add_argument("video_ids", type=int, nargs="+", metavar="ID")
    p = _sub(sub, "export", "download embeddings + metadata as Parquet", [common])
    p.add_argument("out", type=Path, metavar="OUT.parquet", help="the file to write (its folder must exist)")
    _filter_arg(p)
    _sub(sub, "info", "server version, model, index, counts", [common])
    bulk_cli.add_parser(sub, common)
    evaluation_commands.add_parsers(sub, common)  # evaluate, ui (issue 11)
    for name in ("evaluate", "delete-task", "ui"):  # their parsers live with their commands; examples here
        if name in sub.choices:
            sub.choices[name].epilog = EXAMPLES[name]
            sub.choices[name].formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _connect(args: argparse.Namespace) -> Client:
    address = getattr(args, "server", None) or os.environ.get("ECHOSEARCH_SERVER") or DEFAULT_ADDRESS
    token = getattr(args, "token", None) or os.environ.get("ECHOSEARCH_TOKEN") or None
    if getattr(args, "token_file", None) is not None and token is None:  # `ui --token-file`
        token = Path(args.token_file).read_text().strip() or None
    tls: bool | str = getattr(args, "tls_ca", None) or bool(getattr(args, "tls", False))
    return Client(address, token=token, tls=tls, timeout=getattr(args, "timeout", 30.0))


# ---- commands ------------------------------------------------------------------------------


def _video_row(v: Video) -> list[Any]:
    m = v.metadata
    return [v.video_id, v.source_name, v.sampled_frames, m.study_id, m.patient_id, m.view, m.acquisition_time, m.tags]


VIDEO_HEADERS = ["id", "source", "frames", "study", "patient", "view", "acquired", "tags"]


def _print_results(results: list[Any], args: argparse.Namespace) -> None:
    if args.json:
        for r in results:
            print_json(r)
        return
    rows = []
    for r in results:
        best = ", ".join(f"#{h.frame_index}@{h.timestamp:.2f}s" for h in r.best_frames)
        rows.append(
            [r.video.video_id, r.score, r.video.source_name, r.video.metadata.study_id, r.video.metadata.view, best]
        )
    print_table(["id", "score", "source", "study", "view", "best frames"], rows)


def cmd_search(client: Client, args: argparse.Namespace) -> int:
    _print_results(
        client.search_by_text(
            args.text,
            k=args.k,
            aggregation=args.aggregation,
            filter=parse_filter(args.filter),
            frames_per_video=args.frames,
        ),
        args,
    )
    return 0


def cmd_similar(client: Client, args: argparse.Namespace) -> int:
    _print_results(
        client.search_by_video(args.video_id, k=args.k, aggregation=args.aggregation, filter=parse_filter(args.filter)),
        args,
    )
    return 0


def cmd_tasks(client: Client, args: argparse.Namespace) -> int:
    tasks, skipped = client.list_tasks_and_problems()
    if args.json:
        for t in tasks:
            print_json(t)
        for p in skipped:
            print_json({"skipped": p})
        return 0
    rows = []
    for t in tasks:
        answer = f"threshold {t.threshold}" if t.threshold is not None else ""
        if t.value_range:
            answer = "values {:g}..{:g} step {:g}".format(*t.value_range)
        elif t.labels:
            answer = ", ".join(t.labels.values())
        rows.append([t.name, t.kind, len(t.prompts), answer, t.source, _truncate(t.description, DESCRIPTION_WIDTH)])
    print_table(["name", "kind", "prompts", "answer", "source", "description"], rows)
    for p in skipped:
        what = f"task {p.task!r} of plugin {p.plugin!r}" if p.task else f"plugin {p.plugin!r}"
        where = f" ({p.distribution})" if p.distribution else ""
        print(f"skipped: {what}{where}: {p.reason}", file=sys.stderr)
    return 0


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def cmd_videos(client: Client, args: argparse.Namespace) -> int:
    rows = []
    for n, v in enumerate(client.iter_videos(parse_filter(args.filter))):
        if args.limit and n >= args.limit:
            break
        if args.json:
            print_json(v)
        else:
            rows.append(_video_row(v))
    if not args.json:
        print_table(VIDEO_HEADERS, rows)
    return 0


def cmd_video(client: Client, args: argparse.Namespace) -> int:
    video = client.get_video(args.video_id)
    frames = client.get_frames(args.video_id) if args.embeddings else []
    if args.json:
        print_json({"video": video, "frames": frames} if args.embeddings else video)
        return 0
    for key, value in video_fields(video):
        print(f"{key:16} {fmt(value)}")
    if frames:
        print_table(
            ["frame_id", "index", "time_s", "embedding"],
            [[f.frame_id, f.frame_index, f.timestamp, f"{len(f.embedding)}-d"] for f in frames],
        )
    return 0


def cmd_export(client: Client, args: argparse.Namespace) -> int:
    bar = Progress(0, "export", unit="B")

    def progress(received: int, total: int) -> None:
        bar.total = total
        bar.update(received)

    if bar.enabled:
        bar.message("export: the server is writing the Parquet file ...")
    rows = client.export(args.out, parse_filter(args.filter), on_progress=progress if bar.enabled else None)
    bar.close()
    print_json({"path": str(args.out), "rows": rows}) if args.json else print(f"wrote {rows} frame rows to {args.out}")
    return 0


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


def cmd_dicom_listen(args: argparse.Namespace) -> int:
    import signal
    import threading

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        from echosearch.client.dicom_listen import DicomReceiver, listen_options, quiet_pynetdicom
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
        receiver = DicomReceiver(client, options)
        receiver.start()
        stop.wait()
        receiver.stop()
    print(f"{receiver.stored} objects stored, {receiver.failed} refused", file=sys.stderr)
    return 0


COMMANDS = {
    "ingest": cmd_ingest, "search": cmd_search, "similar": cmd_similar, "score": cmd_score, "tasks": cmd_tasks,
    "videos": cmd_videos, "video": cmd_video, "delete": cmd_delete, "export": cmd_export, "info": cmd_info,
    "tag": cmd_tag,
    "evaluate": evaluation_commands.cmd_evaluate, "ui": evaluation_commands.cmd_ui,
    "delete-task": evaluation_commands.cmd_delete_task,
}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `echosearch` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    try:
        if args.command == "serve":
            return serve_command.cmd_serve(args)
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
        print(f"error: {exc.code.name}: {exc.message}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
