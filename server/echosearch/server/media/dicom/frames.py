"""The frames of a checked DICOM data set that the sampling keeps, decoded to arrays (RGB, or 2D monochrome).

JPEG Baseline frames go to FFmpeg's MJPEG decoder (PyAV, as in the video path); pydicom's pixel-data plugins
decode the rest: pylibjpeg-libjpeg for the other JPEG processes and JPEG-LS, pylibjpeg-openjpeg for JPEG 2000
and HTJ2K, pylibjpeg-rle for RLE; uncompressed needs none. Only the frames the sampling keeps are decoded.
"""

from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from pydicom.dataset import Dataset
from pydicom.pixels import iter_pixels
from pydicom.uid import JPEGBaseline8Bit

# JPEG Baseline in these colour spaces (what scanners write) is decoded by FFmpeg's MJPEG decoder, the
# one the AVI path uses, straight to RGB: ~3x faster than pydicom's plugins (which convert YCbCr in numpy).
FAST_JPEG_PHOTOMETRIC = {"YBR_FULL_422", "YBR_FULL", "MONOCHROME2"}


def decoded_frames(
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
