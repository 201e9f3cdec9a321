"""What `serve --metrics-port` costs (issue 20): bench/api.py's search and ingest, metrics on vs off, same run.

Two gRPC servers share one Services object, one with --metrics-port (and a scraper reading /metrics every
second, 15x Prometheus's default rate) and one without; calls alternate between them so the machine's noise hits
both alike. 1. SearchByText top-10 p50/p99 at --frames stored frames (synthetic 512-d, random:echoclip);
2. ingest videos/s with 4 concurrent clients (random:tiny, 112x112 MJPEG), alternated rounds. Target: metrics
cost <= 3 %. Prints ratios; no assertions. Example: python bench/metrics.py --frames 100000
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "clients"), str(ROOT / "server"), str(ROOT / "bench")]
from api import QUERIES, fill, pct  # noqa: E402

from echosearch.client import Client  # noqa: E402
from echosearch.server.config import NetworkOptions, ServerConfig  # noqa: E402
from echosearch.server.serve import start_server  # noqa: E402
from echosearch.server.services.container import open_services  # noqa: E402
from tests.fixtures.synthetic import make_video  # noqa: E402


def pair(services):
    """(server without metrics, server with metrics) over the same services."""
    off = start_server(services, NetworkOptions(host="127.0.0.1", port=0))
    on = start_server(services, NetworkOptions(host="127.0.0.1", port=0, metrics_port=0))
    return off, on


def scraping(url: str, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        while not stop.wait(1.0):
            try:
                urllib.request.urlopen(url, timeout=10).read()
            except OSError:  # that server stopped: its phase is over
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=600)
    ap.add_argument("--videos", type=int, default=12, help="videos per side per round")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        config = ServerConfig(data_dir=Path(tmp) / "search").with_options(spec="random:echoclip", device="cpu")
        services = open_services(config)
        fill(services, args.frames)
        off, on = pair(services)
        scraping(on.metrics.url, stop)
        latency = {"off": [], "on": []}
        with Client(off.address) as c_off, Client(on.address) as c_on:
            clients = {"off": c_off, "on": c_on}
            for q in QUERIES:
                c_off.search_by_text(q, k=10), c_on.search_by_text(q, k=10)
            for i in range(args.queries):
                for side in ("off", "on") if i % 2 else ("on", "off"):
                    t = time.perf_counter()
                    clients[side].search_by_text(QUERIES[i % len(QUERIES)], k=10)
                    latency[side].append(1000 * (time.perf_counter() - t))
        for s in (off, on):
            s.stop(1, close_services=False)
        services.close()

        config = ServerConfig(data_dir=Path(tmp) / "ingest").with_options(spec="random:tiny", device="cpu")
        services = open_services(config)
        off, on = pair(services)
        scraping(on.metrics.url, stop)
        seconds = {"off": 0.0, "on": 0.0}
        count = {"off": 0, "on": 0}
        with Client(off.address, timeout=300) as c_off, Client(on.address, timeout=300) as c_on:
            clients = {"off": c_off, "on": c_on}
            c_off.ingest(make_video(seed=1), source_name="warm.avi")
            for r in range(args.rounds):
                for side in ("off", "on") if r % 2 else ("on", "off"):
                    videos = [
                        make_video(seed=100_000 * (side == "on") + 1000 * r + i, frames=40) for i in range(args.videos)
                    ]
                    t = time.perf_counter()
                    with ThreadPoolExecutor(4) as pool:
                        list(pool.map(lambda b, c=clients[side]: c.ingest(b, source_name="m.avi"), videos))
                    seconds[side] += time.perf_counter() - t
                    count[side] += len(videos)
        stop.set()
        for s in (off, on):
            s.stop(1, close_services=False)
        services.close()
    rate = {s: count[s] / seconds[s] for s in seconds}
    print(f"\n| measure ({args.frames:,} frames; /metrics scraped every second) | metrics on / off | target |")
    print("| --- | --- | --- |")
    for p in (50, 99):
        print(
            f"| SearchByText top-10 p{p} latency | {pct(latency['on'], p) / pct(latency['off'], p):.3f}x | <= 1.03x |"
        )
    print(f"| ingest videos/s, 4 concurrent clients | {rate['on'] / rate['off']:.3f}x | >= 0.97x |")


if __name__ == "__main__":
    main()
