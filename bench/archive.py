"""The archive at scale (issue 18 item 5): build a store through `bulk load`, reopen it, search it, score EF over
every video, delete 1 %, each beside raw FAISS of the same index type in this process.

    .venv/bin/python bench/archive.py --frames 10000000 --index IVF4096,SQ8     # the issue's 10M frames, as run here
    .venv/bin/python bench/archive.py --frames 1000000 --index IVF4096,SQ8      # 1M, 8 minutes

(IVF16384, the default, trains k-means on 639k points against 16,384 centroids: too long on two cores.)

Synthetic, clustered 512-d frame embeddings (20 per video, like bench/store.py's) are written as `bulk embed`
shards, then loaded by the real client into a `serve` child process (random:echoclip: EchoCLIP's architecture;
weights do not matter to a load). Reports: load rate (server durable), disk bytes per frame (catalog, index),
the server's peak RSS, restart-to-listening time, text-search p50/p95 unfiltered and at 1 % / 10 % filters with
recall@10 of the video list against brute force over every stored vector (query texts encoded once before,
as a search caches them; the encoding is reported apart), EF scored over every video, and a
1 % delete by filter; ratios to raw FAISS `add` + `write_index` and raw FAISS search on the same vectors. The
generated shards and store are deleted at the end. Prints a markdown table; no assertions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "clients"), str(ROOT / "server"), str(ROOT / "bench")]
import faiss  # noqa: E402
import numpy as np  # noqa: E402
from store import dir_bytes  # noqa: E402

from echosearch.client import Client, VideoFilter  # noqa: E402
from echosearch.server.bulk.shards import EmbeddedVideo, shard_paths, shard_table, write_shard  # noqa: E402
from echosearch.server.model import load_model  # noqa: E402
from echosearch.server.records import VideoMetadata  # noqa: E402
from echosearch.server.storage.index_params import default_nprobe  # noqa: E402
from tests.fixtures.servers import ServerProcess  # noqa: E402

MODEL = "random:echoclip"
FPV = 20
CENTERS = 256
QUERIES = [f"ECHO FINDING NUMBER {i}: A STRUCTURE IS SEEN IN THE CHAMBER." for i in range(40)]
FILTERS = {"1 %": ("b100", 100), "10 %": ("b10", 10)}  # tag key, modulus: video i matches when i % m == 0


def shard_embeddings(shard: int, videos: int, dim: int) -> np.ndarray:
    """The frames of one shard's videos, regenerated identically for the brute force."""
    centers = np.random.default_rng(12345).standard_normal((CENTERS, dim)).astype(np.float32)
    rng = np.random.default_rng(shard)
    which = rng.integers(0, CENTERS, videos)
    emb = np.repeat(centers[which], FPV, axis=0) + 0.6 * rng.standard_normal((videos * FPV, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb


def write_shards(folder: Path, n_shards: int, per_shard: int, identity: str, dim: int) -> None:
    for s in range(n_shards):
        emb = shard_embeddings(s, per_shard, dim)
        first = s * per_shard
        videos = [
            EmbeddedVideo(
                sha256=f"{first + i:064x}", source_uri=f"archive/{first + i}.avi", size_bytes=1 << 20,
                total_frames=2 * FPV, fps=30.0, width=800, height=600, frame_indices=np.arange(0, 2 * FPV, 2),
                timestamps=np.arange(FPV) / 15.0, embeddings=emb[i * FPV : (i + 1) * FPV],
                metadata=VideoMetadata(study_id=f"S{first + i}", view="A4C",
                                       tags={k: str((first + i) % m) for k, m in FILTERS.values()}),
            )
            for i in range(per_shard)
        ]  # fmt: skip
        write_shard(folder, shard_table(videos, identity, dim))
        print(f"shard {s + 1}/{n_shards} written", file=sys.stderr, flush=True)


def brute_force(q: np.ndarray, n_shards: int, per_shard: int, dim: int, k: int = 10) -> dict[str, list[set[int]]]:
    """Exact top-k videos per query (a video scores its best frame), unfiltered and per filter."""
    best: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s in range(n_shards):
        scores = (q @ shard_embeddings(s, per_shard, dim).T).reshape(len(q), per_shard, FPV).max(axis=2)
        ids = np.arange(s * per_shard, (s + 1) * per_shard)
        for name, keep in [("all", slice(None))] + [(n, ids % m == 0) for n, (_, m) in FILTERS.items()]:
            sc, vid = scores[:, keep], np.broadcast_to(ids[keep], (len(q), len(ids[keep])))
            if name in best:
                sc, vid = np.hstack([best[name][0], sc]), np.hstack([best[name][1], vid])
            top = np.argsort(-sc, axis=1)[:, :k]
            best[name] = (np.take_along_axis(sc, top, 1), np.take_along_axis(vid, top, 1))
    return {name: [set(row) for row in vid] for name, (_, vid) in best.items()}


def raw_faiss(factory: str, n_shards: int, per_shard: int, dim: int, q: np.ndarray, folder: Path) -> dict:
    """Raw FAISS on the same vectors: train on the first shard, add all, write; then search."""
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    if not index.is_trained:
        index.train(shard_embeddings(0, per_shard, dim)[: max(100_000, 40 * 4096)])
    for s in range(n_shards):
        index.add(shard_embeddings(s, per_shard, dim))
    faiss.write_index(index, str(folder / "raw.faiss"))
    load_s = time.perf_counter() - t
    nprobe = default_nprobe(factory)
    if nprobe:  # the server's default probe count, so both answer at the same recall
        faiss.extract_index_ivf(index).nprobe = nprobe
    lat = []
    for row in q:
        t = time.perf_counter()
        index.search(row[None], 10 * FPV)
        lat.append(1000 * (time.perf_counter() - t))
    size = (folder / "raw.faiss").stat().st_size
    (folder / "raw.faiss").unlink()
    return {"load_s": load_s, "p50_ms": float(np.percentile(lat, 50)), "bytes": size}


def peak_rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def searches(client: Client, flt: VideoFilter | None) -> tuple[list[float], list[set[str]]]:
    lat, found = [], []
    for text in QUERIES:
        t = time.perf_counter()
        results = client.search_by_text(text, k=10, filter=flt)
        lat.append(1000 * (time.perf_counter() - t))
        found.append({int(r.video.sha256, 16) for r in results})
    return lat, found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=10_000_000)
    ap.add_argument("--index", default="IVF16384,SQ8")
    ap.add_argument("--shard-frames", type=int, default=200_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--tmp", default=os.environ.get("BENCH_TMP"), help="where the shards and the store go")
    args = ap.parse_args()
    model = load_model(MODEL, device="cpu")
    dim, per_shard = model.embed_dim, args.shard_frames // FPV
    n_shards = args.frames // args.shard_frames
    frames = n_shards * per_shard * FPV
    q = model.encode_texts(QUERIES).astype(np.float32)
    row: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-archive-", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        write_shards(tmp / "shards", n_shards, per_shard, model.identity, dim)
        shard_bytes = dir_bytes(tmp / "shards")
        floor = raw_faiss(args.index, n_shards, per_shard, dim, q, tmp)
        exact = brute_force(q, n_shards, per_shard, dim)
        del model
        data = tmp / "data"
        extra = ["--index", args.index, "--warm-up", "off", "--workers", "8"]
        server = ServerProcess(data, extra=extra, model=MODEL)
        try:
            with Client(server.wait_ready(), timeout=3600) as client, ThreadPoolExecutor(args.jobs) as pool:
                t = time.perf_counter()
                loaded = sum(r.frames_added for r in pool.map(client.import_shard, shard_paths(tmp / "shards")))
                row["load_s"] = time.perf_counter() - t
            row["load_rss"] = peak_rss_gib(server.proc.pid)
        finally:
            server.terminate()
        assert loaded == frames, f"loaded {loaded} of {frames} frames"
        row["catalog_b"] = dir_bytes(data) - dir_bytes(data / "index")
        row["index_b"] = dir_bytes(data / "index")
        t = time.perf_counter()
        server = ServerProcess(data, extra=extra, model=MODEL)
        try:
            address = server.wait_ready(timeout=3600)
            row["open_s"] = time.perf_counter() - t
            with Client(address, timeout=3600) as client:
                t = time.perf_counter()
                for text in QUERIES:  # encode each query once (a search caches its text's embedding)
                    client.search_by_text(text, k=10)
                row["encode_ms"] = 1000 * (time.perf_counter() - t) / len(QUERIES)
                for name, flt in [("all", None)] + [
                    (n, VideoFilter(tags={key: "0"})) for n, (key, _) in FILTERS.items()
                ]:
                    lat, found = searches(client, flt)
                    rec = np.mean([len(f & e) / len(e) for f, e in zip(found, exact[name])])
                    row[f"search_{name}"] = (np.percentile(lat, 50), np.percentile(lat, 95), rec)
                for when in ("ef_cold_s", "ef_s"):  # cold: the task's prompts are encoded first (--warm-up off)
                    t = time.perf_counter()
                    scored = sum(1 for _ in client.score("ejection_fraction"))
                    row[when], row["ef_videos"] = time.perf_counter() - t, scored
                t = time.perf_counter()
                dry = client.delete_videos(filter=VideoFilter(tags={"b100": "1"}), dry_run=True)
                done = client.delete_videos(filter=VideoFilter(tags={"b100": "1"}), confirm_token=dry.confirm_token)
                row["delete_s"], row["deleted"] = time.perf_counter() - t, done.deleted
            row["serve_rss"] = peak_rss_gib(server.proc.pid)
        finally:
            server.terminate()
        shutil.rmtree(data, ignore_errors=True)
    report(args, frames, row, floor, shard_bytes)


def report(args: argparse.Namespace, frames: int, row: dict, floor: dict, shard_bytes: int) -> None:
    vectors_gib = frames * 512 * 4 / 2**30
    print(f"\n{frames:,} frames ({frames // FPV:,} videos), index {args.index}; vectors {vectors_gib:.1f} GiB float32;")
    print(
        f"shards {shard_bytes / frames:,.0f} B/frame; raw FAISS {args.index} file {floor['bytes'] / frames:,.0f} B/frame\n"
    )
    print("| measure | echosearch | raw FAISS, same process | ratio |")
    print("| --- | --- | --- | --- |")
    rate, raw_rate = frames / row["load_s"], frames / floor["load_s"]
    print(f"| `bulk load` over gRPC, server durable | {row['load_s']:.0f} s ({rate:,.0f} frames/s) | "
          f"{floor['load_s']:.0f} s train + add + write ({raw_rate:,.0f} frames/s) | {rate / raw_rate:.2f}x |")  # fmt: skip
    disk = (row["catalog_b"] + row["index_b"]) / frames
    print(f"| disk per frame: catalog + index snapshot | {row['catalog_b'] / frames:,.0f} + {row['index_b'] / frames:,.0f} "
          f"= {disk:,.0f} B | {floor['bytes'] / frames:,.0f} B | {disk / (floor['bytes'] / frames):.1f}x |")  # fmt: skip
    print(f"| server peak RSS: load / serving | {row['load_rss']:.1f} / {row['serve_rss']:.1f} GiB | | "
          f"{row['serve_rss'] / vectors_gib:.2f}x the float32 vectors |")  # fmt: skip
    print(f"| restart to listening (open) | {row['open_s']:.1f} s | | |")
    for name in ("all", *FILTERS):
        p50, p95, rec = row[f"search_{name}"]
        label = "unfiltered" if name == "all" else f"filter {name} of videos"
        raw = f"{floor['p50_ms']:.0f} ms p50 | {p50 / floor['p50_ms']:.2f}x (p50)" if name == "all" else " |"
        print(f"| text search top-10, {label}: p50 / p95, recall@10 | {p50:.0f} / {p95:.0f} ms, {rec:.3f} | {raw} |")
    print(
        f"| a new query text's encoding (random:echoclip on the CPU), mean, before the searches above | {row['encode_ms']:.0f} ms | | |"
    )
    print(
        f"| EF scored over every video ({row['ef_videos']:,}); first call, prompts encoded too | {row['ef_s']:.1f} s; {row['ef_cold_s']:.1f} s | | |"
    )
    print(f"| delete 1 % by filter (dry run + delete, {row['deleted']:,} videos) | {row['delete_s']:.1f} s | | |")


if __name__ == "__main__":
    main()
