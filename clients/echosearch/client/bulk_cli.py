"""`echosearch bulk embed|load`: archive-scale ingest (docs/bulk.md).

`bulk embed` runs the embedding pipeline on Ray (the server stack and `ray[data]`, imported only when it
runs); `bulk load` is a plain client: it streams each shard to a running server, which commits it in one
transaction and acknowledges it. Both can be re-run after an interruption and finish the job.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from echosearch.client.cli_examples import EXAMPLES
from echosearch.client.client import ApiError, Client
from echosearch.client.manifest import read_manifest
from echosearch.client.output import Progress, print_json, print_table
from echosearch.client.params import UsageError
from echosearch.errors import EchoSearchError

SHARD_GLOB = "shard-*.parquet"


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The `bulk` command and its `embed` and `load` subcommands."""
    about = "archive-scale ingest: embed on Ray to Parquet shards, load them into a server"
    bulk = sub.add_parser(
        "bulk",
        help=about,
        description=about[0].upper() + about[1:] + ".",
        epilog=EXAMPLES["bulk"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    steps = bulk.add_subparsers(dest="bulk_command", required=True, metavar="STEP")

    p = steps.add_parser("embed", parents=[common], help="embed video files/folders/URIs into Parquet shards (Ray)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="files, folders, or URIs (s3://, gs://, hdfs://)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder of shards (created; reruns resume)")
    p.add_argument("--model", default="hf-hub:mkaichristensen/echo-clip", help="model spec, as for `serve`")
    p.add_argument(
        "--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="encoder precision (default fp32)"
    )
    p.add_argument("--manifest", type=Path, metavar="CSV", help="per-file metadata (path|uri, study_id, ...)")
    p.add_argument("--skip-stored", metavar="SERVER", help="also skip files this server (host:port) already stores")
    p.add_argument("--ray-address", help="Ray cluster to run on (default: start a local Ray on this machine)")
    p.add_argument("--num-gpus", type=int, help="GPU encoder actors (default: every GPU of the cluster)")
    p.add_argument("--decode-concurrency", type=int, help="decode actors, one CPU each (default: the free CPUs)")
    p.add_argument("--encode-concurrency", type=int, help="encoder actors (default: one per GPU, else 1)")
    p.add_argument("--shard-frames", type=int, default=250_000, help="frames per shard (default 250000)")
    p.add_argument(
        "--sampling", choices=("reference", "all", "every", "count"), help="frames to embed (default: reference 0:40:2)"
    )
    p.add_argument("--step", type=int, default=2, help="with --sampling every")
    p.add_argument("--count", type=int, default=20, help="with --sampling count")
    p.add_argument("--max-frames", type=int, default=512, help="at most this many frames per video (default 512)")
    p.add_argument(
        "--channel-order", choices=("rgb", "bgr"), default="rgb", help="bgr reproduces the published code (default rgb)"
    )
    p.add_argument(
        "--thumbnails",
        choices=("on", "off"),
        default="on",
        help="put a small JPEG of each frame's model-input crop in the shards, as `serve --thumbnails` (default on)",
    )

    p = steps.add_parser("load", parents=[common], help="stream a folder of shards into the running server")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--jobs", "-j", type=int, default=2, help="shards in flight (default 2: send one, commit one)")
    p.add_argument("--force", action="store_true", help="send shards the server already imported again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Client]) -> int:
    """Run `bulk embed` or `bulk load`."""
    if args.bulk_command == "embed":
        return _embed(args, connect)
    with connect(args) as client:
        return _load(client, args)


def _embed(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Client]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:  # the server stack and Ray: not part of a client install
        from echosearch.server.bulk.embed import EmbedOptions, run_embed
        from echosearch.server.media.video import Sampling
        from echosearch.server.records import VideoMetadata
    except ImportError as exc:
        raise UsageError(
            f"bulk embed needs the server and Ray ({exc.name} is missing): pip install 'echosearch[server,bulk]'"
        ) from None
    metadata = {}
    if args.manifest:
        manifest = read_manifest(args.manifest)
        for key in manifest:
            m = manifest.metadata_for(key)
            metadata[key] = VideoMetadata(m.study_id, m.patient_id, m.view, m.acquisition_time, dict(m.tags))
    skip: frozenset[str] = frozenset()
    if args.skip_stored:
        args.server = args.skip_stored
        with connect(args) as client:
            skip = frozenset(v.sha256 for v in client.iter_videos())
        print(f"{len(skip)} videos already stored on {args.skip_stored} will be skipped", file=sys.stderr)
    try:
        sampling = Sampling(args.sampling or "reference", args.step, args.count, args.max_frames)
    except EchoSearchError as exc:  # an option out of range
        raise UsageError(str(exc)) from None
    opts = EmbedOptions(
        sources=[str(s) for s in args.sources],
        out_dir=args.out,
        model_spec=args.model,
        metadata=metadata,
        sampling=sampling,
        channel_order=args.channel_order,
        precision=args.precision,
        ray_address=args.ray_address,
        num_gpus=args.num_gpus,
        decode_concurrency=args.decode_concurrency,
        encode_concurrency=args.encode_concurrency,
        shard_frames=args.shard_frames,
        skip_sha256=skip,
        thumbnails=args.thumbnails == "on",
    )
    try:
        summary = run_embed(opts)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print_json({"summary": summary.line(), "shards": [str(p) for p in summary.shards]})
    print(summary.line(), file=sys.stderr)
    if summary.failed:
        print(f"failures (with reasons): {args.out / 'failures.parquet'}", file=sys.stderr)
    return 1 if summary.failed else 0


def _load(client: Client, args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        raise UsageError(f"{args.dir}: no such folder")
    shards = sorted(args.dir.glob(SHARD_GLOB))
    if not shards:
        raise UsageError(
            f"{args.dir}: no shards ({SHARD_GLOB}); write them with `echosearch bulk embed --out {args.dir}`"
        )
    progress = Progress(len(shards), "load", enabled=False if args.no_progress else None)
    started = time.perf_counter()
    rows, failed = [], 0
    # A few shards in flight: one uploads while the server commits another (commits are serial).
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for path, future in [(s, pool.submit(client.import_shard, s, force=args.force)) for s in shards]:
            try:
                r = future.result()
            except ApiError as exc:
                failed += 1
                print(f"error: {path.name}: {exc.code.name}: {exc.message}", file=sys.stderr)
                rows.append({"shard": path.name, "status": "failed", "error": f"{exc.code.name}: {exc.message}"})
            else:
                status = "already imported" if r.already_imported else "imported"
                rows.append(
                    {
                        "shard": r.shard_name,
                        "status": status,
                        "videos_added": r.videos_added,
                        "videos_already_stored": r.videos_already_stored,
                        "frames_added": r.frames_added,
                    }
                )
            if args.json:
                print_json(rows[-1])
            progress.advance(detail=path.name)
    progress.close()
    if not args.json:
        print_table(
            ["shard", "status", "videos", "already", "frames"],
            [
                [r["shard"], r["status"], r.get("videos_added"), r.get("videos_already_stored"), r.get("frames_added")]
                for r in rows
            ],
        )
    seconds = time.perf_counter() - started
    frames = sum(r.get("frames_added", 0) for r in rows)
    videos = sum(r.get("videos_added", 0) for r in rows)
    print(
        f"{len(shards)} shards: {videos} videos / {frames} frames added in {seconds:.1f}s "
        f"({frames / max(seconds, 1e-9):.0f} frames/s), {failed} failed",
        file=sys.stderr,
    )
    return 1 if failed else 0
