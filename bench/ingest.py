"""Ingest benchmark: frames/s of decode+preprocess, model encode, the service's ingest path, and the published reference path.

    .venv/bin/python bench/ingest.py [--model random:echoclip] [--videos 4] [--device cpu] [--video PATH]
    .venv/bin/python bench/ingest.py --dicom [--videos 10] [--video PATH]

Prints a markdown table with ratios; no timed assertions. Targets: (a) >= 5x (d); (c) >= 0.9x (b).
--dicom: decode + preprocess of a JPEG Baseline (YBR_FULL_422) DICOM of the clip's frames vs the MJPEG AVI
itself, both through prepare_media (the service's entry point), in one run; target >= 0.8x.
Frames are the sampled frames that get embedded (reference sampling: 20 per video of >= 40 frames).
(c) is what services.ingest.ingest_video runs before its catalog commit: each video decoded in the decode pool's
worker processes, its frames encoded by the batching encoder, `--videos` ingests at once.
bench/gpu.py measures the same path end to end over gRPC with 8 clients.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # reference_echoclip (opencv, test-only) and synthetic

from echosearch.server.encoder import BatchingEncoder  # noqa: E402
from echosearch.server.media.decode_pool import DecodePool  # noqa: E402
from echosearch.server.media.prepare import PrepareOptions  # noqa: E402
from echosearch.server.media.video import prepare_video  # noqa: E402
from echosearch.server.model import load_model  # noqa: E402

EXAMPLE = ROOT.parent / "shared" / "data" / "example_video.avi"


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:echoclip", help="model spec (default random:echoclip)")
    parser.add_argument("--videos", type=int, default=4, help="videos per measurement (copies of the same clip)")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--video", type=Path, default=None, help="video file (default: the example video, else synthetic 800x600)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    parser.add_argument("--dicom", action="store_true", help="only the DICOM JPEG Baseline vs MJPEG AVI comparison")
    parser.add_argument(
        "--repeats", type=int, default=2, help="rounds; each stage reports its best round (shared machines are noisy)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.dicom:
        _dicom_vs_avi(args)
        return

    from tests.fixtures.reference_echoclip import reference_pixels  # needs opencv (a test dependency)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.video or (EXAMPLE if EXAMPLE.exists() else None)
        if path is None:
            from tests.fixtures.synthetic import make_video

            path = Path(tmp) / "synthetic.avi"
            make_video(800, 600, 60, path=path)
        data = Path(path).read_bytes()
        model = load_model(args.model, device=args.device, precision=args.precision, batch_size=args.batch_size)
        rows = _best_of(args.repeats, lambda: _measure(model, path, data, args.videos, reference_pixels))
    _print_table(rows, model, path, args)


def _best_of(repeats: int, measure) -> dict[str, tuple[int, float]]:
    """Run all stages `repeats` times, interleaved, keeping each stage's fastest round."""
    best: dict[str, tuple[int, float]] = {}
    for _ in range(max(1, repeats)):
        for name, (frames, secs) in measure().items():
            if name not in best or secs < best[name][1]:
                best[name] = (frames, secs)
    return best


def _measure(model, path: Path, data: bytes, videos: int, reference_pixels) -> dict[str, tuple[int, float]]:
    """(frames, seconds) for each stage."""
    m = model
    prep = lambda: prepare_video(data, mean=m.mean, std=m.std, image_size=m.image_size)  # noqa: E731
    prepared = prep()
    model.encode_frames(prepared.pixels[:2])  # warm-up (allocator, kernels)
    rows: dict[str, tuple[int, float]] = {}

    t, outs = _timed(lambda: [prep() for _ in range(videos)])
    rows["(a) decode + preprocess (ours)"] = (sum(len(o.frame_indices) for o in outs), t)

    # In a fresh thread, like the encoder's worker (OpenMP settings are per thread; on a busy CPU the
    # main thread's team measured up to 4x slower than a new thread's).
    with ThreadPoolExecutor(max_workers=1) as one:
        t, embs = one.submit(_timed, lambda: [model.encode_frames(prepared.pixels) for _ in range(videos)]).result()
    rows["(b) model encode alone"] = (sum(len(e) for e in embs), t)

    options = PrepareOptions(image_size=m.image_size)
    with DecodePool() as pool, BatchingEncoder(model) as encoder:
        pool.prepare(data, options)  # warm-up: the workers' first decode
        ingest = lambda _: encoder.encode_frames(pool.prepare(data, options).pixels)  # noqa: E731
        with ThreadPoolExecutor(max_workers=videos) as callers:
            t, embs = _timed(lambda: list(callers.map(ingest, range(videos))))
    rows["(c) service path: decode pool + batching encoder, concurrent ingests"] = (sum(len(e) for e in embs), t)

    t, refs = _timed(lambda: [reference_pixels(path) for _ in range(videos)])
    rows["(d) reference decode + preprocess (OpenCV + PIL per frame)"] = (sum(len(r) for r in refs), t)
    return rows


