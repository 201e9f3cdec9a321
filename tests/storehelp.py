"""Synthetic embeddings and videos for the storage tests (no model needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from echosearch.server.records import FrameEmbeddings, NewVideo, VideoMetadata

DIM = 16
MODEL = "test-model@1"


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def jpeg(seed: int) -> bytes:
    """A real JPEG of noise pixels: its bytes are unique to `seed`, so a search for them finds only this one."""
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def frames(
    rng: np.random.Generator, n: int, dim: int = DIM, thumbnails: tuple[bytes, ...] | None = None
) -> FrameEmbeddings:
    idx = np.arange(n, dtype=np.int64) * 2
    return FrameEmbeddings(idx, idx / 30.0, unit(rng, n, dim), thumbnails=thumbnails)


def metadata(i: int) -> VideoMetadata:
    return VideoMetadata(
        study_id=f"study{i % 4}",
        patient_id=f"p{i % 3}",
        view=("A4C", "PLAX", "PSAX")[i % 3],
        acquisition_time=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=i),
        tags={"site": ("north", "south")[i % 2], "probe": f"x{i % 5}"},
    )


def new_video(i: int, rng: np.random.Generator, n: int | None = None, model: str = MODEL, dim: int = DIM) -> NewVideo:
    """Synthetic video i with n (else 1-6 random) frames, as the ingest service hands it to the store."""
    f = frames(rng, n if n is not None else int(rng.integers(1, 7)), dim)
    return NewVideo(
        sha256=f"{i:064x}",
        source_name=f"video{i}.avi",
        size_bytes=1000 + i,
        fps=30.0,
        total_frames=40,
        width=112,
        height=112,
        model_identity=model,
        metadata=metadata(i),
        frame_indices=f.frame_indices,
        timestamps=f.timestamps,
        embeddings=f.embeddings,
    )


def add(target, i: int, rng: np.random.Generator, n: int | None = None, model: str = MODEL, dim: int = DIM):
    """Add synthetic video i to a Catalog or Store; returns (record, created)."""
    return target.add_video(new_video(i, rng, n, model, dim))
