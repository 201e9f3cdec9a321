"""Crash-test child: ingests synthetic videos forever, printing each acknowledged write.

Usage: crash_child.py DATA_DIR START. Imports only the store (no torch) so it
starts fast; the parent SIGKILLs it at random moments. Also importable: the
parent uses `video_for` to know exactly what each sha must contain.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

DIM = 32
MODEL = "crash-test-model"
SAVE_EVERY = 4  # snapshot often, so kills also land in the middle of saves


def sha_for(i: int) -> str:
    return hashlib.sha256(f"crash-video-{i}".encode()).hexdigest()


def video_for(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame_indices, timestamps, embeddings) of synthetic video number i; deterministic."""
    rng = np.random.default_rng(i)
    n = int(rng.integers(1, 9))
    emb = rng.standard_normal((n, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    idx = np.arange(n, dtype=np.int64) * 2
    return idx, idx / 30.0, emb


def main(data_dir: Path, start: int) -> None:
    root = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(root / "server"), str(root / "clients")]  # the server uses the light echosearch.errors
    from echosearch.server.records import NewVideo, VideoMetadata
    from echosearch.server.storage.store import Store

    store = Store(data_dir, save_every=SAVE_EVERY)
    print("READY", flush=True)
    i = start
    while True:
        idx, ts, emb = video_for(i)
        rec, _ = store.add_video(
            NewVideo(
                sha256=sha_for(i),
                source_name=f"v{i}.avi",
                size_bytes=1000 + i,
                fps=30.0,
                total_frames=40,
                width=112,
                height=112,
                model_identity=MODEL,
                metadata=VideoMetadata(view="A4C" if i % 2 else "PLAX", tags={"i": str(i)}),
                frame_indices=idx,
                timestamps=ts,
                embeddings=emb,
            )
        )
        print(f"ADD {i}", flush=True)
        if i % 5 == 4:  # delete an earlier video of this run now and then
            victim = store.catalog.find_by_sha256(sha_for(i - 2))
            if victim is not None:
                store.delete_video(victim.video_id)
                print(f"DEL {i - 2}", flush=True)
        i += 1


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
