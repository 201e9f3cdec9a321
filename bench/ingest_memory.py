"""Peak memory of decoding + preprocessing one video (the ingest's decode stage), as a multiple of its output tensor.

Each case runs in a fresh process: VmHWM is reset after the imports (/proc/self/clear_refs), so the
peak is what prepare_video itself added over the resident baseline. The output tensor is the
(n, 3, 224, 224) float32 batch handed to the model.

    PYTHONPATH=clients:server:plugins python bench/ingest_memory.py
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CASES = (  # (width, height, frames, codec, sampling mode)
    (640, 480, 48, "mjpeg", "reference"),
    (640, 480, 200, "mjpeg", "all"),
    (1920, 1080, 48, "libx264", "reference"),
    (1920, 1080, 96, "libx264", "all"),
    (4096, 4096, 6, "libx264", "all"),
)


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _measure(path: str, mode: str, queue: mp.Queue) -> None:
    from echosearch.server.media.video import prepare_video
    from echosearch.server.records import Sampling

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = _status("VmRSS:")
    clip = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # EchoCLIP's preprocessing
    prepared = prepare_video(path, Sampling(mode=mode, max_frames=512), mean=clip[0], std=clip[1], image_size=224)
    peak = _status("VmHWM:") - base
    queue.put((peak, prepared.pixels.element_size() * prepared.pixels.nelement(), len(prepared.frame_indices)))


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    from tests.fixtures.synthetic import make_video

    ctx = mp.get_context("spawn")
    print(f"{'video':>26} {'sampling':>9} {'frames':>6} {'output MiB':>10} {'peak MiB':>9} {'peak/output':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for width, height, frames, codec, mode in CASES:
            container = "avi" if codec == "mjpeg" else "mp4"
            path = Path(tmp) / f"v{width}x{height}.{container}"
            make_video(width, height, frames, codec=codec, container=container, path=path)
            queue = ctx.Queue()
            child = ctx.Process(target=_measure, args=(str(path), mode, queue))
            child.start()
            peak, output, n = queue.get()
            child.join()
            name = f"{width}x{height} {codec} x{frames}"
            print(f"{name:>26} {mode:>9} {n:>6} {output / 2**20:>10.1f} {peak / 2**20:>9.1f} {peak / output:>11.1f}")


if __name__ == "__main__":
    main()
