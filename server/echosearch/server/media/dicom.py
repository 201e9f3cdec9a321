"""DICOM bytes -> the same PreparedVideo as media/video.py, through the same sampling and EchoCLIP preprocessing.

pydicom reads the data set; JPEG Baseline frames go to FFmpeg's MJPEG decoder (PyAV, as in the video
path); pydicom's pixel-data plugins decode the rest: pylibjpeg-libjpeg for the other JPEG processes and
JPEG-LS, pylibjpeg-openjpeg for JPEG 2000, pylibjpeg-rle for RLE; uncompressed needs none. Only the frames the sampling keeps are decoded.
Every problem with the file is an InvalidVideoError whose message says what is wrong.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import av
import numpy as np
import pydicom
import torch
from av.video.reformatter import VideoReformatter
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import get_decoder, iter_pixels
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MediaStorageDirectoryStorage,
)

from echosearch.server.errors import InvalidVideoError, TooLargeError
from echosearch.server.media.frame_limits import DEFAULT_MAX_FRAME_PIXELS, check_frame_pixels
from echosearch.server.media.video import CHUNK, PreparedVideo, Sampling, normalise, resize_uint8

log = logging.getLogger(__name__)

# pydicom's value validation warns with the offending value in the message (a patient name, say): never log it.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE

DEFAULT_FPS = 30.0  # when the file gives no Frame Time, Cine Rate or Recommended Display Frame Rate
PHOTOMETRIC = {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}
# JPEG Baseline in these colour spaces (what scanners write) is decoded by FFmpeg's MJPEG decoder, the
# one the AVI path uses, straight to RGB: ~3x faster than pydicom's plugins (which convert YCbCr in numpy).
FAST_JPEG_PHOTOMETRIC = {"YBR_FULL_422", "YBR_FULL", "MONOCHROME2"}


def prepare_dicom(
    source: bytes | bytearray | memoryview,
    sampling: Sampling = Sampling(),
    *,
    channel_order: str = "rgb",
    mean: tuple[float, ...],
    std: tuple[float, ...],
    image_size: int,
    mask: str,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
) -> PreparedVideo:
    """Decode the frames of a DICOM image the sampling keeps and preprocess them exactly as the video path does.

    mask: "region" blacks out everything outside the largest 2D ultrasound region, "off" keeps every pixel.
    `mean`, `std` and `image_size` come from the loaded model; the ingest service validated the options.
    """
    assert channel_order in ("rgb", "bgr"), channel_order
    assert mask in ("off", "region"), mask
    ds = read_dataset(source)
    check_frame_pixels(int(ds.get("Columns") or 0), int(ds.get("Rows") or 0), max_frame_pixels)
    n, rows, cols, encoded = check_image(ds)
    indices = sampling.indices(n)
    if len(indices) > sampling.max_frames:
        raise TooLargeError(
            f"sampling {sampling.mode!r} selects {len(indices)} frames, more than max_frames={sampling.max_frames}; "
            f"use sampling 'every' with a larger step or 'count'"
        )
    region = scan_region(ds, rows, cols) if mask == "region" else None
    chunks: list[torch.Tensor] = []
    pending: list[np.ndarray] = []
    frames = _decoded_frames(ds, indices.tolist(), encoded, rows, cols)
    for position, index in enumerate(indices.tolist()):
        try:
            frame = next(frames)
        except StopIteration:
            raise InvalidVideoError(f"broken pixel data: frame {index} of {n} is missing") from None
        except Exception as exc:  # any codec error: the data are damaged
            raise InvalidVideoError(
                f"broken pixel data: frame {index} of {n} could not be decoded ({type(exc).__name__}: {exc})"
            ) from exc
        pending.append(to_rgb8(frame, ds, region, channel_order))
        if len(pending) >= CHUNK or position == len(indices) - 1:
            chunks.append(resize_uint8(np.stack(pending), image_size))
            pending.clear()
    frames_u8 = torch.cat(chunks) if chunks else torch.empty((0, 3, image_size, image_size), dtype=torch.uint8)
    fps = frame_rate(ds)
    return PreparedVideo(
        pixels=normalise(frames_u8, mean, std),
        frame_indices=indices.astype(np.int64),
        timestamps=frame_times(ds, n, fps)[indices],
        fps=fps,
        width=cols,
        height=rows,
        total_frames=n,
    )


def read_dataset(source: bytes | bytearray | memoryview) -> Dataset:
    """Parse a DICOM file (with or without its preamble and file meta); InvalidVideoError when it is not one."""
    if len(source) == 0:
        raise InvalidVideoError("the file is empty (0 bytes)")
    try:
        ds = pydicom.dcmread(io.BytesIO(bytes(source)), force=True)
    except Exception as exc:  # pydicom raises many kinds on a damaged header
        raise InvalidVideoError(f"not a readable DICOM file: the header could not be parsed ({exc})") from exc
    if "TransferSyntaxUID" not in ds.file_meta:
        # A bare data set (no file meta) is stored uncompressed in the encoding pydicom found it in.
        implicit, _little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


def check_image(ds: Dataset) -> tuple[int, int, int, list[bytes] | None]:
    """(frames, rows, columns, encoded frames or None if native) of an image we can decode.

    InvalidVideoError names what is missing or wrong.
    """
    sop_class = ds.file_meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    if sop_class == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        raise InvalidVideoError("this is a DICOMDIR (a media directory), not an image; ingest the files it lists")
    if "PixelData" not in ds:
        kind = getattr(sop_class, "name", None) or str(sop_class or "unknown SOP class")
        raise InvalidVideoError(f"not an image: a DICOM {kind} object has no pixel data")
    ts = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise InvalidVideoError(f"unsupported transfer syntax {ts.name} ({ts})") from None
    if not decoder.is_available:
        raise InvalidVideoError(
            f"no decoder installed for transfer syntax {ts.name} ({ts}): pip install 'echosearch[dicom]'"
        )
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in PHOTOMETRIC:
        raise InvalidVideoError(
            f"unsupported photometric interpretation {photometric or '(missing)'!r}; "
            f"supported: {', '.join(sorted(PHOTOMETRIC))}"
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        n = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidVideoError(f"the image header is incomplete ({exc})") from None
    if rows < 1 or cols < 1 or n < 1:
        raise InvalidVideoError(f"the image header declares {n} frames of {rows}x{cols} pixels")
    return n, rows, cols, _check_frame_count(ds, n, rows, cols)


def _check_frame_count(ds: Dataset, n: int, rows: int, cols: int) -> list[bytes] | None:
    """The pixel data hold exactly the declared Number of Frames (no decoding); the encoded frames if encapsulated."""
    data = ds.PixelData
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        try:
            encoded = list(generate_frames(data, number_of_frames=n))
        except Exception as exc:
            raise InvalidVideoError(f"broken pixel data: the encapsulated frames cannot be parsed ({exc})") from exc
        if len(encoded) != n:
            raise InvalidVideoError(
                f"the frame count disagrees with the data: Number of Frames is {n} but the pixel data hold {len(encoded)}"
            )
        return encoded
    expected = get_expected_length(ds, unit="bytes")
    per_frame = max(1, expected // n)
    if len(data) < expected:
        raise InvalidVideoError(
            f"truncated pixel data: {n} frames of {rows}x{cols} need {expected} bytes, the file holds {len(data)} "
            f"({len(data) // per_frame} whole frames)"
        )
    if len(data) >= expected + per_frame:
        raise InvalidVideoError(
            f"the frame count disagrees with the data: Number of Frames is {n} "
            f"but the pixel data hold {len(data) // per_frame} frames"
        )
    return None


def _decoded_frames(
    ds: Dataset, indices: list[int], encoded: list[bytes] | None, rows: int, cols: int
) -> Iterator[np.ndarray]:
    """The frames at `indices`, decoded (RGB, or 2D monochrome), in order."""
    photometric = str(ds.PhotometricInterpretation).strip()
    fast = (
        ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
        and photometric in FAST_JPEG_PHOTOMETRIC
        and encoded is not None
    )
    if not fast:
        yield from iter_pixels(ds, indices=indices, as_rgb=True)
        return
    decoder = av.CodecContext.create("mjpeg", "r")
    decoder.thread_type = "SLICE"
    reformatter = VideoReformatter()
    for index in indices:
        data = encoded[index]
        # FFmpeg conceals damage instead of failing; a JPEG that does not end with EOI was cut short.
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise ValueError("the JPEG data end before its end-of-image marker (truncated)")
        decoded = decoder.decode(av.Packet(data))
        if not decoded:
            raise ValueError("the JPEG decoder returned no image")
        frame = reformatter.reformat(decoded[0], format="rgb24").to_ndarray()
        if frame.shape[:2] != (rows, cols):
            raise ValueError(f"the JPEG is {frame.shape[1]}x{frame.shape[0]}, the header says {cols}x{rows}")
        yield frame


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
