"""Synthetic echo-like videos written with PyAV, for tests and benchmarks (no licensed data)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np


def synthetic_frames(width: int, height: int, frames: int, *, grey: bool = False, seed: int = 0) -> np.ndarray:
    """A moving bright blob in a fan-shaped sector over noise: (frames, height, width, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, apex = width / 2.0, -0.1 * height
    angle = np.arctan2(xx - cx, yy - apex)
    radius = np.hypot(xx - cx, yy - apex)
    sector = (np.abs(angle) < 0.6) & (radius < 1.1 * height)
    tint = np.array([1.0, 1.0, 1.0]) if grey else rng.uniform(0.4, 1.0, size=3)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        phase = 2 * np.pi * t / max(frames, 1)
        bx = cx + 0.2 * width * np.cos(phase + seed)
        by = height * (0.5 + 0.15 * np.sin(phase))
        blob = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * (0.08 * min(width, height)) ** 2))
        noise = rng.normal(0.0, 18.0, size=(height, width))
        lum = sector * (40.0 + 180.0 * blob + noise)
        rgb = np.clip(lum[..., None] * tint[None, None, :], 0, 255)
        out[t] = rgb.astype(np.uint8)
    return out


def encode_video(
    frames: np.ndarray,
    *,
    fps: int = 30,
    container: str = "avi",
    codec: str = "mjpeg",
) -> bytes:
    """Encode (n, h, w, 3) uint8 RGB frames into a video file held in memory."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "mjpeg":
            stream.options = {"q:v": "2"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def make_video(
    width: int = 112,
    height: int = 112,
    frames: int = 48,
    *,
    grey: bool = False,
    seed: int = 0,
    fps: int = 30,
    container: str = "avi",
    codec: str = "mjpeg",
    path: Path | None = None,
) -> bytes:
    """Make a synthetic video; write it to `path` too when given. Returns the file bytes."""
    data = encode_video(
        synthetic_frames(width, height, frames, grey=grey, seed=seed), fps=fps, container=container, codec=codec
    )
    if path is not None:
        Path(path).write_bytes(data)
    return data
