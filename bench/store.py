"""Storage benchmark: ingest rate, Flat vs ANN top-10 latency and recall, restart vs rebuild, bytes/frame.

Synthetic, clustered, L2-normalised vectors (echo frames of one video are
similar; videos cluster by view), so ANN recall is meaningful. Prints a
markdown table; no timed assertions.  Example: python bench/store.py --frames 100000
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
from echosearch.server.catalog import Catalog, frame_ids_for  # noqa: E402
from echosearch.server.index import VectorIndex  # noqa: E402
from echosearch.server.records import FrameEmbeddings, VideoMetadata  # noqa: E402
from echosearch.server.store import Store  # noqa: E402

log = logging.getLogger("bench.store")


def normed(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Synth:
    """Deterministic clustered video embeddings."""

    def __init__(self, dim: int, fpv: int, clusters: int = 256) -> None:
        self.dim, self.fpv = dim, fpv
        self.centers = normed(np.random.default_rng(0).standard_normal((clusters, dim)))

    def video(self, i: int) -> np.ndarray:
        rng = np.random.default_rng(i + 1)
        c = self.centers[i % len(self.centers)]
        v = normed(c + 0.08 * rng.standard_normal(self.dim))
        return normed(v + 0.06 * rng.standard_normal((self.fpv, self.dim)))


def add(target, synth: Synth, i: int) -> None:
    idx = np.arange(synth.fpv, dtype=np.int64) * 2
    target.add_video(sha256=f"{i:064x}", source_name=f"v{i}.avi", size_bytes=10_000, fps=30.0, total_frames=40,
                     width=112, height=112, model_identity="bench-synthetic",
                     metadata=VideoMetadata(view=("A4C", "PLAX")[i % 2], tags={"site": str(i % 7)}),
                     frames=FrameEmbeddings(idx, idx / 30.0, synth.video(i)))


def latency(index: VectorIndex, queries: np.ndarray, k: int = 10) -> tuple[float, np.ndarray]:
    """Median single-query latency (ms) and the ids found (one OpenMP thread: see --threads)."""
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q[None], k)
        times.append(time.perf_counter() - t)
        found.append(ids[0])
    return 1000 * float(np.median(times)), np.vstack(found)


def recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, exact)]))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--frames-per-video", type=int, default=20)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--ann", default="IVF1024,Flat")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--catch-up", type=int, default=100, help="videos written after the last snapshot")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="FAISS OpenMP threads for the latency runs (on 2 busy shared cores, 2 threads were ~8x slower)")
    args = ap.parse_args()
    import faiss
    faiss.omp_set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-store-"))
    if data.exists():
        shutil.rmtree(data)
    synth = Synth(args.dim, args.frames_per_video)
    n_videos = args.frames // args.frames_per_video
    rows: list[tuple[str, str]] = []

    store = Store(data, save_every=0, use_gpu=False, memory_limit="2GB")
    t = time.perf_counter()
    for i in range(n_videos):
        add(store, synth, i)
        if i and i % 5000 == 0:
            print(f"  ingested {i}/{n_videos} videos", file=sys.stderr, flush=True)
    ingest_s = time.perf_counter() - t
    frames = n_videos * args.frames_per_video
    rows += [("videos × frames/video", f"{n_videos:,} × {args.frames_per_video} = {frames:,} frames, dim {args.dim}"),
             ("ingest (1 transaction/video, catalog + Flat index)",
              f"{ingest_s:.1f} s — {n_videos / ingest_s:,.0f} videos/s, {frames / ingest_s:,.0f} frames/s")]
    t = time.perf_counter()
    store.save()
    rows.append(("index snapshot save", f"{time.perf_counter() - t:.2f} s"))

    rng = np.random.default_rng(7)
    picks = rng.integers(0, n_videos, args.queries)
    queries = normed(np.vstack([synth.video(int(i))[int(rng.integers(args.frames_per_video))] for i in picks])
                     + 0.05 * rng.standard_normal((args.queries, args.dim)))
    flat_ms, exact = latency(store.frame_index, queries)
    t0 = time.perf_counter()
    for q in queries[:50]:
        store.search_frames(q, 10)
    e2e_ms = 1000 * (time.perf_counter() - t0) / 50
    rows.append(("Flat top-10, one query (FAISS only / Store.search_frames)", f"{flat_ms:.2f} ms / {e2e_ms:.2f} ms"))

    t = time.perf_counter()
    ann = VectorIndex(args.dim, args.ann, use_gpu=False)
    for vids, offsets, emb in store.catalog.iter_embedding_batches(None):
        counts = np.diff(offsets)
        ann.add(np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(vids, counts)]), emb)
    rows.append((f"{args.ann} build from catalog (train + add)", f"{time.perf_counter() - t:.1f} s"))
    for nprobe in args.nprobe:
        ann.nprobe = nprobe
        ann._configure()
        ms, got = latency(ann, queries)
        rows.append((f"{args.ann} nprobe={nprobe} top-10",
                     f"{ms:.3f} ms — {flat_ms / ms:.1f}× Flat speed, recall@10 {recall(got, exact):.3f}"))
    del ann
    store.close()

    cat = Catalog(data / "catalog.duckdb", memory_limit="2GB")  # writes the index never sees: a crash
    for i in range(n_videos, n_videos + args.catch_up):
        add(cat, synth, i)
    cat.close()
    t = time.perf_counter()
    store = Store(data, save_every=0, use_gpu=False, memory_limit="2GB")
    restart_s = time.perf_counter() - t
    store.close()
    shutil.rmtree(data / "index")
    t = time.perf_counter()
    store = Store(data, save_every=0, use_gpu=False, memory_limit="2GB")
    rebuild_s = time.perf_counter() - t
    total_frames = store.catalog.count_frames()
    store.close()
    rows += [(f"restart: load snapshot + catch up {args.catch_up} videos", f"{restart_s:.2f} s"),
             ("restart: full rebuild from catalog", f"{rebuild_s:.2f} s — {rebuild_s / restart_s:.1f}× the load"),
             ("disk per frame: catalog (DuckDB)", f"{dir_bytes(data) - dir_bytes(data / 'index'):,} B total → "
              f"{(dir_bytes(data) - dir_bytes(data / 'index')) / total_frames:,.0f} B/frame"),
             ("disk per frame: Flat index snapshot", f"{dir_bytes(data / 'index') / total_frames:,.0f} B/frame "
              f"(raw vector {4 * args.dim} B)"),
             ("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")]
    print("\n| measure | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if args.data is None:
        shutil.rmtree(data)


if __name__ == "__main__":
    main()
