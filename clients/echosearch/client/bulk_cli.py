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
from typing import Any

from echosearch.client.bulk_metadata import (
    CHANGES_FILE,
    as_client_metadata,
    find_corrections,
    read_corrections,
    write_corrections,
)
from echosearch.client.cli_examples import EXAMPLES
from echosearch.client.client import ApiError, Client
from echosearch.client.manifest import read_manifest
from echosearch.client.output import Progress, print_json, print_table
from echosearch.client.params import UsageError
from echosearch.client.types import ImportResult
from echosearch.client.types import VideoMetadata as ClientMetadata
from echosearch.errors import EchoSearchError

# Parquet shards as `bulk embed` writes them, and Arrow IPC streams of the same columns (docs/bulk.md);
# the server's bulk/shards.SHARD_GLOBS (the client does not import the server)
SHARD_GLOBS = ("shard-*.parquet", "shard-*.arrows")


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
        from echosearch.server.bulk.shards import embedded_metadata
        from echosearch.server.bulk.sources import list_source_files
        from echosearch.server.records import Sampling, VideoMetadata
    except ImportError as exc:
        raise UsageError(
            f"bulk embed needs the server and Ray ({exc.name} is missing): pip install 'echosearch[server,bulk]'"
        ) from None
    try:
        files = list_source_files(str(s) for s in args.sources)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    manifest = read_manifest(args.manifest) if args.manifest else None
    metadata = {}
    if manifest is not None:
        manifest.check_matches(f.uri for f in files)  # the rule of `ingest --manifest`
        for f in files:
            m = manifest.metadata_for(f.uri) or ClientMetadata()
            metadata[f.uri] = VideoMetadata(m.study_id, m.patient_id, m.view, m.acquisition_time, dict(m.tags))
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
        summary = run_embed(opts, files)
    except EchoSearchError as exc:  # e.g. the folder holds another model's shards
        raise UsageError(str(exc)) from None
    corrections = 0
    if manifest is not None:  # metadata is re-read on every run: a corrected manifest reaches `bulk load`
        embedded = {sha: as_client_metadata(m) for sha, m in embedded_metadata(args.out).items()}
        found = find_corrections(summary.hashes, manifest, embedded)
        write_corrections(args.out, found, [sha for sha in summary.hashes.values() if sha in embedded])
        corrections = len(found)
    if args.json:
        print_json({"summary": summary.line(), "shards": [str(p) for p in summary.shards], "corrections": corrections})
    print(summary.line(), file=sys.stderr)
    if corrections:
        print(
            f"{corrections} video(s) embedded earlier have other metadata in the manifest now; `bulk load` applies "
            f"the changes ({args.out / CHANGES_FILE})",
            file=sys.stderr,
        )
    if summary.failed:
        print(f"failures (with reasons): {args.out / 'failures.parquet'}", file=sys.stderr)
    return 1 if summary.failed else 0


def _load(client: Client, args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        raise UsageError(f"{args.dir}: no such folder")
    shards = sorted(path for pattern in SHARD_GLOBS for path in args.dir.glob(pattern))
    if not shards:
        raise UsageError(
            f"{args.dir}: no shards ({' or '.join(SHARD_GLOBS)}); write them with "
            f"`echosearch bulk embed --out {args.dir}`"
        )
    progress = Progress(len(shards), "load", enabled=False if args.no_progress else None)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    # A few shards in flight: one uploads while the server commits another (commits are serial).
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for path, future in [(s, pool.submit(client.import_shard, s, force=args.force)) for s in shards]:
            try:
                rows.append(_shard_row(future.result()))
            except ApiError as exc:
                print(f"error: {path.name}: {exc.code.name}: {exc.message}", file=sys.stderr)
                rows.append({"shard": path.name, "status": "failed", "error": f"{exc.code.name}: {exc.message}"})
            if args.json:
                print_json(rows[-1])
            progress.advance(detail=path.name)
    progress.close()
    seconds = time.perf_counter() - started
    if not args.json:
        print_table(
            ["shard", "status", "videos added", "already stored", "frames added"],
            [
                [r["shard"], r["status"], r.get("videos_added"), r.get("videos_already_stored"), r.get("frames_added")]
                for r in rows
            ],
        )
    print(_load_summary(rows, seconds), file=sys.stderr)
    failed = sum(r["status"] == "failed" for r in rows)
    corrected = _apply_corrections(client, args)
    return 1 if failed or corrected < 0 else 0


def _shard_row(r: ImportResult) -> dict[str, Any]:
    """One shard's outcome; a shard imported before added nothing now (the server reports its first counts)."""
    if r.already_imported:
        stored = r.videos_added + r.videos_already_stored
        return {"shard": r.shard_name, "status": "already imported", "videos_added": 0,
                "videos_already_stored": stored, "frames_added": 0}  # fmt: skip
    return {"shard": r.shard_name, "status": "imported", "videos_added": r.videos_added,
            "videos_already_stored": r.videos_already_stored, "frames_added": r.frames_added}  # fmt: skip


def _load_summary(rows: list[dict[str, Any]], seconds: float) -> str:
    """The closing line: what was added, what was skipped, what failed."""
    counts = {s: sum(r["status"] == s for r in rows) for s in ("imported", "already imported", "failed")}
    videos = sum(r.get("videos_added", 0) for r in rows)
    frames = sum(r.get("frames_added", 0) for r in rows)
    stored = sum(r.get("videos_already_stored", 0) for r in rows if r["status"] == "imported")
    added = f"{counts['imported']} imported"
    if counts["imported"]:
        added += (
            f" ({videos} videos / {frames} frames added in {seconds:.1f}s, {frames / max(seconds, 1e-9):.0f} frames/s"
        )
        added += f"; {stored} videos already stored)" if stored else ")"
    skipped = f"{counts['already imported']} already imported"
    if counts["already imported"] and not counts["imported"]:
        skipped += " (nothing added)"
    return f"{len(rows)} shards: {added}, {skipped}, {counts['failed']} failed"


def _apply_corrections(client: Client, args: argparse.Namespace) -> int:
    """Apply DIR/metadata_changes.jsonl to the stored videos; the number changed, -1 when a change failed."""
    corrections = read_corrections(args.dir)
    if not corrections:
        return 0
    wanted = {c.sha256: c for c in corrections}
    changed = failed = 0
    for video in client.iter_videos(page_size=10_000):
        c = wanted.get(video.sha256)
        if c is None or not c.applies_to(video.metadata):
            continue
        set_, remove = c.update()
        try:
            client.update_video_metadata(video.video_id, set_, remove)
        except ApiError as exc:
            failed += 1
            print(f"error: video {video.video_id} ({c.source_uri}): {exc.code.name}: {exc.message}", file=sys.stderr)
            continue
        changed += 1
    line = f"{changed} video(s) had their metadata corrected from the manifest ({args.dir / CHANGES_FILE})"
    print(line + (f", {failed} failed" if failed else ""), file=sys.stderr)
    if args.json:
        print_json({"metadata_corrected": changed, "metadata_failed": failed})
    return -1 if failed else changed
