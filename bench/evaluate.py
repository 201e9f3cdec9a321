"""`echosearch evaluate` over many labelled videos: the whole client path against a real server.

    .venv/bin/python bench/evaluate.py [--videos 100000] [--frames 2] [--resamples 1000]

Fills a store with random unit embeddings (the tiny model's width; the metrics do not care what the
scores mean), labels every video, and times, in one process: the bare ScoreVideos stream of the
same videos (the baseline), `evaluate` (ListVideos + ScoreVideos + metrics with a 1,000-resample
bootstrap) and the report (plots + HTML). Target: evaluate over 100k videos <= 10 s on this machine
(the one absolute number printed, because the target is absolute).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echosearch.client import Client  # noqa: E402
from echosearch.client.evaluation.report import write_report  # noqa: E402
from echosearch.client.evaluation.run import evaluate  # noqa: E402
from echosearch.server.records import NewVideo, VideoMetadata  # noqa: E402
from echosearch.server.serve import start_server  # noqa: E402
from echosearch.server.services.container import Services  # noqa: E402
from tests.fixtures.servers import open_tiny  # noqa: E402


def fill(services: Services, videos: int, frames: int, batch: int = 5000) -> None:
    rng = np.random.default_rng(0)
    dim = services.model.embed_dim
    idx = np.arange(frames, dtype=np.int64)
    for start in range(0, videos, batch):
        items = []
        for i in range(start, min(videos, start + batch)):
            emb = rng.standard_normal((frames, dim)).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            items.append(
                NewVideo(
                    sha256=f"{i:064x}", source_name=f"v{i}.avi", size_bytes=1, fps=30.0, total_frames=frames,
                    width=112, height=112, model_identity=services.model.identity, metadata=VideoMetadata(),
                    frame_indices=idx, timestamps=idx / 30.0, embeddings=emb,
                )
            )  # fmt: skip
        services.store.add_videos(items)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        services = open_tiny(Path(tmp) / "data", host="127.0.0.1", port=0, workers=4)
        fill(services, args.videos, args.frames)
        running = start_server(services)
        try:
            with Client(running.address, timeout=600) as client:
                task = next(t for t in client.list_tasks() if t.kind == "binary" and t.threshold is not None)
                ids = [v.video_id for v in client.iter_videos(page_size=10_000)]
                labels = Path(tmp) / "labels.csv"
                rng = np.random.default_rng(1)
                labels.write_text("video_id,label\n" + "".join(f"{v},{int(rng.random() < 0.3)}\n" for v in ids))
                start = time.perf_counter()
                n = sum(1 for _ in client.score(task.name, batch_size=10_000))
                bare = time.perf_counter() - start
                start = time.perf_counter()
                ev = evaluate(client, task.name, labels, resamples=args.resamples)
                t_eval = time.perf_counter() - start
                start = time.perf_counter()
                write_report(ev, Path(tmp) / "report")
                t_report = time.perf_counter() - start
        finally:
            running.stop(5)
    print(
        f"{n:,} labelled videos, {args.frames} frames each, task {task.name}, {args.resamples} bootstrap resamples, CPU"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| evaluate (list + score + metrics + bootstrap) / bare ScoreVideos stream | {t_eval / bare:.2f}x |")
    print(f"| report (plots + HTML) / bare ScoreVideos stream | {t_report / bare:.2f}x |")
    print(f"| evaluate + report, this machine (target <= 10 s) | {t_eval + t_report:.1f} s |")


if __name__ == "__main__":
    main()
