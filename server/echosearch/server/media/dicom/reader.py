"""DICOM bytes -> the same PreparedVideo as media/video.py, through the same sampling and EchoCLIP preprocessing.

Runs in the decode workers: the one parse of the file gives the pixels and the header's metadata.

dataset.py parses and checks the file, frames.py decodes the frames the sampling keeps (only those), this
module masks, crops and resizes them. Every problem with the file is an InvalidVideoError whose message
says what is wrong.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from pydicom.dataset import Dataset

from echosearch.server.errors import InvalidVideoError, TooLargeError
from echosearch.server.media.dicom.dataset import read_image
from echosearch.server.media.dicom.frames import decoded_frames
from echosearch.server.media.dicom.header import header_metadata
from echosearch.server.media.dicom.phi import OFFLINE_POLICY, PhiPolicy, thumbnails_withheld
from echosearch.server.media.frame_limits import DEFAULT_MAX_FRAME_PIXELS
from echosearch.server.media.preprocess import CHUNK, PreparedVideo, normalise, resize_uint8
from echosearch.server.media.thumbnail_jpeg import thumbnail_jpegs
from echosearch.server.records import Sampling

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # when the file gives no Frame Time, Cine Rate or Recommended Display Frame Rate


def prepare_dicom(
    source: bytes | bytearray | memoryview,
    sampling: Sampling = Sampling(),
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    **options: Any,
) -> PreparedVideo:
    """decode_dicom, then the CLIP normalisation: float pixels ready for the model, as prepare_video gives.

    `mean` and `std` come from the loaded model; `options` are decode_dicom's.
    """
    decoded = decode_dicom(source, sampling, **options)
    return replace(decoded, pixels=normalise(decoded.pixels, mean, std))


def decode_dicom(
    source: bytes | bytearray | memoryview,
    sampling: Sampling = Sampling(),
    *,
    channel_order: str = "rgb",
    image_size: int,
    mask: str,
    phi_policy: PhiPolicy = OFFLINE_POLICY,
    thumbnails: bool = False,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
) -> PreparedVideo:
    """Decode the frames of a DICOM image the sampling keeps and crop/resize them exactly as the video path does.

    Pixels are (n,3,S,S) uint8 (normalised later, like decode_video's). mask: "region" blacks out everything
    outside the largest 2D ultrasound region, "off" keeps every pixel. The header's metadata comes back as
    `header_metadata`, PatientID under `phi_policy`. With `thumbnails`, a JPEG of each sampled frame's crop,
    unless `phi_policy` withholds them (`thumbnails_withheld` says why; see thumbnails_withheld).
    `image_size` comes from the loaded model; the engine validated the options.
    """
    assert channel_order in ("rgb", "bgr"), channel_order
    assert mask in ("off", "region"), mask
    image = read_image(source, max_frame_pixels)
    ds, n = image.ds, image.frames
    indices = sampling.indices(n)
    if len(indices) > sampling.max_frames:
        raise TooLargeError(
            f"sampling {sampling.mode!r} selects {len(indices)} frames, more than max_frames={sampling.max_frames}; "
            f"use sampling 'every' with a larger step or 'count'"
        )
    region = scan_region(ds, image.rows, image.columns) if mask == "region" else None
    chunks: list[torch.Tensor] = []
    pending: list[np.ndarray] = []
    frames = decoded_frames(image, indices.tolist())
    for position, index in enumerate(indices.tolist()):
        try:
            frame = next(frames)
        except StopIteration:
            raise InvalidVideoError(f"broken pixel data: frame {index} of {n} is missing") from None
        except InvalidVideoError:
            raise
        except Exception as exc:  # any codec error: the data are damaged
            raise InvalidVideoError(
                f"broken pixel data: frame {index} of {n} could not be decoded ({type(exc).__name__}: {exc})"
            ) from exc
        pending.append(to_rgb8(frame, ds, region, channel_order))
        if len(pending) >= CHUNK or position == len(indices) - 1:
            chunks.append(resize_uint8(np.stack(pending), image_size))
            pending.clear()
    frames_u8 = torch.cat(chunks) if chunks else torch.empty((0, 3, image_size, image_size), dtype=torch.uint8)
    withheld = thumbnails_withheld(ds, region, phi_policy) if thumbnails else None
    fps = frame_rate(ds)
    return PreparedVideo(
        pixels=frames_u8,
        frame_indices=indices.astype(np.int64),
        timestamps=frame_times(ds, n, fps)[indices],
        fps=fps,
        width=image.columns,
        height=image.rows,
        total_frames=n,
        thumbnails=tuple(thumbnail_jpegs(frames_u8, channel_order=channel_order))
        if thumbnails and withheld is None
        else None,
        header_metadata=header_metadata(ds, phi_policy),
        thumbnails_withheld=withheld,
    )


def scan_region(ds: Dataset, rows: int, cols: int) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the largest 2D region of the Sequence of Ultrasound Regions, or None."""
    best, best_area = None, 0
    for region in ds.get("SequenceOfUltrasoundRegions", []):
        if int(region.get("RegionSpatialFormat", 0) or 0) != 1:  # 1 = 2D (tissue or colour flow)
            continue
        try:
            x0, y0 = int(region.RegionLocationMinX0), int(region.RegionLocationMinY0)
            x1, y1 = int(region.RegionLocationMaxX1), int(region.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            continue
        top, bottom, left, right = max(0, y0), min(rows, y1 + 1), max(0, x0), min(cols, x1 + 1)
        area = max(0, bottom - top) * max(0, right - left)
        if area > best_area:
            best, best_area = (top, bottom, left, right), area
    return best


def to_rgb8(frame: np.ndarray, ds: Dataset, region: tuple[int, int, int, int] | None, order: str) -> np.ndarray:
    """A decoded frame as (rows, cols, 3) uint8 RGB (or BGR), masked outside `region`."""
    if frame.dtype != np.uint8:
        bits = int(ds.get("BitsStored", 8) or 8)
        scale = 255.0 / float((1 << bits) - 1)
        frame = np.clip(frame.astype(np.float32) * scale + 0.5, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
            frame = 255 - frame  # MONOCHROME1: 0 is white
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if region is not None:
        top, bottom, left, right = region
        masked = np.zeros_like(frame)
        masked[top:bottom, left:right] = frame[top:bottom, left:right]
        frame = masked
    if order == "bgr":
        frame = frame[:, :, ::-1]
    return np.ascontiguousarray(frame)


def frame_rate(ds: Dataset) -> float:
    """Frames per second: Frame Time or Cine Rate, else Recommended Display Frame Rate, else DEFAULT_FPS (logged)."""
    for keyword, to_fps in (
        ("FrameTime", lambda ms: 1000.0 / ms),
        ("CineRate", float),
        ("RecommendedDisplayFrameRate", float),
    ):
        try:
            value = float(ds.get(keyword) or 0)
        except (TypeError, ValueError):
            continue
        if value > 0:
            return float(to_fps(value))
    log.warning(
        "DICOM %s gives no Frame Time, Cine Rate or Recommended Display Frame Rate: assuming %.0f fps",
        ds.get("SOPInstanceUID", "(no SOP Instance UID)"),
        DEFAULT_FPS,
    )
    return DEFAULT_FPS


def frame_times(ds: Dataset, n: int, fps: float) -> np.ndarray:
    """Seconds from the first frame for each of the n frames: the Frame Time Vector when complete, else i / fps."""
    vector = ds.get("FrameTimeVector")
    if vector is not None and len(vector) == n:
        try:
            increments = np.asarray([float(v) for v in vector], dtype=np.float64)
            increments[0] = 0.0  # the first entry is 0 by definition
            return np.cumsum(increments) / 1000.0
        except (TypeError, ValueError):
            pass
    return np.arange(n, dtype=np.float64) / fps
