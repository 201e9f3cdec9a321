"""Bulk benchmark (issue 10): `bulk embed` on local Ray vs in-process ingest_video; `bulk load` vs Store.add_videos.

    .venv/bin/python bench/bulk.py [--models random:tiny,random:echoclip] [--load-frames 1000000]

(a) embed: the same synthetic files (320x240 MJPG, 48 frames) through `run_embed` on a local Ray (already
    started: a cluster is started once per job) and through `services.ingest.ingest_video` one by one in this process, each
    at two sizes; the ratio of marginal frames/s (what an archive sees: the fixed start-up of Ray's actors,
    printed too, cancels out).
(b) load: synthetic shards (dim 512, 20 frames per video) streamed by the real client to a real server
    (`ImportEmbeddings`, one transaction per shard), as Parquet and as Arrow IPC streams (`--wire`), each into
    an empty store, vs `validate_video` + `Store.add_videos` in process (1000 videos per transaction, the path
    bench/api.py fills with) and vs raw FAISS Flat add + write_index of the same vectors; ratios of frames/s,
    and the absolute seconds of the 1M-frame load. Targets: (a) >= 0.8x, (b) >= 5x, >= 0.7x raw FAISS, <= 10 s.
No timed assertions; measured side by side in one run (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # synthetic, servers

from echosearch.server.bulk.shards import EmbeddedVideo, shard_paths, shard_table, write_shard  # noqa: E402
from echosearch.server.records import NewVideo, VideoMetadata  # noqa: E402


def bench_embed(model: str, sizes: tuple[int, int], folder: Path, cpus: int) -> dict[str, float]:
    """Both paths at two sizes: marginal frames/s (the fixed start-up cost cancels) and Ray's fixed cost."""
    import ray

    from echosearch.server.bulk.embed import EmbedOptions, run_embed
    from echosearch.server.services.ingest import ingest_video
    from tests.fixtures.servers import open_tiny
    from tests.fixtures.synthetic import make_video

    src = folder / "videos"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(max(sizes)):
        make_video(320, 240, 48, seed=i, path=src / f"clip{i:04d}.avi")
    files = sorted(src.iterdir())
    if not ray.is_initialized():
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    inproc_s, ray_s, frames = [], [], []
    with open_tiny(folder / "inproc-warm", model_spec=model) as services:
        ingest_video(services, files[0], source_name="warm-up")  # the in-process model is loaded once, before timing
        model_obj = services.model
    for n in sizes:
        with open_tiny(folder / f"inproc-{n}", model_spec=model, model=model_obj) as services:
            t0 = time.perf_counter()
            frames.append(sum(ingest_video(services, f, source_name=f.name).video.sampled_frames for f in files[:n]))
            inproc_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        opts = EmbedOptions(sources=[str(f) for f in files[:n]], out_dir=folder / f"shards-{n}", model_spec=model)
        summary = run_embed(opts)
        ray_s.append(time.perf_counter() - t0)
        assert summary.frames == frames[-1] and summary.failed == 0, summary.line()
    extra = frames[1] - frames[0]
    inproc, bulk = extra / (inproc_s[1] - inproc_s[0]), extra / (ray_s[1] - ray_s[0])
    return {"inproc": inproc, "bulk": bulk, "frames": extra, "fixed": ray_s[0] - frames[0] / bulk}


