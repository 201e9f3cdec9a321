"""Thumbnail cost: JPEG bytes per frame, and the ingest-rate change of `serve --thumbnails on` vs off.

    .venv/bin/python bench/thumbnails.py [--model random:echoclip] [--videos 6] [--rounds 2] [--video PATH]

Measures the path the service runs (services.ingest.ingest_video: decode + crop + thumbnails + encode + one
catalog transaction), alternating on/off servers over the same clips so machine noise hits both; prints ratios.
Target: ingest rate with thumbnails >= 0.95x the rate without.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echosearch.server.model import load_model  # noqa: E402
from echosearch.server.services.ingest import ingest_video  # noqa: E402
from echosearch.server.storage.catalog import thumbnail_table  # noqa: E402
from tests.fixtures.servers import open_tiny  # noqa: E402

EXAMPLE = ROOT.parent / "shared" / "data" / "example_video.avi"


def _clips(args: argparse.Namespace) -> list[bytes]:
    """Distinct videos (ingest is idempotent by content, so every measurement needs fresh bytes)."""
    from tests.fixtures.synthetic import make_video

    if args.video or EXAMPLE.exists():
        base = (args.video or EXAMPLE).read_bytes()
        # Same pixels, distinct sha256: a trailing byte the demuxer ignores.
        return [base + bytes([i]) for i in range(args.videos * args.rounds)]
    return [make_video(640, 480, 40, seed=i) for i in range(args.videos * args.rounds)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:echoclip")
    parser.add_argument("--videos", type=int, default=6, help="videos per setting per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--video", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    model = load_model(args.model, device="cpu")
    clips = _clips(args)
    seconds = {True: 0.0, False: 0.0}
    frames = {True: 0, False: 0}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {
            on: open_tiny(Path(tmp) / str(on), model_spec=args.model, model=model, thumbnails=on)
            for on in (True, False)
        }
        try:
            # one warm-up ingest each (first-call costs: allocator, DuckDB plans)
            for on, services in servers.items():
                ingest_video(services, clips[0] + b"warm" + bytes([on]), source_name="warm.avi")
            for r in range(args.rounds):
                for i in range(args.videos):
                    clip = clips[r * args.videos + i]
                    order = (True, False) if (r + i) % 2 == 0 else (False, True)
                    for on in order:
                        start = time.perf_counter()
                        out = ingest_video(servers[on], clip, source_name=f"v{i}.avi")
                        seconds[on] += time.perf_counter() - start
                        frames[on] += out.video.sampled_frames
            n, total = thumbnail_table.count(servers[True].store.catalog.cursor())
        finally:
            for services in servers.values():
                services.close()
    rate_on, rate_off = frames[True] / seconds[True], frames[False] / seconds[False]
    print(f"model {args.model}, {args.videos * args.rounds} videos per setting, CPU")
    print("| measure | value |")
    print("|---|---|")
    print(f"| thumbnail bytes per frame (mean over {n} frames) | {total / max(n, 1):.0f} |")
    print(f"| ingest rate, thumbnails on / off | {rate_on / rate_off:.3f}x (target >= 0.95x) |")


if __name__ == "__main__":
    main()
