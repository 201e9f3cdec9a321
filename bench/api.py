"""API benchmark: what gRPC adds over calling the use cases (services/) in-process.

1. SearchByText p50/p99 over gRPC vs services.search.search_by_text in the same process,
   at 100k and 1M stored frames (target: gRPC adds <= 2 ms at p50). The store is
   filled with synthetic normalised vectors through the Store API (no encoding);
   query texts repeat, so their embeddings come from the search service's query cache
   and the numbers are search + transport.
2. Ingest videos/s with 4 concurrent clients over gRPC vs 4 threads calling
   services.ingest.ingest_video (target >= 0.9x), on distinct synthetic videos.

Client and server share this process (and its cores), so the gRPC numbers include
that contention. Prints a markdown table; no timed assertions.
Example: python bench/api.py --frames 100000 1000000
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# OpenMP's thread count is per thread: omp_set_num_threads in main() would not reach the gRPC
# worker threads, so the two sides would search with different FAISS thread counts. The
# environment variable, set before faiss loads, applies to every thread alike.
if __name__ == "__main__":
    _threads = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), "1")
    os.environ.setdefault("OMP_NUM_THREADS", _threads)

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "clients"), str(ROOT / "server"), str(ROOT / "plugins")]
from echosearch.client import Client  # noqa: E402
from echosearch.server.config import ServerConfig  # noqa: E402
from echosearch.server.records import NewVideo, VideoMetadata  # noqa: E402
from echosearch.server.serve import start_server  # noqa: E402  (imports the server stack in a safe order)
from echosearch.server.services import ingest, search  # noqa: E402
from echosearch.server.services.container import Services, open_services  # noqa: E402
from tests.fixtures.synthetic import make_video  # noqa: E402

QUERIES = [
    "ECHO DENSITY IN RIGHT VENTRICLE SUGGESTIVE OF CATHETER, PACER LEAD, OR ICD LEAD.",
    "THE LEFT VENTRICLE IS SEVERELY DILATED.",
    "THERE IS A LARGE PERICARDIAL EFFUSION.",
    "NORMAL LEFT VENTRICULAR SYSTOLIC FUNCTION.",
]


def fill(services: Services, frames: int, fpv: int = 20, seed: int = 0) -> None:
    """Add synthetic videos until the store holds `frames` frames (clustered, normalised vectors)."""
    have = services.reader.count_frames()
    dim = services.model.embed_dim
    rng = np.random.default_rng(seed + have)
    centers = rng.standard_normal((64, dim)).astype(np.float32)
    idx = np.arange(fpv, dtype=np.int64) * 2
    start, n_videos = time.perf_counter(), (frames - have) // fpv
    batch: list[NewVideo] = []
    for i in range(n_videos):
        v = centers[i % 64] + 0.3 * rng.standard_normal((fpv, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        batch.append(NewVideo(
            sha256=f"fill-{have}-{i:058d}", source_name=f"fill{i}.avi", size_bytes=10_000, fps=30.0, total_frames=40,
            width=112, height=112, model_identity=services.model.identity,
            metadata=VideoMetadata(view=("A4C", "PLAX")[i % 2]), frame_indices=idx, timestamps=idx / 30.0, embeddings=v,
        ))  # fmt: skip
        if len(batch) == 1000 or i == n_videos - 1:
            services.store.add_videos(batch)  # one transaction per 1000 videos: a bulk load, not 50k commits
            batch = []
            print(
                f"filled {i + 1} / {n_videos} videos ({(i + 1) / (time.perf_counter() - start):.0f} videos/s)",
                file=sys.stderr,
                flush=True,
            )


def _config(data_dir: Path, model: str) -> ServerConfig:
    """The serve options of this benchmark: the model on the CPU, any free port."""
    return ServerConfig(data_dir=data_dir).with_options(spec=model, device="cpu", port=0)


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def bench_search(services: Services, client: Client, n: int) -> tuple[list[float], list[float]]:
    """Latencies (ms) of n in-process and n gRPC searches, interleaved so machine noise hits both alike."""
    local_call = lambda q: search.search_by_text(services, q, k=10)  # noqa: E731
    remote_call = lambda q: client.search_by_text(q, k=10)  # noqa: E731
    for q in QUERIES:  # warm-up: fills the query-embedding cache and the channel
        local_call(q)
        remote_call(q)
    local, remote = [], []
    for i in range(n):
        q = QUERIES[i % len(QUERIES)]
        for call, out in (
            ((local_call, local), (remote_call, remote)) if i % 2 else ((remote_call, remote), (local_call, local))
        ):
            t = time.perf_counter()
            call(q)
            out.append(1000 * (time.perf_counter() - t))
    return local, remote


def bench_ingest(services: Services, client: Client, videos: int, workers: int = 4) -> tuple[float, float]:
    """videos/s in-process vs over gRPC, each on its own distinct videos."""
    local_set = [make_video(seed=10_000 + i, frames=40) for i in range(videos)]
    remote_set = [make_video(seed=20_000 + i, frames=40) for i in range(videos)]
    ingest.ingest_video(services, make_video(seed=9_999), source_name="warm.avi")  # warm the model's first-call costs

    def run(fn, items) -> float:
        t = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(fn, items))
        assert not any(r.already_stored for r in results)
        return len(items) / (time.perf_counter() - t)

    local = run(lambda b: ingest.ingest_video(services, b, source_name="local.avi"), local_set)
    remote = run(lambda b: client.ingest(b, source_name="remote.avi"), remote_set)
    return local, remote


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--frames", type=int, nargs="+", default=[100_000, 1_000_000], help="store sizes for the search benchmark"
    )
    parser.add_argument(
        "--search-model", default="random:echoclip", help="model for search (EchoCLIP's 512-d architecture)"
    )
    parser.add_argument("--ingest-model", default="random:tiny", help="model for the ingest benchmark")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--videos", type=int, default=24, help="videos per side in the ingest benchmark")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=1, help="FAISS OpenMP threads, as --threads=N (more thrash on 2 shared cores)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        services = open_services(_config(Path(tmp) / "search", args.search_model))
        server = start_server(services)
        with Client(server.address) as client:
            for frames in sorted(args.frames):
                t = time.perf_counter()
                fill(services, frames)
                print(
                    f"filled {services.reader.count_frames()} frames in {time.perf_counter() - t:.0f}s", file=sys.stderr
                )
                local, remote = bench_search(services, client, args.queries)
                rows.append((f"SearchByText top-10, {frames:,} frames", local, remote))
                print(
                    f"{frames} frames: p50 {pct(local, 50):.2f} vs {pct(remote, 50):.2f} ms, "
                    f"p99 {pct(local, 99):.2f} vs {pct(remote, 99):.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
        server.stop(1)
        ingest_rates = None
        if not args.skip_ingest:
            services = open_services(_config(Path(tmp) / "ingest", args.ingest_model))
            server = start_server(services)
            with Client(server.address) as client:
                ingest_rates = bench_ingest(services, client, args.videos)
            server.stop(1)

    print("| measurement | in-process | over gRPC | gRPC adds / ratio |")
    print("| --- | --- | --- | --- |")
    for name, local, remote in rows:
        for p in (50, 99):
            a, b = pct(local, p), pct(remote, p)
            print(f"| {name}, p{p} | {a:.2f} ms | {b:.2f} ms | +{b - a:.2f} ms |")
    if ingest_rates:
        a, b = ingest_rates
        print(
            f"| ingest, 4 concurrent ({args.ingest_model}, 112x112 MJPEG, 40 frames -> 20 embedded) | {a:.2f} videos/s | {b:.2f} videos/s | {b / a:.2f}x |"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"\nsearch model {args.search_model}, {args.queries} queries per size; peak RSS {peak:.1f} GB", file=sys.stderr
    )


if __name__ == "__main__":
    main()