def synthetic_videos(start: int, count: int, fpv: int, dim: int, rng: np.random.Generator) -> list[EmbeddedVideo]:
    emb = rng.standard_normal((count * fpv, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return [
        EmbeddedVideo(
            sha256=f"{start + i:064x}", source_uri=f"s3://archive/{start + i}.avi", size_bytes=1 << 20,
            total_frames=2 * fpv, fps=30.0, width=800, height=600, frame_indices=np.arange(0, 2 * fpv, 2),
            timestamps=np.arange(fpv) / 15.0, embeddings=emb[i * fpv : (i + 1) * fpv],
            metadata=VideoMetadata(study_id=f"S{(start + i) // 4}", view="A4C"),
        )
        for i in range(count)
    ]  # fmt: skip


def bench_add_videos(frames: int, dim: int, fpv: int, folder: Path) -> float:
    """frames/s of the ingest service's check and Store.add_videos, 1000 videos per transaction, into an empty store."""
    from echosearch.server.services.ingest import validate_video
    from echosearch.server.storage.store import Store

    rng = np.random.default_rng(1)
    store = Store(folder / "add_videos")
    store.catalog.bind_model("bench", dim)
    elapsed = 0.0
    for start in range(0, frames // fpv, 1000):
        videos = synthetic_videos(start, min(1000, frames // fpv - start), fpv, dim, rng)
        items = [
            NewVideo(
                sha256=v.sha256, source_name=v.source_uri, size_bytes=v.size_bytes, fps=v.fps,
                total_frames=v.total_frames, width=v.width, height=v.height, model_identity="bench",
                metadata=v.metadata, frame_indices=v.frame_indices, timestamps=v.timestamps, embeddings=v.embeddings,
            )
            for v in videos
        ]  # fmt: skip
        t0 = time.perf_counter()
        store.add_videos([validate_video(v) for v in items])
        elapsed += time.perf_counter() - t0
    store.close()
    return (frames // fpv * fpv) / elapsed


def write_load_shards(folder: Path, frames: int, fpv: int, shard_frames: int, identity: str, dim: int) -> None:
    """Synthetic shards as `bulk embed` writes them (Parquet), and the same tables as Arrow IPC streams beside."""
    import pyarrow as pa

    rng = np.random.default_rng(2)
    per_shard = shard_frames // fpv
    for start in range(0, frames // fpv, per_shard):
        table = shard_table(synthetic_videos(start, per_shard, fpv, dim, rng), identity, dim)
        path = write_shard(folder / "parquet", table)
        (folder / "arrow").mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(folder / "arrow" / path.with_suffix(".arrows").name), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)


def bench_load(frames: int, dim: int, fpv: int, shard_frames: int, folder: Path, jobs: int, wire: str = "parquet"):
    """(seconds, frames) of `bulk load` of synthetic shards (`wire`: parquet or arrow) into a fresh in-process
    server, and the same vectors' raw FAISS Flat add + write_index in this process."""
    import faiss

    from echosearch.client.client import Client
    from tests.fixtures.servers import start_inprocess

    # random:echoclip: the real architecture's 512-wide embeddings (its weights do not matter to a load)
    server = start_inprocess(folder / f"server-{wire}", model_spec="random:echoclip", workers=8)
    try:
        services = server.services
        identity, dim = services.model.identity, services.model.embed_dim
        shards = folder / "load-shards"
        if not shards.exists():
            write_load_shards(shards, frames, fpv, shard_frames, identity, dim)
        paths = shard_paths(shards / "parquet") if wire == "parquet" else sorted((shards / "arrow").glob("*.arrows"))
        with Client(server.address) as client, ThreadPoolExecutor(jobs) as pool:
            t0 = time.perf_counter()
            results = list(pool.map(client.import_shard, paths))
            seconds = time.perf_counter() - t0
        loaded = sum(r.frames_added for r in results)
        print(f"bulk load ({wire}): {loaded} frames in {seconds:.1f}s", flush=True)
        assert loaded == services.store.catalog.count_frames() == services.store.frame_index.ntotal
    finally:
        server.stop()
    raw = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    t0 = time.perf_counter()
    for path in paths:  # what raw FAISS needs of the same shards: their vectors, added and written durably
        emb = read_embeddings(path, dim)
        raw.add_with_ids(emb, np.arange(raw.ntotal, raw.ntotal + len(emb), dtype=np.int64))
    faiss.write_index(raw, str(folder / "raw.faiss"))
    with open(folder / "raw.faiss", "rb+") as f:
        os.fsync(f.fileno())
    raw_seconds = time.perf_counter() - t0
    (folder / "raw.faiss").unlink()
    return seconds, loaded, raw_seconds


def read_embeddings(path: Path, dim: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".arrows":
        with pa.memory_map(str(path)) as source:
            column = pa.ipc.open_stream(source).read_all().column("embedding").combine_chunks()
    else:
        column = pq.read_table(path, columns=["embedding"]).column("embedding").combine_chunks()
    return column.flatten().to_numpy().reshape(-1, dim)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="random:tiny,random:echoclip")
    parser.add_argument("--videos", default="20:80,2:6", help="two sizes (SMALL:LARGE videos) per model for (a)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--load-frames", type=int, default=1_000_000)
    parser.add_argument("--baseline-frames", type=int, default=200_000, help="frames for the add_videos baseline")
    parser.add_argument("--shard-frames", type=int, default=250_000)
    parser.add_argument("--jobs", type=int, default=2, help="shards in flight during the load")
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument(
        "--wire", nargs="+", default=["parquet", "arrow"], help="shard formats loaded, each into a fresh server"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="echosearch-bulk-bench-") as tmp:
        if not args.skip_embed:
            for model, spec in zip(args.models.split(","), args.videos.split(",")):
                sizes = tuple(int(v) for v in spec.split(":"))
                r = bench_embed(model, sizes, Path(tmp) / model.replace(":", "-"), args.cpus)
                rows.append(
                    (f"embed {model}: bulk embed (local Ray, {args.cpus} CPUs) vs ingest_video, marginal rate "
                     f"from {sizes[0]} to {sizes[1]} videos ({r['frames']} frames); Ray's fixed start {r['fixed']:.0f} s",
                     f"{r['bulk']:.1f} vs {r['inproc']:.1f} frames/s", f"{r['bulk'] / r['inproc']:.2f}x", ">= 0.8x")
                )  # fmt: skip
                shutil.rmtree(Path(tmp) / model.replace(":", "-"), ignore_errors=True)
                print(rows[-1], flush=True)
        if not args.skip_load:
            dim, fpv = 512, 20
            base = bench_add_videos(args.baseline_frames, dim, fpv, Path(tmp))
            print(f"add_videos: {base:.0f} frames/s", flush=True)
            shutil.rmtree(Path(tmp) / "add_videos", ignore_errors=True)
            for wire in args.wire:
                seconds, loaded, raw = bench_load(
                    args.load_frames, dim, fpv, args.shard_frames, Path(tmp), args.jobs, wire
                )
                rate = loaded / seconds
                rows.append(
                    (f"bulk load ({wire} on the wire) of {loaded:,} frames (dim 512, shards of {args.shard_frames:,}) "
                     f"vs Store.add_videos ({args.baseline_frames:,} frames, 1000 videos/transaction)",
                     f"{rate:,.0f} vs {base:,.0f} frames/s", f"{rate / base:.1f}x", ">= 5x")
                )  # fmt: skip
                rows.append(
                    (f"bulk load ({wire}) vs raw FAISS Flat add + write_index + fsync of the same shards' vectors",
                     f"{rate:,.0f} vs {loaded / raw:,.0f} frames/s", f"{raw / seconds:.2f}x", ">= 0.7x")
                )  # fmt: skip
                rows.append((f"bulk load ({wire}) of {loaded:,} frames, absolute", f"{seconds:.1f} s", "", "<= 10 s"))
    print("| measure | measured | ratio | target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
