"""Searches while a large shard loads (issue 21 R5): another client's SearchByText latency during the import of
one shard of --rows one-frame videos, against the same searches unloaded.

Over gRPC to `echosearch serve` (random:tiny, CPU, 64-d) in a child process, as the service runs; the store
already holds --base videos. The shard is written in the `bulk embed` format (random unit vectors); the
import goes through `Client.import_shard`, the searches through a second client, one after another.
Prints ratios (target: p99 <= 5x unloaded) and the server's peak RSS growth; no assertions.

    .venv/bin/python bench/import_searches.py [--rows 1000000] [--base 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from echosearch.client import Client  # noqa: E402
from echosearch.server.bulk.shards import shard_table, write_shard  # noqa: E402
from tests.fixtures.servers import ServerProcess  # noqa: E402
from tests.fixtures.shards import one_frame_videos  # noqa: E402


def shard(folder: Path, rows: int, start: int, identity: str, dim: int) -> Path:
    """One shard of `rows` one-frame videos with random unit embeddings."""
    rng = np.random.default_rng(start)
    emb = rng.standard_normal((rows, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    videos = one_frame_videos(emb, start)
    return write_shard(folder, shard_table(videos, identity, dim))


def rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--base", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT.parent) as tmp:
        tmp = Path(tmp)
        server = ServerProcess(tmp / "data")
        address = server.wait_ready()
        pid = server.proc.pid
        try:
            loader = Client(address, timeout=600)
            info = loader.info()
            loader.import_shard(shard(tmp / "base", args.base, 10**8, info.model_identity, info.embed_dim))
            big = shard(tmp / "big", args.rows, 0, info.model_identity, info.embed_dim)
            with Client(address) as searcher:
                query = lambda: searcher.search_by_text("THE LEFT VENTRICLE IS SEVERELY DILATED.", k=10)  # noqa: E731
                for _ in range(20):
                    query()
                unloaded = []
                for _ in range(200):
                    t = time.perf_counter()
                    query()
                    unloaded.append(time.perf_counter() - t)
                before = rss_peak_mb(pid)
                done = threading.Event()
                started = time.perf_counter()
                importer = threading.Thread(target=lambda: (loader.import_shard(big), done.set()))
                importer.start()
                loaded = []
                while not done.is_set():
                    t = time.perf_counter()
                    query()
                    loaded.append(time.perf_counter() - t)
                importer.join()
                import_s = time.perf_counter() - started
                peak = rss_peak_mb(pid)
            loader.close()
        finally:
            server.terminate()
    p = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
    print(f"| {args.rows:,}-row shard import ({len(loaded)} searches during it) | during / unloaded |")
    print("| --- | ---: |")
    for q in (50, 99):
        print(f"| search p{q} | {p(loaded, q) / p(unloaded, q):.2f}x |")
    print(f"| search max | {max(loaded) / max(unloaded):.2f}x |")
    print(f"\n(server peak RSS +{peak - before:.0f} MB over its peak before the import; import {import_s:.1f} s)")


if __name__ == "__main__":
    main()
