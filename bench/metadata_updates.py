"""Metadata updates (issue 21 R3): an update costs the size of the change, and searches do not wait behind it.

1. One-tag UpdateVideoMetadata on a video holding 256 tags vs on a video holding 1 tag (target: ~1x; the old
   path rewrote every tag, so it grew with the video's tags).
2. Another client's SearchByText latency while a client updates metadata as fast as it can, against the same
   searches unloaded (target: the max stays near the unloaded max; before, searches waited for the whole
   update transaction under the index lock).

Over gRPC to an in-process server (random:tiny) on a store of --videos videos. Prints ratios; no assertions.
Example: python bench/metadata_updates.py --videos 2000
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
from echosearch.client import Client, VideoMetadata  # noqa: E402
from tests.fixtures.servers import start_inprocess  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from api import fill  # noqa: E402


def timed(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append(1000 * (time.perf_counter() - t))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--updates", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        running = start_inprocess(Path(tmp) / "data")
        try:
            fill(running.services, args.videos * 20)
            with Client(running.address) as client, Client(running.address) as searcher:
                wide, narrow = 1, 2
                client.update_video_metadata(wide, VideoMetadata(tags={f"k{i}": "v" * 100 for i in range(255)}))
                client.update_video_metadata(narrow, VideoMetadata(tags={"k0": "v"}))
                flip = iter(range(10**9))
                one_wide = lambda: client.update_video_metadata(wide, VideoMetadata(tags={"k1": str(next(flip))}))  # noqa: E731
                one_narrow = lambda: client.update_video_metadata(narrow, VideoMetadata(tags={"k0": str(next(flip))}))  # noqa: E731
                timed(one_wide, 10), timed(one_narrow, 10)  # warm-up
                w, n = [], []
                for _ in range(args.updates // 2):  # interleaved, so noise hits both alike
                    w += timed(one_wide, 1)
                    n += timed(one_narrow, 1)
                query = lambda: searcher.search_by_text("THE LEFT VENTRICLE IS SEVERELY DILATED.", k=10)  # noqa: E731
                timed(query, 20)
                unloaded = timed(query, 200)
                stop = threading.Event()

                def hammer() -> None:
                    while not stop.is_set():
                        one_wide()

                updater = threading.Thread(target=hammer)
                updater.start()
                loaded = timed(query, 200)
                stop.set()
                updater.join()
        finally:
            running.stop(2)
    p50 = lambda xs: float(np.percentile(xs, 50))  # noqa: E731
    p99 = lambda xs: float(np.percentile(xs, 99))  # noqa: E731
    print(f"| measure ({args.videos} videos) | ratio |")
    print("| --- | ---: |")
    print(f"| one-tag update, 256-tag video / 1-tag video, p50 | {p50(w) / p50(n):.2f}x |")
    print(f"| search during updates / unloaded, p50 | {p50(loaded) / p50(unloaded):.2f}x |")
    print(f"| search during updates / unloaded, p99 | {p99(loaded) / p99(unloaded):.2f}x |")
    print(f"| search during updates / unloaded, max | {max(loaded) / max(unloaded):.2f}x |")


if __name__ == "__main__":
    main()
