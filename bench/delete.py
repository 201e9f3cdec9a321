"""DeleteVideos over gRPC (issue 18 item 3): 1 % of the stored videos in one call, against the floor.

On a store of --frames frames (20 per video, synthetic 512-d through the Store API), deletes 1 % of the videos:
(a) one DeleteVideos call by ids over gRPC, (b) one DeleteVideos call by filter (dry run + confirmed delete), and
compares each with (c) raw FAISS `remove_ids` of the same frames from an IndexIDMap(Flat) of the same size
(the floor: no catalog at all) and (d) the old way, one DeleteVideo call per video (timed on 10 videos and
scaled to the 1 %). Prints ratios; no assertions. Example: python bench/delete.py --frames 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from echosearch.client import Client, VideoFilter  # noqa: E402
from echosearch.server.records import MetadataChange, VideoMetadata  # noqa: E402
from tests.fixtures.servers import start_inprocess  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from api import fill  # noqa: E402

FPV = 20


def faiss_floor(n_frames: int, dim: int, doomed_videos: np.ndarray) -> float:
    """Seconds raw FAISS takes to remove the doomed videos' frames from an IndexIDMap(Flat) of n_frames."""
    rng = np.random.default_rng(0)
    index = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
    for start in range(0, n_frames, 100_000):
        block = rng.standard_normal((min(100_000, n_frames - start), dim)).astype(np.float32)
        index.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
    frame_ids = (doomed_videos[:, None] * FPV + np.arange(FPV)).reshape(-1).astype(np.int64)
    t = time.perf_counter()
    index.remove_ids(faiss.IDSelectorBatch(frame_ids))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        running = start_inprocess(Path(tmp) / "data", model_spec="random:echoclip")
        try:
            services = running.services
            fill(services, args.frames, fpv=FPV)
            ids = np.asarray(services.reader.select_video_ids(None), np.int64)
            rng = np.random.default_rng(1)
            n = max(1, len(ids) // 100)
            by_ids, by_filter, singles = np.split(rng.choice(ids, 2 * n + 10, replace=False), [n, 2 * n])
            for vid in by_filter:  # tag the filter's videos
                services.store.update_metadata(int(vid), MetadataChange(VideoMetadata(tags={"doomed": "yes"})))
            with Client(running.address, timeout=600) as client:
                t = time.perf_counter()
                done = client.delete_videos(by_ids.tolist())
                t_ids = time.perf_counter() - t
                assert done.deleted == n, done
                t = time.perf_counter()
                flt = VideoFilter(tags={"doomed": "yes"})
                dry = client.delete_videos(filter=flt, dry_run=True)
                done = client.delete_videos(filter=flt, confirm_token=dry.confirm_token)
                t_filter = time.perf_counter() - t
                assert done.deleted == n, done
                t = time.perf_counter()
                for vid in singles:
                    client.delete_video(int(vid))
                t_single = (time.perf_counter() - t) / len(singles) * n
            floor = faiss_floor(args.frames, services.model.embed_dim, by_ids)
        finally:
            running.stop(2)
    print(
        f"| delete 1 % ({n} videos, {n * FPV} frames) of {args.frames} frames | × raw FAISS remove_ids | × one DeleteVideo per video |"
    )
    print("| --- | ---: | ---: |")
    print(f"| DeleteVideos by ids, one call | {t_ids / floor:.1f}× | {t_ids / t_single:.3f}× |")
    print(f"| DeleteVideos by filter, dry run + delete | {t_filter / floor:.1f}× | {t_filter / t_single:.3f}× |")
    # The issue states its target in seconds (<= 2 s at 1M frames); said apart from the ratios, for that check.
    print(f"\n(seconds on this machine: by ids {t_ids:.2f}, by filter {t_filter:.2f}, FAISS {floor:.2f})")


if __name__ == "__main__":
    main()
