"""GPU-serving benchmark (issue 9): the service's own ingest path under 8 concurrent gRPC clients.

Rows (ratios measured in one run; no timed assertions):
  (1) end-to-end gRPC ingest, N concurrent clients / model-alone throughput at its best batch
      target >= 0.9x (CUDA and CPU)
  (2) batched encoder / one-video-per-call (the pre-issue-9 path: each ingest encodes its own
      frames in one model call under a lock), same N clients      target >= 5x CUDA, >= 1.0x CPU
Every upload is a distinct synthetic echo-like clip (reference sampling: 20 frames each), so none is
answered from the store. The server runs in this process on 127.0.0.1 (decode in its worker
processes, encode in the batching encoder) exactly as `echosearch serve` runs it.

    python bench/gpu.py                                  # CPU, reduced size (random:echoclip, 8 x 1 video)
    python bench/gpu.py --device cuda --precision bf16 --videos-per-client 48 --batches 64 128 256 512

Absolute frames/s are printed only for CUDA runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "clients"), str(ROOT / "server"), str(ROOT / "plugins")]
from echosearch.server.config import ServerConfig  # noqa: E402
from echosearch.server.services.container import Services, open_services  # noqa: E402
from echosearch.server.services.info import server_info  # noqa: E402


def _make(args: tuple[int, int, int, int]) -> bytes:
    from tests.fixtures.synthetic import make_video

    width, height, frames, seed = args
    return make_video(width, height, frames, seed=seed)


def make_videos(count: int, width: int, height: int, frames: int) -> list[bytes]:
    """`count` distinct clips, made in parallel (they only differ by seed)."""
    jobs = [(width, height, frames, 1000 + i) for i in range(count)]
    with ProcessPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2)))) as pool:
        return list(pool.map(_make, jobs, chunksize=4))


def model_alone(model, pixels, batches: list[int], seconds: float) -> tuple[int, float]:
    """(best batch, its frames/s) of model.encode_frames on ready uint8 crops (host -> device -> host)."""
    import torch

    best = (0, 0.0)
    saved = model.batch_size
    try:
        for batch in batches:
            x = pixels[torch.arange(batch) % len(pixels)].contiguous()
            model.batch_size = batch
            model.encode_frames(x)  # warm-up: kernels, allocator, cudnn autotune
            done, start = 0, time.perf_counter()
            while True:
                model.encode_frames(x)
                done += batch
                if time.perf_counter() - start >= seconds:
                    break
            rate = done / (time.perf_counter() - start)
            logging.getLogger("bench").info("model alone, batch %d: %.1f frames/s", batch, rate)
            if rate > best[1]:
                best = (batch, rate)
    finally:
        model.batch_size = saved
    return best


def grpc_ingest(services: Services, videos: list[bytes], clients: int) -> tuple[int, float]:
    """(frames stored, seconds) for `clients` threads each uploading its share of `videos` over gRPC."""
    from echosearch.client import Client
    from echosearch.server.serve import start_server

    running = start_server(services)
    try:
        with Client(running.address, timeout=600) as warm:  # first upload: worker start, kernels
            warm.ingest(videos[0], source_name="warm-up.avi")
        shares = [videos[1 + i :: clients] for i in range(clients)]
        frames = [0] * clients
        errors: list[BaseException] = []
        start = threading.Barrier(clients + 1)

        def upload(i: int) -> None:
            try:
                with Client(running.address, timeout=600) as client:
                    start.wait()
                    for j, data in enumerate(shares[i]):
                        frames[i] += client.ingest(data, source_name=f"c{i}-{j}.avi").video.sampled_frames
            except BaseException as exc:  # reported after the run
                errors.append(exc)

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        if errors:
            raise errors[0]
        return sum(frames), elapsed
    finally:
        running.stop(5, close_services=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:echoclip")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 (CUDA)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--videos-per-client", type=int, default=1)
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("W", "H"), help="clip size")
    parser.add_argument("--batch-frames", type=int, default=None, help="encoder batch (default: the server's)")
    parser.add_argument("--decode-workers", type=int, default=None, help="decode processes (default: the server's)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="model-alone batch sizes to try")
    parser.add_argument("--alone-seconds", type=float, default=None, help="time per model-alone batch size")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; each path keeps its best")
    parser.add_argument("--skip-baseline", action="store_true", help="skip row (2)'s one-video-per-call run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    import torch

    from echosearch.server.media.video import decode_video
    from echosearch.server.model import load_model

    cuda = args.device.startswith("cuda")
    batches = args.batches or ([64, 128, 256, 512] if cuda else [8, 16, 32])
    alone_seconds = args.alone_seconds or (3.0 if cuda else 10.0)
    count = 1 + args.clients * args.videos_per_client
    t = time.perf_counter()
    videos = make_videos(count, args.size[0], args.size[1], 40)
    log = logging.getLogger("bench")
    log.info("made %d clips in %.1fs", count, time.perf_counter() - t)
    model = load_model(args.model, device=args.device, precision=args.precision, batch_size=max(batches))
    if args.compile:
        model.compile_image_encoder()
    pixels = decode_video(videos[0], image_size=model.image_size).pixels

    # In a thread of its own, like the encoder's worker: OpenMP settings are per thread, and on a
    # busy CPU the main thread's team measured up to 4x slower than a fresh thread's.
    alone: list[tuple[int, float]] = []
    runner = threading.Thread(target=lambda: alone.append(model_alone(model, pixels, batches, alone_seconds)))
    runner.start()
    runner.join()
    best_batch, alone_rate = alone[0]
    rows: dict[str, tuple[int, float]] = {}
    stats = {}
    kinds = ["batched"] if args.skip_baseline else ["batched", "per-video"]
    for round_ in range(args.repeats):  # interleaved rounds; each path keeps its best (shared machines are noisy)
        for name in kinds:
            with tempfile.TemporaryDirectory() as tmp:
                config = ServerConfig(data_dir=Path(tmp)).with_options(
                    spec=args.model, device=args.device, batch_frames=args.batch_frames,
                    decode_workers=args.decode_workers, host="127.0.0.1", port=0, workers=max(16, 2 * args.clients),
                )  # fmt: skip
                services = open_services(config, model=model)
                if name == "per-video":
                    services.encoder = PerVideoEncoder(services.encoder)
                try:
                    frames, secs = grpc_ingest(services, videos, args.clients)
                    if name == "batched":
                        stats[name] = server_info(services)
                finally:
                    services.close()
            log.info("round %d, %s: %d frames in %.2fs", round_ + 1, name, frames, secs)
            if name not in rows or frames / secs > rows[name][0] / rows[name][1]:
                rows[name] = (frames, secs)
    rate = {k: frames / secs for k, (frames, secs) in rows.items()}
    enc = stats["batched"].encoder
    print(
        f"\nmodel {model.identity} on {model.device} ({model.precision}{', compiled' if args.compile else ''}), "
        f"torch threads {torch.get_num_threads()}, {args.clients} clients x {args.videos_per_client} distinct "
        f"{args.size[0]}x{args.size[1]} clips (20 sampled frames each), decode workers {stats['batched'].decode.workers}, "
        f"encoder batch {enc.batch_frames}\n"
    )
    print("| measure | measured | target |")
    print("|---|---:|---:|")
    print(
        f"| end-to-end gRPC ingest, {args.clients} concurrent clients / model alone at its best batch ({best_batch}) "
        f"| {rate['batched'] / alone_rate:.2f}x | >= 0.9x |"
    )
    if "per-video" in rate:
        target = ">= 5x" if cuda else ">= 1.0x (CPU)"
        print(
            f"| batched encoder / one-video-per-call, {args.clients} clients | {rate['batched'] / rate['per-video']:.2f}x | {target} |"
        )
    print(f"| mean frames per encoder batch (batched run) | {enc.mean_frames_per_batch:.1f} | |")
    if cuda:  # absolute numbers only as GPU results
        print()
        print("| GPU absolute | value |")
        print("|---|---:|")
        print(f"| model alone, best batch {best_batch} | {alone_rate:.0f} frames/s |")
        print(f"| end-to-end gRPC ingest, batched encoder | {rate['batched']:.0f} frames/s |")
        if "per-video" in rate:
            print(f"| end-to-end gRPC ingest, one video per call | {rate['per-video']:.0f} frames/s |")
        print(f"| encoder queue wait p50 / p99 | {enc.queue_wait_p50_ms:.1f} / {enc.queue_wait_p99_ms:.1f} ms |")


class PerVideoEncoder:
    """The pre-issue-9 encode: each ingest's frames in their own model call, one call at a time (the rest of
    the batching encoder — texts, statistics, close — as is)."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self._one_at_a_time = threading.Lock()

    def encode_frames(self, pixels, should_stop=None):
        with self._one_at_a_time:
            return self._encoder.model.encode_frames(pixels)

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)


if __name__ == "__main__":
    main()
