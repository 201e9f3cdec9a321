"""`echosearch serve`: its flags and the command that starts the server (the server stack is imported only here)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from echosearch.client.params import UsageError

DEFAULT_MODEL = "hf-hub:mkaichristensen/echo-clip"


# Per-request caps of `serve` (server/echosearch/server/limits.py holds the defaults; docs/api.md "Limits").
LIMIT_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--upload-idle-timeout", "upload_idle_timeout_s", float, "seconds an upload may send nothing (default 30)"),
    (
        "--max-concurrent-uploads",
        "max_concurrent_uploads",
        int,
        "uploads received at once (default: half of --workers)",
    ),
    ("--min-chunk-bytes", "min_chunk_bytes", int, "smallest upload chunk but the last (default 16384)"),
    ("--max-frame-pixels", "max_frame_pixels", int, "largest frame, width x height (default 16777216 = 4096x4096)"),
    ("--max-frames-per-video", "max_frames_per_video", int, "frames embedded per video (default 512)"),
    ("--max-metadata-key-bytes", "max_metadata_key_bytes", int, "longest tag key (default 256)"),
    ("--max-metadata-value-bytes", "max_metadata_value_bytes", int, "longest metadata value (default 1024)"),
    ("--max-tags-per-video", "max_tags_per_video", int, "tags per video (default 256)"),
    ("--max-metadata-bytes", "max_metadata_bytes", int, "all metadata of one video (default 65536)"),
    ("--max-filter-terms", "max_filter_terms", int, "values in one filter (default 1000)"),
    ("--max-prompts-per-task", "max_prompts_per_task", int, "prompts of one task (default 2048)"),
    ("--max-page-bytes", "max_page_bytes", int, "bytes of one page or search reply (default 3145728)"),
)


def _limit_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("per-request limits (docs/api.md, Limits)")
    for flag, dest, kind, text in LIMIT_FLAGS:
        group.add_argument(flag, dest=f"limit_{dest}", type=kind, default=None, metavar="N", help=text)


def add_parser(sub: Any, make_sub: Callable[..., argparse.ArgumentParser]) -> None:
    """The `serve` subcommand's parser."""
    p = make_sub(sub, "serve", "run the gRPC server", [])
    p.add_argument(
        "--data", type=Path, default=Path("./echosearch-data"), help="data directory (default ./echosearch-data)"
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model spec (default {DEFAULT_MODEL}, about 606 MB on first start): hf-hub:REPO, "
        "local-dir:PATH (offline), random:echoclip (EchoCLIP's architecture with random weights: "
        "try the service without a download), random:tiny (tests)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)")
    p.add_argument("--port", type=int, default=50051, help="port to listen on (default 50051; 0: any free port)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="(default auto: cuda if present)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="(default fp32)")
    p.add_argument("--index", default="Flat", help="FAISS factory string (Flat, HNSW32, IVF1024,PQ64, ...)")
    p.add_argument("--max-upload-mb", type=int, default=2048, help="largest accepted video in MiB (default 2048)")
    # -- search backend (issue 9): where exact search and task scoring run
    p.add_argument(
        "--search-device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto: FAISS's GPU index when FAISS sees GPUs, else the frame matrix resident on CUDA via torch, "
        "else the CPU FAISS index (default auto)",
    )
    p.add_argument(
        "--gpu-memory-gb",
        type=float,
        default=None,
        help="cap on the GPU memory the resident matrices may use; past it, search falls back to the CPU index",
    )
    p.add_argument(
        "--search-precision",
        default="fp16",
        choices=("fp16", "bf16", "fp32"),
        help="storage precision of the resident CUDA matrices (top hits are re-scored in fp32; default fp16)",
    )
    p.add_argument("--workers", type=int, default=16, help="RPC worker threads (default 16)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key: serve TLS)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument(
        "--token-file", type=Path, help="require this bearer token (else env ECHOSEARCH_TOKEN; neither: no auth)"
    )
    p.add_argument("--grace", type=float, default=30.0, help="seconds in-flight calls get on SIGTERM (default 30)")
    p.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="server log detail on stderr (default INFO)",
    )
    p.add_argument(
        "--thumbnails",
        choices=("on", "off"),
        default="on",
        help="keep a small JPEG of each embedded frame's model-input crop (default on; off keeps no pixels)",
    )
    _limit_flags(p)
    # DICOM (issue 14): docs/dicom.md
    p.add_argument(
        "--phi",
        choices=("hash", "keep", "drop"),
        default="hash",
        help="DICOM PatientID: keyed hash with the store's secret (default), keep as is, or drop",
    )
    p.add_argument(
        "--dicom-mask",
        choices=("region", "off"),
        default="region",
        help="black out DICOM pixels outside the largest 2D ultrasound region (default region), or off",
    )
    g = p.add_argument_group("ingest path (batching encoder, decode workers)")
    g.add_argument(
        "--batch-frames",
        type=int,
        default=None,
        help="most frames per model batch, across uploads (default 256 on CUDA, 32 on CPU)",
    )
    g.add_argument("--batch-wait-ms", type=float, default=5.0, help="longest a batch waits to fill, in ms (default 5)")
    g.add_argument(
        "--decode-workers",
        type=int,
        default=None,
        help="decode worker processes (default min(cores - 1, 8), at least 1)",
    )
    g.add_argument(
        "--decode-timeout", type=float, default=120.0, help="seconds one video may take to decode (default 120)"
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the image tower (off by default)")


def _server_log_handler(level: str) -> logging.Handler:
    """stderr, without open_clip's INFO chatter on the root logger ("No potential checkpoint path found" reads as
    a failure; model.py logs what was loaded) unless --log-level DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    if level != "DEBUG":
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or "open_clip" not in r.pathname)
    return handler


def cmd_serve(args: argparse.Namespace) -> int:
    # faiss logs which CPU build it picked at INFO, as "No module named 'faiss.swigfaiss_avx512'": not a failure.
    logging.getLogger("faiss.loader").setLevel(logging.DEBUG if args.log_level == "DEBUG" else logging.WARNING)
    logging.basicConfig(
        handlers=[_server_log_handler(args.log_level)],
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Imported here: the server stack (torch, faiss, duckdb) is not part of a client install.
    try:
        from echosearch.server.serve import ServeOptions, read_token, serve
    except ImportError as exc:
        raise UsageError(
            f"the server is not installed ({exc.name} is missing): pip install 'echosearch[server]'"
        ) from None
    try:
        token = read_token(args.token_file)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--token-file: {exc}") from None
    for flag, value, low in (
        ("--batch-frames", args.batch_frames, 1),
        ("--batch-wait-ms", args.batch_wait_ms, 0),
        ("--decode-workers", args.decode_workers, 1),
    ):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be >= {low}, not {value}")
    if args.decode_timeout <= 0:
        raise UsageError(f"--decode-timeout must be > 0 seconds, not {args.decode_timeout}")
    from echosearch.server.limits import Limits

    try:
        limits = Limits().with_overrides(**{dest: getattr(args, f"limit_{dest}") for _, dest, _, _ in LIMIT_FLAGS})
        limits.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    opts = ServeOptions(
        limits=limits,
        data_dir=args.data, model=args.model, host=args.host, port=args.port, device=args.device, precision=args.precision,
        index_factory=args.index, max_upload_mb=args.max_upload_mb, workers=args.workers, tls_cert=args.tls_cert,
        tls_key=args.tls_key, token=token, grace=args.grace, phi=args.phi, dicom_mask=args.dicom_mask,
        search_device=args.search_device, gpu_memory_gb=args.gpu_memory_gb, search_precision=args.search_precision,
        batch_frames=args.batch_frames, batch_wait_ms=args.batch_wait_ms, decode_workers=args.decode_workers,
        decode_timeout_s=args.decode_timeout, compile=args.compile,
    )  # fmt: skip
    opts = dataclasses.replace(opts, thumbnails=args.thumbnails == "on")
    return serve(opts)