def _print_table(rows: dict[str, tuple[int, float]], model, path: Path, args) -> None:
    rate = {name: frames / secs for name, (frames, secs) in rows.items()}
    names = list(rows)
    a, b, c, d = (rate[n] for n in names)
    print(
        f"\nmodel {model.identity} on {model.device} ({model.precision}), torch threads {torch.get_num_threads()}, "
        f"video {path.name} x {args.videos}, best of {args.repeats}\n"
    )
    print("| stage | frames | seconds | frames/s |")
    print("|---|---:|---:|---:|")
    for name in names:
        frames, secs = rows[name]
        print(f"| {name} | {frames} | {secs:.2f} | {rate[name]:.1f} |")
    print()
    print("| ratio | measured | target |")
    print("|---|---:|---:|")
    print(f"| (a) / (d): decode+preprocess vs reference | {a / d:.1f}x | >= 5x |")
    print(f"| (c) / (b): service ingest path vs model alone | {c / b:.2f}x | >= 0.9x |")


def _dicom_vs_avi(args) -> None:
    """Frames/s of prepare_media on a JPEG Baseline DICOM of the clip's frames vs on the MJPEG AVI (same frames)."""
    import av
    from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from echosearch.server.media.prepare import prepare_media
    from tests.fixtures.dicom_synthetic import make_dicom

    model_args = {"mean": OPENAI_DATASET_MEAN, "std": OPENAI_DATASET_STD, "image_size": 224}  # EchoCLIP's

    with tempfile.TemporaryDirectory() as tmp:
        path = args.video or (EXAMPLE if EXAMPLE.exists() else None)
        if path is None:
            from tests.fixtures.synthetic import make_video

            path = Path(tmp) / "synthetic.avi"
            make_video(800, 600, 60, path=path)
        avi = Path(path).read_bytes()
    with av.open(io.BytesIO(avi)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    # What a scanner writes: JPEG Baseline, YBR_FULL_422. Decoding cost grows with the entropy-coded bytes, so
    # the DICOM gets the highest quality whose frames are no larger than the AVI's (same frames, same bitrate).
    with av.open(io.BytesIO(avi)) as container:
        sizes = [p.size for p in container.demux(video=0) if p.size]
    avi_frame_bytes = sum(sizes) / len(sizes)
    for quality in (95, 92, 90, 88, 85, 80, 75):
        dicom = make_dicom(frames, syntax="jpeg", jpeg_quality=quality)
        if len(dicom) / len(frames) <= avi_frame_bytes * 1.05:
            break
    matched = f"DICOM JPEG Baseline YBR_FULL_422, quality {quality} (same bytes/frame as the AVI)"
    stages = {
        "MJPEG AVI (PyAV)": avi,
        matched: dicom,
        "DICOM JPEG Baseline YBR_FULL_422, quality 95": make_dicom(frames, syntax="jpeg", jpeg_quality=95),
    }
    best: dict[str, tuple[int, float]] = {}
    for _ in range(max(1, args.repeats)):
        for name, data in stages.items():  # interleaved rounds: the machine's noise hits both alike
            prepare_media(data, **model_args)
            secs, outs = _timed(lambda data=data: [prepare_media(data, **model_args) for _ in range(args.videos)])
            frames_done = sum(len(o.frame_indices) for o in outs)
            if name not in best or secs < best[name][1]:
                best[name] = (frames_done, secs)
    print(
        f"\nclip {Path(path).name} ({len(frames)} frames {frames.shape[2]}x{frames.shape[1]}) x {args.videos}, "
        f"decode + preprocess through prepare_media, best of {args.repeats}\n"
    )
    print(f"DICOM JPEG quality {quality}: {len(dicom) / len(frames):.0f} bytes/frame, AVI {avi_frame_bytes:.0f}\n")
    print("| input | bytes | frames | frames/s |")
    print("|---|---:|---:|---:|")
    rate = {}
    for name, (n, secs) in best.items():
        rate[name] = n / secs
        print(f"| {name} | {len(stages[name])} | {n} | {rate[name]:.1f} |")
    avi_rate, matched_rate, high_rate = rate.values()
    print("\n| ratio | measured | target |\n|---|---:|---:|")
    print(f"| DICOM JPEG Baseline / MJPEG AVI, same bitrate | {matched_rate / avi_rate:.2f}x | >= 0.8x |")
    print(f"| DICOM JPEG Baseline quality 95 / MJPEG AVI | {high_rate / avi_rate:.2f}x | (more bytes to decode) |")


if __name__ == "__main__":
    main()
